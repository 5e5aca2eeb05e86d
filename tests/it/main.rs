//! Integration tests, against real parts only: a SoftHSMv2 token made per test by
//! `softhsm-fixtures/init-token.sh`, the `sshsign-server` binary on 127.0.0.1:0, the stock `ssh`
//! client, `git`, `ssh-keygen -Y verify`, and headless Chromium. Run them with `cargo nextest run` (each test in its
//! own process: PKCS#11 allows one module initialisation, and SoftHSM one token store, per
//! process).
//!
//! | module | what it covers |
//! |---|---|
//! | [`common`] | the harness: appliances, users, the `ssh` client |
//! | [`authorizations`] | typed constraints, grants to agents, several authorizations, hard and soft rules through git, sealed storage |
//! | [`approval_pages`] | the pages in headless Chromium: passkey enrollment, approval by passkey and TOTP, login, quorum, co-signing with a drawn signature and its evidence envelope, replays, CSRF, cross-user |
//! | [`browser`] | the harness: headless Chromium over CDP with a virtual authenticator, screenshots |
//! | [`attestation`] | tokens that cannot attest say so; a device's attestation chain checked offline against the vendor root (made by stock openssl) |
//! | [`approvals`] | human approval: API keys, the REST contract, SSH decisions, quorum, expiry, offline verification |
//! | [`consent`] | approvers and grantees are asked only by those they accept |
//! | [`cosign`] | co-signed requests: approve, deny, envelopes, exactly-once resolution under races |
//! | [`audit`] | audit entries, offline proofs, rollback and fork detection, tampering at rest, failing closed, kill -9 |
//! | [`linked_keys`] | several SSH keys per identity: one-time codes proven by the new key's own connection, `whoami`, `unlink`, agent keys' limits, audit entries |
//! | [`negotiation`] | offers turn by turn: parties, rounds, heads, races, history |
//! | [`seed_words`] | the sshsign seed's words: `git-commit`, `sign` without a key, `approve --confirm`, the sign reply's audit entry, its troubleshooting messages |
//! | [`ssh_commands`] | the command set over stock `ssh`: create, list, sign, verify, revoke, tiers, scopes, expiry, persistence |
//! | [`bad_input`] | every kind of bad request gets a clear error and a non-zero status; the server keeps serving |
//! | [`git_signing`] | `git commit -S` through the shim, `git verify-commit` with stock `ssh-keygen`, tampering |
//! | [`shim`] | the `sshsign` client: host key pinning and refusal, stdin mode, the CLI |
//! | [`backup`] | backup and restore between tokens: every key wrapped, the manifest signed, a fresh token that signs and verifies as before; refusals |
//! | [`backends`] | one conformance suite for every backend: SoftHSMv2 and kryoptic (both curve encodings), the native YubiHSM backend on MockHsm |
//! | [`terminal`] | replies for people: tables on a PTY or with `--format text`, CR LF, colour, help as text; JSON otherwise |
//! | [`token`] | the token threads; PKCS#11 device settings: object id forms, the administrator's login, labels as ids |
//! | [`yubihsm_mock`] | the harness: a yubihsm-connector-compatible front for the yubihsm crate's MockHsm |
//! | [`provisioning`] | `sshsign-server provision ...`: slots, init-token, appliance keys, self-test, PINs |
//! | [`dev`] | `sshsign-server dev`: a working appliance from nothing, reused on the next start |
//! | [`http`] | health, the appliance's public keys, JWKS, key lookup |
//! | [`in_process`] | the appliance in the test's process: the request state machine of both kinds, the expiry sweep, the router without sockets |
//! | [`webhooks`] | signed deliveries to a loopback receiver, retries across restarts, 410, redirects, notifications, expiry, refused destinations |
//! | [`vectors`] | OpenSSH's SSHSIG known answers and Wycheproof's Ed25519 vectors through our code |

mod approval_pages;
mod approvals;
mod attestation;
mod audit;
mod authorizations;
mod backends;
mod backup;
mod bad_input;
mod browser;
mod common;
mod conformance;
mod consent;
mod cosign;
mod dev;
mod gate;
mod git_signing;
mod http;
mod in_process;
mod linked_keys;
mod mcp;
mod negotiation;
mod packages;
mod provisioning;
mod quotas;
mod seed_words;
mod session;
mod several;
mod shim;
mod ssh_commands;
mod terminal;
mod token;
mod vectors;
mod webhooks;
mod yubihsm_mock;
