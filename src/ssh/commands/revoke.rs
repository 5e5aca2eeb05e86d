//! `revoke --key-id ID`: the key stops signing at once; its private half is destroyed.

use serde_json::{Value, json};

use super::Context;
use crate::appliance::Error;
use crate::time;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key to revoke.
    #[arg(long)]
    pub key_id: String,
}

pub async fn run(args: Args, ctx: &Context) -> Result<Value, Error> {
    let key = ctx.appliance.revoke(&ctx.caller, &args.key_id).await?;
    Ok(json!({
        "key_id": key.key_id,
        "status": "revoked",
        "revoked_at": key.revoked_at.map(time::rfc3339),
    }))
}
