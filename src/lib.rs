//! sshsign: a self-hosted signing appliance whose private keys all live in a PKCS#11 token.
//!
//! # Layout
//!
//! Data flows one way: fronts → appliance → domain (policy, request, negotiation, audit,
//! approval) → store → token. `ARCHITECTURE.md` tells the same in a page.
//!
//! Fronts:
//! - [`ssh`] (crate): the SSH front (russh): command grammar, one file per command; replies are
//!   views, as JSON or, for people at a terminal, as text (`ssh::text`, paged by
//!   `ssh::interactive`); a session with a terminal and no command opens the terminal UI
//!   (`ssh::tui`, ratatui), which runs the same commands.
//! - [`web`]: the HTTP front (axum, hyper, rustls): REST API, approval pages (maud templates),
//!   JWKS, limits, and the OpenAPI document generated from the handlers and views.
//! - [`views`]: every reply and printout, as named `Serialize` types, shared by SSH, REST,
//!   webhooks and the binaries.
//!
//! What the appliance does:
//! - [`appliance`]: identify callers, keys and grants, sign, requests for a human decision
//!   (one model, one `decide`), approvals, passkeys and TOTP, consent, webhooks, audit views.
//!
//! Rules and records, without I/O:
//! - [`policy`]: the authorization engine: typed constraints, rules, tiers; decisions are
//!   values; which terms may be granted.
//! - [`request`]: the request model: kinds, ids parsed once, one state machine.
//! - `negotiation` (crate): negotiation offers: turns, rounds, hash chain.
//! - [`approval`]: canonical JSON, token-signed decisions, evidence envelopes (the drawn
//!   signature's PNG read chunk by chunk before any decoder), TOTP.
//! - [`audit`]: the tamper-evident log: RFC 6962 Merkle tree on disk as C2SP tlog-tiles behind a
//!   write-ahead file, signed checkpoints, proofs, the full check, the words entries are written
//!   in.
//!
//! Below:
//! - [`store`]: sled trees of versioned records, sealed ([`seal`]) where private; no private
//!   key material.
//! - [`hsm`]: the token boundary (blocking trait, PKCS#11 backend, session pool, device profiles).
//! - [`provision`]: the appliance's own keys: manifest, generation, self-test.
//! - [`server`]: start-up in named steps (store, token, sealed records, audit log, host key,
//!   listeners) and graceful shutdown.
//! - [`webhook`]: outgoing webhooks: signed POSTs to checked destinations, retried; the
//!   outgoing HTTP client (also the auditor's tile fetches).
//!
//! Clients and offline checks:
//! - [`client`]: the SSH client the `sshsign` shim and the benchmark use; host key checking.
//! - [`shim`]: `sshsign` as git's `gpg.ssh.program`.
//! - [`verifier`]: offline checks of signed decisions and evidence envelopes, as typed reports.
//! - [`auditor`]: checking the audit log from outside, over SSH or from its tiles (HTTP or a
//!   directory): checkpoints, proofs, rollback and forks.
//!
//! Settings and small formats:
//! - [`config`]: server settings from the environment and a config file.
//! - [`dev`], [`softhsm`]: the one-command development appliance and SoftHSMv2 token stores.
//! - [`secret`]: PINs and other secrets read from 0600 files into zeroizing types.
//! - [`sshsig`]: OpenSSH's SSHSIG format: signed data, armor, parsing, verification.
//! - [`pubkey`], [`hex`], [`time`]; and, inside the crate, `ids`, `wire`, `net` (address blocks,
//!   connection slots per source).
#![forbid(unsafe_code)]

/// The version and the commit the build came from (`build.rs`), as `--version` prints them.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SSHSIGN_COMMIT"), ")");

pub mod appliance;
pub mod approval;
pub mod attestation;
pub mod audit;
pub mod auditor;
pub mod backup;
pub mod client;
pub mod config;
pub mod dev;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod gate;
pub mod hex;
pub mod hsm;
pub(crate) mod ids;
pub mod limit;
pub mod mcp;
pub(crate) mod negotiation;
pub(crate) mod net;
pub mod pgcluster;
pub mod policy;
pub mod provision;
pub mod pubkey;
pub mod request;
pub mod seal;
pub mod secret;
pub mod server;
pub mod shim;
pub mod softhsm;
pub(crate) mod ssh;
pub mod sshsig;
pub mod store;
pub mod time;
pub mod verifier;
pub mod views;
pub mod web;
pub mod webhook;
pub(crate) mod wire;
