//! `whoami`: the user this SSH key identifies, and every SSH key of theirs; `link start`,
//! `link finish --code`, `unlink --fingerprint`: joining and removing SSH keys.

use serde_json::Value;

use super::Context;
use crate::appliance::{Error, Role};
use crate::time;
use crate::views::{WhoamiView, to_value};

pub fn run(ctx: &Context) -> Result<Value, Error> {
    let keys = ctx.appliance.keys(&ctx.caller)?;
    let count = |role| keys.iter().filter(|k| k.role == role).count();
    Ok(to_value(&WhoamiView {
        user_id: ctx.caller.id().to_owned(),
        fingerprint: ctx.caller.fingerprint.clone(),
        agent: ctx.caller.agent,
        registered_at: time::rfc3339(ctx.caller.registered_at()),
        keys_owned: count(Role::Owner),
        keys_granted: count(Role::Grantee),
        ssh_keys: ctx.appliance.linked_keys(&ctx.caller)?,
    }))
}

/// `link start|finish`.
#[derive(Debug, clap::Subcommand)]
pub enum LinkCommand {
    /// A one-time code (10 minutes) that joins another SSH key to your identity: connect with
    /// the new key and run `link finish --code CODE`.
    Start(StartArgs),
    /// Run with the new key: joins it to the identity whose code this is.
    Finish(FinishArgs),
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// The new key is an agent's: it may sign and ask, but not decide requests over SSH or
    /// manage your identity.
    #[arg(long)]
    pub agent: bool,
    /// What you call the new key (`laptop`, `ci agent`).
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct FinishArgs {
    /// The code `link start` gave.
    #[arg(long)]
    pub code: String,
}

/// `link start` (`link finish` from a key the appliance already knows is refused: a key that
/// identifies someone is never moved).
pub async fn link(command: LinkCommand, ctx: &Context) -> Result<Value, Error> {
    match command {
        LinkCommand::Start(args) => Ok(to_value(
            &ctx.appliance
                .link_start(&ctx.caller, args.agent, args.label)
                .await?,
        )),
        LinkCommand::Finish(_) => Err(crate::appliance::already_identifies(
            &ctx.caller.fingerprint,
            ctx.caller.id(),
        )),
    }
}

#[derive(Debug, clap::Args)]
pub struct UnlinkArgs {
    /// The key's SHA-256 fingerprint (`SHA256:...`, as `whoami` lists it).
    #[arg(long)]
    pub fingerprint: String,
}

/// `unlink --fingerprint`: never your last key.
pub async fn unlink(args: UnlinkArgs, ctx: &Context) -> Result<Value, Error> {
    Ok(to_value(
        &ctx.appliance.unlink(&ctx.caller, &args.fingerprint).await?,
    ))
}
