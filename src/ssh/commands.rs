//! The commands: their flags (`Args`), what they do (`run`) and the JSON they reply, grouped by
//! area. [`execute`] dispatches a parsed [`Command`].
//!
//! | file | commands |
//! |---|---|
//! | `whoami` | `whoami`, `link start|finish`, `unlink` |
//! | `keys` | `create-key`, `keys`, `revoke`, `attest` |
//! | `grants` | `authorize`, `authorizations`, `revoke-authorization` (and the grant flags) |
//! | `sign`, `verify` | `sign`, `verify` |
//! | `cosign` | `pending`, `approve`, `deny`, `get-envelope` |
//! | `approvals` | `request-approval`, `jwks` |
//! | `negotiate` | `log-offer`, `history` |
//! | `audit` | `audit-checkpoint`, `audit-proof`, `audit-consistency`, `audit-entries` |
//! | `api_keys` | `api-key create`, `api-key revoke`, `api-keys` |
//! | `enroll` | `enroll passkey`, `enroll totp`, `authenticators`, `authenticator remove|reopen` |
//! | `webhooks` | `webhook add`, `webhook remove`, `webhooks`, `notify set|clear|show` |
//! | `consent` | `approvers allow|list|revoke` |

pub mod api_keys;
pub mod approvals;
pub mod audit;
pub mod consent;
pub mod cosign;
pub mod enroll;
pub mod grants;
pub mod keys;
pub mod negotiate;
pub mod sign;
pub mod verify;
pub mod webhooks;
pub mod whoami;

use std::sync::Arc;

use serde_json::{Map, Value};

use super::grammar::{self, Command};
use crate::appliance::{Appliance, Caller, Error};

/// What a command runs with.
pub struct Context {
    pub appliance: Arc<Appliance>,
    pub caller: Caller,
    /// The payload read from stdin (empty for commands that read none).
    pub stdin: Vec<u8>,
    /// Text for the person at the terminal (links, QR codes), sent on stderr before the reply.
    pub stderr: std::sync::Mutex<String>,
}

impl Context {
    pub fn new(appliance: Arc<Appliance>, caller: Caller, stdin: Vec<u8>) -> Self {
        Context {
            appliance,
            caller,
            stdin,
            stderr: std::sync::Mutex::new(String::new()),
        }
    }

    /// Adds text for the person at the terminal.
    pub fn notice(&self, text: &str) {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_str(text);
    }
}

/// Runs `command`; the value is the reply document.
pub async fn execute(command: Command, ctx: &Context) -> Result<Value, Error> {
    match command {
        Command::Whoami => scan(|| whoami::run(ctx)),
        Command::Link(command) => whoami::link(command, ctx).await,
        Command::Unlink(args) => whoami::unlink(args, ctx).await,
        Command::CreateKey(args) => keys::create(args, ctx).await,
        Command::Keys(args) => scan(|| keys::list(args, ctx)),
        Command::Revoke(args) => keys::revoke(args, ctx).await,
        Command::Attest(args) => keys::attest(args, ctx).await,
        Command::Authorize(args) => grants::authorize(args, ctx).await,
        Command::Authorizations(args) => scan(|| grants::list(args, ctx)),
        Command::RevokeAuthorization(args) => grants::revoke(args, ctx).await,
        Command::Sign(args) => sign::run(args, ctx).await,
        Command::Verify(args) => verify::run(args, ctx),
        Command::Pending(args) => cosign::pending(args, ctx).await,
        Command::Approve(args) => cosign::approve(args, ctx).await,
        Command::Deny(args) => cosign::deny(args, ctx).await,
        Command::GetEnvelope(args) => cosign::envelope(args, ctx).await,
        Command::RequestApproval(args) => approvals::request(args, ctx).await,
        Command::Jwks => Ok(approvals::jwks(ctx)),
        Command::LogOffer(args) => negotiate::log_offer(args, ctx).await,
        Command::History(args) => scan(|| negotiate::history(args, ctx)),
        Command::AuditCheckpoint => audit::checkpoint(ctx).await,
        Command::AuditProof(args) => audit::proof(args, ctx).await,
        Command::AuditConsistency(args) => audit::consistency(args, ctx).await,
        Command::AuditEntries(args) => scan(|| audit::entries(args, ctx)),
        Command::ApiKey(command) => api_keys::run(command, ctx).await,
        Command::ApiKeys => scan(|| api_keys::list(ctx)),
        Command::Enroll(command) => enroll::enroll(command, ctx).await,
        Command::Authenticators => scan(|| enroll::list(ctx)),
        Command::Authenticator(command) => enroll::run(command, ctx).await,
        Command::Webhook(command) => webhooks::run(command, ctx).await,
        Command::Webhooks => scan(|| webhooks::list(ctx)),
        Command::Notify(command) => webhooks::notify(command, ctx).await,
        Command::Approvers(command) => consent::run(command, ctx).await,
        Command::Session => Err(Error::InvalidArgument(
            "a session is a channel's whole command: `ssh <appliance> session`".into(),
        )),
        Command::Help => Ok(crate::views::to_value(&crate::views::HelpView {
            help: grammar::help(),
        })),
    }
}

