//! `create-key`, `keys`, `revoke`.

use serde_json::{Value, json};

use super::grants::GrantArgs;
use super::{Context, authorization_json, key_json};
use crate::appliance::Error;
use crate::store::KeyStatus;
use crate::time;

/// `create-key`: a new Ed25519 key generated in, and never leaving, the token, with its first
/// authorization.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub grant: GrantArgs,
}

pub async fn create(args: CreateArgs, ctx: &Context) -> Result<Value, Error> {
    let grant = args.grant.into_grant(time::now())?;
    let (key, authorization) = ctx.appliance.create_key(&ctx.caller, grant).await?;
    let mut reply = key_json(&key);
    reply["authorization"] = authorization_json(&authorization);
    Ok(reply)
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only keys that are not revoked.
    #[arg(long)]
    pub active: bool,
}

/// `keys`: the keys you own and the keys you are granted, oldest first.
pub fn list(args: ListArgs, ctx: &Context) -> Result<Value, Error> {
    let keys: Vec<Value> = ctx
        .appliance
        .keys(&ctx.caller)?
        .iter()
        .filter(|view| !args.active || view.key.status() == KeyStatus::Active)
        .map(|view| {
            let mut key = key_json(&view.key);
            key["role"] = json!(view.role);
            key["authorizations"] = view.authorizations.iter().map(authorization_json).collect();
            key
        })
        .collect();
    Ok(json!({ "keys": keys }))
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The key to revoke (you must own it).
    #[arg(long)]
    pub key_id: String,
}

/// `revoke`: the key stops signing at once; its private half is destroyed in the token.
pub async fn revoke(args: RevokeArgs, ctx: &Context) -> Result<Value, Error> {
    let key = ctx.appliance.revoke(&ctx.caller, &args.key_id).await?;
    Ok(json!({
        "key_id": key.key_id,
        "status": "revoked",
        "revoked_at": key.revoked_at.map(time::rfc3339),
    }))
}
