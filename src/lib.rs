//! sshsign: a self-hosted signing appliance whose private keys all live in a PKCS#11 token.
//!
//! # Layout
//!
//! - [`appliance`]: what the appliance does (identify, create/list/revoke keys, sign, verify),
//!   whatever the front end.
//! - [`policy`]: the authorization engine: typed constraints, rules, tiers; pure, decisions are
//!   values.
//! - [`audit`]: the tamper-evident log: RFC 6962 Merkle tree, signed checkpoints, proofs.
//! - [`approval`]: human approval: canonical JSON, token-signed decisions, evidence envelopes,
//!   TOTP.
//! - [`negotiation`]: negotiation offers: turns, rounds, hash chain (pure rules).
//! - [`seal`]: records sealed under a data key that the token's AES key protects.
//! - [`ssh`]: the SSH front (russh): command grammar, one file per command, JSON replies.
//! - [`hsm`]: the token boundary (blocking trait, PKCS#11 backend, session pool, device profiles).
//! - [`store`]: sled trees of versioned records; no private key material.
//! - [`sshsig`]: OpenSSH's SSHSIG format: signed data, armor, parsing, verification.
//! - [`provision`]: the appliance's own keys: manifest, generation, self-test.
//! - [`server`]: start-up (token, store, host key, listeners) and graceful shutdown.
//! - [`web`]: the HTTP side (axum, hyper, rustls): REST API, approval pages, JWKS, limits.
//! - [`webhook`]: outgoing webhooks: signed POSTs to checked destinations, retried.
//! - [`client`]: the SSH client the `sshsign` shim and the benchmark use; host key checking.
//! - [`auditor`]: checking the audit log from outside: checkpoints, proofs, rollback and forks.
//! - [`verifier`]: offline checks of signed decisions and evidence envelopes, as typed reports.
//! - [`shim`]: `sshsign` as git's `gpg.ssh.program`.
//! - [`config`]: server settings from the environment and a config file.
//! - [`dev`], [`softhsm`]: the one-command development appliance and SoftHSMv2 token stores.
//! - [`secret`]: PINs and other secrets read from 0600 files into zeroizing types.
//! - [`ids`], [`pubkey`], [`hex`], [`time`], [`wire`], [`net`]: small shared formats.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod approval;
pub mod audit;
pub mod auditor;
pub mod client;
pub mod config;
pub mod dev;
pub mod hex;
pub mod hsm;
pub mod ids;
pub mod negotiation;
pub mod net;
pub mod policy;
pub mod provision;
pub mod pubkey;
pub mod request;
pub mod seal;
pub mod secret;
pub mod server;
pub mod shim;
pub mod softhsm;
pub mod ssh;
pub mod sshsig;
pub mod store;
pub mod time;
pub mod verifier;
pub mod views;
pub mod web;
pub mod webhook;
pub mod wire;
