//! `pending`, `approve --id`, `deny --id [--reason]`, `get-envelope --id`: co-signed requests
//! (`pnd_`) and, where they allow `ssh`, approval requests made over REST (`apr_`).

use base64::Engine as _;
use serde_json::{Value, json};

use super::Context;
use crate::appliance::{Error, HumanRequest, MAX_REASON, Proof, Ruling};
use crate::approval::decision::Verdict;
use crate::request::{RequestId, RequestKind};
use crate::store::{ApprovalRecord, PendingRequest};
use crate::time;

/// How every reply shows a signature request, to its requester and its principal.
pub fn pending_json(r: &PendingRequest, page: &str) -> Value {
    json!({
        "pending_id": r.pending_id,
        "status": r.status.word(RequestKind::Signature),
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
        "approval_url": page,
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

/// How SSH replies show a request of either kind to one of its parties; `viewer` gets the page
/// addressed to them.
fn request_json(ctx: &Context, request: &HumanRequest, viewer: Option<&str>) -> Value {
    let page = ctx.appliance.page_url(request.id(), viewer);
    match request {
        HumanRequest::Signature(r) => pending_json(r, &page),
        HumanRequest::Approval(r) => approval_json(r, &page),
    }
}

/// `pending`: requests you must decide and requests you are waiting on.
pub async fn pending(ctx: &Context) -> Result<Value, Error> {
    let me = ctx.caller.id();
    let (mut to_decide, mut requested, mut approvals) = (Vec::new(), Vec::new(), Vec::new());
    for request in ctx.appliance.requests_of(me).await? {
        match &request {
            HumanRequest::Signature(r) if r.principal == me && r.requester != me => {
                to_decide.push(request_json(ctx, &request, None));
            }
            HumanRequest::Signature(_) => requested.push(request_json(ctx, &request, None)),
            HumanRequest::Approval(_) if request.awaits(me) => {
                approvals.push(request_json(ctx, &request, Some(me)));
            }
            HumanRequest::Approval(_) => {}
        }
    }
    Ok(json!({ "to_decide": to_decide, "requested": requested, "approvals": approvals }))
}

/// Decides a request of either kind as the SSH caller.
async fn decide(
    ctx: &Context,
    id: &str,
    verdict: Verdict,
    reason: Option<String>,
) -> Result<Value, Error> {
    let parsed = RequestId::parse(id).ok_or_else(|| Error::UnknownRequest(id.to_owned()))?;
    let ruling = Ruling {
        verdict,
        reason,
        drawn: None,
    };
    let decided = ctx
        .appliance
        .decide(&parsed, ruling, Proof::Ssh(ctx.caller.clone()))
        .await?;
    Ok(request_json(ctx, &decided, None))
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The request (pnd_... or apr_...).
    #[arg(long)]
    pub id: String,
}

pub async fn approve(args: IdArgs, ctx: &Context) -> Result<Value, Error> {
    decide(ctx, &args.id, Verdict::Approved, None).await
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
    if args.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
        return Err(Error::InvalidArgument(format!(
            "--reason is at most {MAX_REASON} bytes"
        )));
    }
    decide(ctx, &args.id, Verdict::Rejected, args.reason).await
}

/// `get-envelope --id`: a request's status and, once a signature request is approved, its
/// signature.
pub async fn envelope(args: IdArgs, ctx: &Context) -> Result<Value, Error> {
    let request = ctx.appliance.request_for(&ctx.caller, &args.id).await?;
    Ok(request_json(ctx, &request, None))
}
