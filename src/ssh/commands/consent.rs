//! `approvers allow --from USER`, `approvers list`, `approvers revoke --from USER`: whom you
//! accept approval requests and authorizations from.

use serde_json::Value;

use super::Context;
use crate::appliance::Error;
use crate::views::{ConsentList, RevokedConsent, to_value};

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

pub async fn run(command: ApproversCommand, ctx: &Context) -> Result<Value, Error> {
    match command {
        ApproversCommand::Allow { from } => Ok(to_value(
            &ctx.appliance.allow_requester(&ctx.caller, &from).await?,
        )),
        ApproversCommand::List => {
            let accepted = ctx.appliance.consents(&ctx.caller)?;
            Ok(to_value(&ConsentList { accepted }))
        }
        ApproversCommand::Revoke { from } => {
            let user = ctx.appliance.revoke_requester(&ctx.caller, &from).await?;
            Ok(to_value(&RevokedConsent { revoked: user }))
        }
    }
}
