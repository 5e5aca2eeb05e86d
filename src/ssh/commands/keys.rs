//! `keys`: the caller's signing keys, oldest first.

use serde_json::{Value, json};

use super::{Context, key_json};
use crate::appliance::Error;
use crate::store::KeyStatus;
use crate::time;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only keys that can sign now (not revoked, not expired).
    #[arg(long)]
    pub active: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<Value, Error> {
    let now = time::now();
    let keys: Vec<Value> = ctx
        .appliance
        .keys(&ctx.caller)?
        .iter()
        .filter(|k| !args.active || k.status(now) == KeyStatus::Active)
        .map(key_json)
        .collect();
    Ok(json!({ "keys": keys }))
}
