//! One file per command: its flags (`Args`), what it does (`run`) and the JSON it replies.
//! [`execute`] dispatches a parsed [`Command`].

pub mod create_key;
pub mod keys;
pub mod revoke;
pub mod sign;
pub mod verify;
pub mod whoami;

use std::sync::Arc;

use serde_json::{Value, json};

use super::grammar::{self, Command};
use crate::appliance::{self, Appliance, Caller, Error};
use crate::store::SigningKeyRecord;
use crate::time;

/// What a command runs with.
pub struct Context {
    pub appliance: Arc<Appliance>,
    pub caller: Caller,
    /// The payload read from stdin (empty for commands that read none).
    pub stdin: Vec<u8>,
}

/// Runs `command`; the value is the reply document.
pub async fn execute(command: Command, ctx: Context) -> Result<Value, Error> {
    match command {
        Command::Whoami => whoami::run(&ctx),
        Command::CreateKey(args) => create_key::run(args, &ctx).await,
        Command::Keys(args) => keys::run(args, &ctx),
        Command::Sign(args) => sign::run(args, &ctx).await,
        Command::Verify(args) => verify::run(args, &ctx),
        Command::Revoke(args) => revoke::run(args, &ctx).await,
        Command::Help => Ok(json!({ "help": grammar::help() })),
    }
}

/// How every reply shows a signing key.
pub fn key_json(key: &SigningKeyRecord) -> Value {
    json!({
        "key_id": key.key_id,
        "public_key": appliance::public_key_line(key),
        "fingerprint": appliance::public_key_fingerprint(key),
        "status": key.status(time::now()),
        "scopes": key.scopes,
        "tier": key.tier.as_str(),
        "require_signature": key.require_signature,
        "constraints": key.constraints,
        "created_at": time::rfc3339(key.created_at),
        "expires_at": key.expires_at.map(time::rfc3339),
        "revoked_at": key.revoked_at.map(time::rfc3339),
    })
}
