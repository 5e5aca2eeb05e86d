//! `pending`, `approve --id`, `deny --id [--reason]`, `get-envelope --id`: co-signed requests
//! (`pnd_`) and, where they allow `ssh`, approval requests made over REST (`apr_`).

use base64::Engine as _;
use serde_json::{Value, json};

use super::Context;
use crate::appliance::{Error, PendingView, status_name};
use crate::approval::decision::{Method, Verdict};
use crate::store::ApprovalRecord;
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
        "evidence": r.evidence.as_ref().map(|envelope| json!({
            "envelope": envelope,
            "sha256": base64::engine::general_purpose::STANDARD
                .decode(envelope)
                .map(|bytes| crate::approval::envelope::sha256_tag(&bytes))
                .unwrap_or_default(),
            "seal": r.evidence_seal,
            "key_id": r.evidence_key_id,
        })),
    })
}

/// How SSH replies show an approval request to one of its approvers or its owner.
pub fn approval_json(r: &ApprovalRecord, page: &str) -> Value {
    let mut view = crate::approval::view::approval_json(r);
    view["approval_url"] = page.into();
    view
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
    let approvals: Vec<Value> = ctx
        .appliance
        .approvals_of(me)
        .await?
        .iter()
        .filter(|r| r.awaits(me))
        .map(|r| approval_json(r, &ctx.appliance.approver_page(&r.request_id, me)))
        .collect();
    Ok(json!({ "to_decide": list(true), "requested": list(false), "approvals": approvals }))
}

/// Decides an approval request over SSH, where the request allows it.
async fn decide_approval(
    ctx: &Context,
    id: &str,
    verdict: Verdict,
    reason: Option<String>,
) -> Result<Value, Error> {
    let decided = ctx
        .appliance
        .decide_approval(&ctx.caller, id, verdict, Method::Ssh, reason)
        .await?;
    Ok(approval_json(&decided, &ctx.appliance.approval_page(id)))
}

fn is_approval(id: &str) -> bool {
    id.starts_with(crate::ids::IdKind::Approval.prefix())
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The request (pnd_... or apr_...).
    #[arg(long)]
    pub id: String,
}

pub async fn approve(args: IdArgs, ctx: &Context) -> Result<Value, Error> {
    if is_approval(&args.id) {
        return decide_approval(ctx, &args.id, Verdict::Approved, None).await;
    }
    Ok(pending_json(
        &ctx.appliance.approve(&ctx.caller, &args.id).await?,
    ))
}

#[derive(Debug, clap::Args)]
pub struct DenyArgs {
    /// The request (pnd_... or apr_...).
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
    if is_approval(&args.id) {
        return decide_approval(ctx, &args.id, Verdict::Rejected, args.reason).await;
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
