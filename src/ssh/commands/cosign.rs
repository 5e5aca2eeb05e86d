//! `pending`, `approve --id`, `deny --id [--reason]`, `get-envelope --id`: co-signed requests
//! (`pnd_`) and, where they allow `ssh`, approval requests made over REST (`apr_`).

use serde_json::Value;

use super::Context;
use crate::appliance::{Error, Proof, Request, Ruling};
use crate::approval::decision::Verdict;
use crate::request::{RequestId, RequestKind};
use crate::views::{PendingList, RequestView, to_value};

/// How SSH replies show a request of either kind to one of its parties.
fn request_json(ctx: &Context, request: &Request) -> Value {
    to_value(&request.view(ctx.appliance.page_url(request.id(), None)))
}

/// `pending`: requests you must decide and requests you are waiting on.
pub async fn pending(args: super::PageArgs, ctx: &Context) -> Result<Value, Error> {
    let me = ctx.caller.id();
    let (requests, next) = ctx.appliance.requests_of(me, args.page()?).await?;
    let mut list = PendingList {
        to_decide: Vec::new(),
        requested: Vec::new(),
        approvals: Vec::new(),
        next,
    };
    for request in requests {
        // An approver's page is addressed to them; a signature request has one decider.
        let approver = request.kind() == RequestKind::Approval && request.awaits(me);
        let to = approver.then_some(me);
        match request.view(ctx.appliance.page_url(request.id(), to)) {
            // One's own request waits for one only when an agent's key made it.
            RequestView::Signature(r)
                if r.principal == me && (r.requester != me || r.requested_by_agent) =>
            {
                list.to_decide.push(r);
            }
            RequestView::Signature(r) => list.requested.push(r),
            RequestView::Approval(r) if to.is_some() => list.approvals.push(r),
            RequestView::Approval(_) => {}
        }
    }
    Ok(to_value(&list))
}

/// Decides a request of either kind as the SSH caller.
async fn decide(
    ctx: &Context,
    id: &str,
    verdict: Verdict,
    reason: Option<String>,
    consented: bool,
) -> Result<Value, Error> {
    let parsed = RequestId::parse(id).ok_or_else(|| Error::UnknownRequest(id.to_owned()))?;
    let ruling = Ruling {
        verdict,
        reason,
        drawn: None,
        consented,
    };
    let decided = ctx
        .appliance
        .decide(&parsed, ruling, Proof::Ssh(ctx.caller.clone()))
        .await?;
    Ok(request_json(ctx, &decided))
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The request (pnd_... or apr_...).
    #[arg(long)]
    pub id: String,
    /// You have read the electronic-signature disclosure: approving a legal agreement (a SAFE,
    /// an NDA, a contract) without it replies with the disclosure and approves nothing.
    #[arg(long)]
    pub confirm: bool,
}

pub async fn approve(args: ApproveArgs, ctx: &Context) -> Result<Value, Error> {
    decide(ctx, &args.id, Verdict::Approved, None, args.confirm).await
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
    decide(ctx, &args.id, Verdict::Rejected, args.reason, false).await
}

#[derive(Debug, clap::Args)]
pub struct EnvelopeArgs {
    /// The request (pnd_... or apr_...).
    #[arg(long)]
    pub id: String,
    /// Seconds to wait while the request is pending (0 to 30): the reply comes as soon as it
    /// is decided or expires, or when the time is up with it still pending.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=crate::appliance::MAX_WAIT.as_secs()))]
    pub wait: u64,
}

/// `get-envelope --id [--wait S]`: a request's status and, once a signature request is
/// approved, its signature; once an approval request is decided, its signed decision.
pub async fn envelope(args: EnvelopeArgs, ctx: &Context) -> Result<Value, Error> {
    let wait = std::time::Duration::from_secs(args.wait);
    let request = ctx
        .appliance
        .wait_for_request(&ctx.caller, &args.id, wait)
        .await?;
    Ok(request_json(ctx, &request))
}
