//! `approvers allow --from USER`, `approvers list`, `approvers revoke --from USER`: whom you
//! accept approval requests and authorizations from.

use serde_json::{Value, json};

use super::Context;
use crate::appliance::Error;
use crate::store::ConsentRecord;
use crate::time;

#[derive(Debug, clap::Subcommand)]
pub enum ApproversCommand {
    /// Accept approval requests and authorizations from a user.
    Allow {
        /// The user (usr_...) or one of their SSH keys (SHA256:...).
        #[arg(long)]
        from: String,
    },
    /// The users you accept requests and authorizations from.
    List,
    /// Stop accepting new requests and authorizations from a user.
    Revoke {
        /// The user (usr_...) or one of their SSH keys (SHA256:...).
        #[arg(long)]
        from: String,
    },
}

fn consent_json(consent: &ConsentRecord) -> Value {
    json!({
        "from": consent.from,
        "named_as": consent.named_as,
        "since": time::rfc3339(consent.created_at),
    })
}

pub async fn run(command: ApproversCommand, ctx: &Context) -> Result<Value, Error> {
    match command {
        ApproversCommand::Allow { from } => Ok(consent_json(
            &ctx.appliance.allow_requester(&ctx.caller, &from).await?,
        )),
        ApproversCommand::List => {
            let list: Vec<Value> = ctx
                .appliance
                .consents(&ctx.caller)?
                .iter()
                .map(consent_json)
                .collect();
            Ok(json!({ "accepted": list }))
        }
        ApproversCommand::Revoke { from } => {
            let user = ctx.appliance.revoke_requester(&ctx.caller, &from).await?;
            Ok(json!({ "revoked": user }))
        }
    }
}
