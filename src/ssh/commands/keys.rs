//! `create-key`, `keys`, `revoke`.

use serde_json::Value;

use super::Context;
use super::grants::GrantArgs;
use crate::appliance::Error;
use crate::appliance::KeyStatus;
use crate::time;
use crate::views::{AuthorizationView, CreatedKey, KeyList, to_value};

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
        key,
        authorization: AuthorizationView::from(&authorization),
    }))
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only keys that are not revoked.
    #[arg(long)]
    pub active: bool,
    #[command(flatten)]
    pub page: super::PageArgs,
}

/// `keys`: the keys you own and the keys you are granted, oldest first.
pub fn list(args: ListArgs, ctx: &Context) -> Result<Value, Error> {
    let (keys, next) = ctx.appliance.keys_page(&ctx.caller, args.page.page()?)?;
    let keys = keys
        .into_iter()
        .filter(|listed| !args.active || listed.key.key.status == KeyStatus::Active)
        .collect();
    Ok(to_value(&KeyList {
        keys,
        next,
        attestation: ctx.appliance.attestation_support(),
    }))
}

#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// The key (you must own it).
    #[arg(long)]
    pub key_id: String,
}

/// `attest`: the device's proof that it generated the key, for `sshsign verify-attestation`
/// against the vendor's root; tokens that cannot attest say why (`attestation_unavailable`).
pub async fn attest(args: AttestArgs, ctx: &Context) -> Result<Value, Error> {
    Ok(to_value(
        &ctx.appliance.attest(&ctx.caller, &args.key_id).await?,
    ))
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The key to revoke (you must own it).
    #[arg(long)]
    pub key_id: String,
}

/// `revoke`: the key stops signing at once; its private half is destroyed in the token.
pub async fn revoke(args: RevokeArgs, ctx: &Context) -> Result<Value, Error> {
    Ok(to_value(
        &ctx.appliance.revoke(&ctx.caller, &args.key_id).await?,
    ))
}
