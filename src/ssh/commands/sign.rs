//! `sign --key-id ID [--type NAMESPACE]`: an SSHSIG over the payload on stdin, made by the token.

use serde_json::{Value, json};

use super::Context;
use crate::appliance::{self, Error};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key to sign with.
    #[arg(long)]
    pub key_id: String,
    /// The SSHSIG namespace; git signs commits and tags in "git".
    #[arg(long = "type", default_value = "git")]
    pub namespace: String,
}

pub async fn run(args: Args, ctx: &Context) -> Result<Value, Error> {
    let signed = ctx
        .appliance
        .sign(&ctx.caller, &args.key_id, &args.namespace, &ctx.stdin)
        .await?;
    Ok(json!({
        "key_id": signed.key.key_id,
        "namespace": signed.signature.namespace(),
        "public_key": appliance::public_key_line(&signed.key),
        "fingerprint": appliance::public_key_fingerprint(&signed.key),
        "signature": signed.signature.to_armored(),
    }))
}
