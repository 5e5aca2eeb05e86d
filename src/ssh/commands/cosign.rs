//! `pending`, `approve --id`, `deny --id [--reason]`, `get-envelope --id`.

use serde_json::{Value, json};

use super::Context;
use crate::appliance::{Error, PendingView, status_name};
use crate::time;

/// How every reply shows a request, to its requester and its principal.
pub fn pending_json(view: &PendingView) -> Value {
    let r = &view.request;
    json!({
        "pending_id": r.pending_id,
        "status": status_name(r.status),
        "key_id": r.key_id,
        "authorization_id": r.authorization_id,
        "requester": r.requester,
        "principal": r.principal,
        "namespace": r.namespace,
        "payload_sha512": r.payload_sha512,
        "metadata": r.metadata,
        "context": r.context,
        "require_signature": r.require_signature,
        "warnings": r.warnings,
        "approval_url": view.approval_url,
        "created_at": time::rfc3339(r.created_at),
        "expires_at": time::rfc3339(r.expires_at),
        "resolved_by": r.resolved_by,
        "resolved_at": r.resolved_at.map(time::rfc3339),
        "reason": r.reason,
        "signature": r.signature,
    })
}

/// `pending`: requests you must decide and requests you are waiting on.
pub async fn pending(ctx: &Context) -> Result<Value, Error> {
    let views = ctx.appliance.pending(&ctx.caller).await?;
    let me = ctx.caller.id();
    let list = |principal: bool| -> Vec<Value> {
        views
            .iter()
            .filter(|v| (v.request.principal == me && v.request.requester != me) == principal)
            .map(pending_json)
            .collect()
    };
    Ok(json!({ "to_decide": list(true), "requested": list(false) }))
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The request (pnd_...).
    #[arg(long)]
    pub id: String,
}

pub async fn approve(args: IdArgs, ctx: &Context) -> Result<Value, Error> {
    Ok(pending_json(
        &ctx.appliance.approve(&ctx.caller, &args.id).await?,
    ))
}

#[derive(Debug, clap::Args)]
pub struct DenyArgs {
    /// The request (pnd_...).
    #[arg(long)]
    pub id: String,
    /// Why, for the requester (at most 500 bytes).
    #[arg(long)]
    pub reason: Option<String>,
}

pub async fn deny(args: DenyArgs, ctx: &Context) -> Result<Value, Error> {
    if args.reason.as_ref().is_some_and(|r| r.len() > 500) {
        return Err(Error::InvalidArgument(
            "--reason is at most 500 bytes".into(),
        ));
    }
    Ok(pending_json(
        &ctx.appliance
            .deny(&ctx.caller, &args.id, args.reason)
            .await?,
    ))
}

pub async fn envelope(args: IdArgs, ctx: &Context) -> Result<Value, Error> {
    Ok(pending_json(
        &ctx.appliance.envelope(&ctx.caller, &args.id).await?,
    ))
}
