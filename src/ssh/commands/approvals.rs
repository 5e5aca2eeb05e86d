//! `request-approval`: ask people for a decision with your SSH key, as the REST API asks with
//! an API key (the reply is the API's `201` body); `jwks`: the keys decisions are signed with.
//! A request's status and decision are read with `get-envelope --id apr_... [--wait S]`.

use serde_json::{Map, Value};

use super::{Context, json_object};
use crate::appliance::{ApprovalInput, Error, MAX_APPROVAL_METADATA, Requester};
use crate::approval::decision::Method;
use crate::views::to_value;

#[derive(Debug, clap::Args)]
pub struct RequestArgs {
    /// What the approvers are asked to approve (1 to 500 characters), shown on their page.
    #[arg(long)]
    pub action: String,
    /// Shown to the approvers with the action, and bound into the decision by its SHA-256: a
    /// JSON object of at most 4 KB.
    #[arg(long)]
    pub metadata: Option<String>,
    /// Who decides: a user id (usr_...) or an SSH key fingerprint (SHA256:...) of someone who
    /// accepts requests from you (`approvers allow`); repeat or comma-separate; default you.
    #[arg(long = "approver", value_delimiter = ',')]
    pub approvers: Vec<String>,
    /// Approvals needed (m of n, default 1); one rejection closes the request.
    #[arg(long)]
    pub threshold: Option<u32>,
    /// How approvers may prove themselves: passkey, totp, ssh (repeat or comma-separate;
    /// default passkey and totp).
    #[arg(long = "method", value_delimiter = ',', value_parser = method)]
    pub methods: Vec<Method>,
    /// How long the request waits: 60s to 7d (default 24h).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Receives the decision as a signed webhook.
    #[arg(long)]
    pub callback_url: Option<String>,
}

fn method(text: &str) -> Result<Method, String> {
    match text {
        "passkey" => Ok(Method::Passkey),
        "totp" => Ok(Method::Totp),
        "ssh" => Ok(Method::Ssh),
        other => Err(format!("{other:?} is not passkey, totp or ssh")),
    }
}

/// The largest `--metadata` read; the appliance then holds it to 4 KB as serialized, as the
/// REST API does.
pub const METADATA_FLAG_LIMIT: usize = 4 * MAX_APPROVAL_METADATA;

pub async fn request(args: RequestArgs, ctx: &Context) -> Result<Value, Error> {
    let metadata = match &args.metadata {
        Some(text) => json_object("--metadata", text, METADATA_FLAG_LIMIT)?,
        None => Map::new(),
    };
    let ttl_seconds = super::ttl_seconds(args.ttl)?;
    let input = ApprovalInput {
        action: args.action,
        ttl_seconds,
        metadata,
        callback_url: args.callback_url,
        approvers: (!args.approvers.is_empty()).then_some(args.approvers),
        threshold: args.threshold,
        methods: (!args.methods.is_empty()).then_some(args.methods),
    };
    let created = ctx
        .appliance
        .request_approval(Requester::Ssh(&ctx.caller), input)
        .await?;
    Ok(to_value(&created))
}

/// `jwks`: the decision keys as a JWK set, as `/.well-known/jwks.json` serves them; read over
/// SSH, they come with the host key's authentication.
pub fn jwks(ctx: &Context) -> Value {
    to_value(&ctx.appliance.jwks())
}
