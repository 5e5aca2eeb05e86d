//! `create-key`, `keys`, `revoke`.

use serde_json::Value;

use super::Context;
use super::grants::GrantArgs;
use crate::appliance::Error;
use crate::store::KeyStatus;
use crate::time;
use crate::views::{
    AuthorizationView, CreatedKey, KeyList, KeyView, ListedKey, RevokedKey, to_value,
};

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
    Ok(to_value(&CreatedKey {
        key: KeyView::from(&key),
        authorization: AuthorizationView::from(&authorization),
    }))
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only keys that are not revoked.
    #[arg(long)]
    pub active: bool,
}

/// `keys`: the keys you own and the keys you are granted, oldest first.
pub fn list(args: ListArgs, ctx: &Context) -> Result<Value, Error> {
    let keys = ctx
        .appliance
        .keys(&ctx.caller)?
        .iter()
        .filter(|view| !args.active || view.key.status() == KeyStatus::Active)
        .map(|view| ListedKey {
            key: KeyView::from(&view.key),
            role: view.role,
            authorizations: view
                .authorizations
                .iter()
                .map(AuthorizationView::from)
                .collect(),
        })
        .collect();
    Ok(to_value(&KeyList { keys }))
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
    Ok(to_value(&RevokedKey {
        key_id: key.key_id.clone(),
        status: KeyStatus::Revoked,
        revoked_at: key.revoked_at.map(time::rfc3339),
    }))
}