/// `--from N --limit L`: one page of a listing.
#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// The position to start at (a reply's `next`).
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    /// How many at most (1 to 1000).
    #[arg(long, default_value_t = crate::appliance::MAX_PAGE)]
    pub limit: usize,
}

impl PageArgs {
    pub fn page(&self) -> Result<crate::appliance::Page, Error> {
        crate::appliance::Page::new(self.from, self.limit)
    }
}

/// Runs a command that reads the store without awaiting (a listing) where it may block: off
/// the async worker's queue, so a long scan never stalls other connections' tasks.
fn scan<T>(read: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(read),
        _ => read(),
    }
}

/// Runs the parsers a command's flags go through before the appliance sees them (grant terms,
/// expiries, metadata), as the fuzz target for the command line does.
#[cfg(any(test, fuzzing))]
pub fn exercise_flags(command: Command) {
    let now = crate::time::now();
    match command {
        Command::CreateKey(args) => {
            let _ = args.grant.into_grant(now);
        }
        Command::Authorize(args) => {
            let _ = args.grant.into_grant(now);
        }
        Command::Sign(args) => {
            if let Some(text) = &args.metadata {
                let _ = json_object("--metadata", text, crate::appliance::MAX_METADATA);
            }
            if let Some(text) = &args.ttl {
                let _ = crate::time::parse_expiry(text, now);
            }
        }
        Command::RequestApproval(args) => {
            if let Some(text) = &args.metadata {
                let _ = json_object("--metadata", text, approvals::METADATA_FLAG_LIMIT);
            }
            let _ = ttl_seconds(args.ttl);
        }
        Command::LogOffer(args) => {
            if let Some(text) = &args.metadata {
                let _ = json_object("--metadata", text, crate::appliance::MAX_METADATA);
            }
        }
        _ => {}
    }
}

/// A `--ttl` flag (`1h`, `30d`, or an RFC 3339 time), as seconds from now.
pub fn ttl_seconds(flag: Option<String>) -> Result<Option<i64>, Error> {
    flag.map(|text| {
        let now = crate::time::now();
        crate::time::parse_expiry(&text, now)
            .map(|at| at - now)
            .map_err(Error::InvalidArgument)
    })
    .transpose()
}

/// Parses a flag's JSON object, refusing anything else and anything past `limit` bytes.
pub fn json_object(flag: &str, text: &str, limit: usize) -> Result<Map<String, Value>, Error> {
    let invalid = |message: String| Error::InvalidArgument(message);
    if text.len() > limit {
        return Err(invalid(format!("{flag} is longer than {limit} bytes")));
    }
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid(format!("{flag} must be a JSON object"))),
        Err(e) => Err(invalid(format!("{flag} is not valid JSON: {e}"))),
    }
}
