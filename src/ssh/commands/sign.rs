//! `sign [--key-id ID] [--type NAMESPACE] [--metadata JSON] [--repository R] [--branch B]
//! [--ttl DURATION]`: an SSHSIG over the payload on stdin, made by the token, or a request
//! waiting for its principal when the authorization is co-signed.

use serde_json::{Map, Value};

use super::{Context, json_object};
use crate::appliance::{Error, MAX_METADATA, SignInput, SignOutcome};
use crate::views::to_value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key to sign with (default: your first active key whose authorization covers the
    /// namespace).
    #[arg(long)]
    pub key_id: Option<String>,
    /// The SSHSIG namespace; git signs commits and tags in "git" (the seed's "git-commit").
    #[arg(long = "type", default_value = "git")]
    pub namespace: String,
    /// Terms of what is signed, checked against the authorization's constraints: a JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
    /// The repository the signature is for (the git shim sends it).
    #[arg(long)]
    pub repository: Option<String>,
    /// The branch the signature is for (the git shim sends it).
    #[arg(long)]
    pub branch: Option<String>,
    /// How long a co-signed request waits for approval (default 24h, at most 30d).
    #[arg(long)]
    pub ttl: Option<String>,
}

pub async fn run(args: Args, ctx: &Context) -> Result<Value, Error> {
    let metadata = match &args.metadata {
        Some(text) => json_object("--metadata", text, MAX_METADATA)?,
        None => Map::new(),
    };
    let mut context = Map::new();
    if let Some(repository) = args.repository {
        context.insert("repository".into(), repository.into());
    }
    if let Some(branch) = args.branch {
        context.insert("branch".into(), branch.into());
    }
    let ttl = super::ttl_seconds(args.ttl)?;
    let key_id = match args.key_id {
        Some(key_id) => key_id,
        None => super::scan(|| ctx.appliance.default_key(&ctx.caller, &args.namespace))?,
    };
    let input = SignInput {
        key_id,
        namespace: args.namespace,
        payload: ctx.stdin.clone(),
        metadata,
        context,
        ttl,
    };
    match ctx.appliance.sign(&ctx.caller, input).await? {
        SignOutcome::Signed(signed) => Ok(to_value(&signed)),
        SignOutcome::Pending(pending) => Ok(to_value(&pending)),
    }
}
