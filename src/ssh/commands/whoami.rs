//! `whoami`: the user this SSH key identifies.

use serde_json::{Value, json};

use super::Context;
use crate::appliance::Error;
use crate::store::KeyStatus;
use crate::time;

pub fn run(ctx: &Context) -> Result<Value, Error> {
    let keys = ctx.appliance.keys(&ctx.caller)?;
    let now = time::now();
    let active = keys
        .iter()
        .filter(|k| k.status(now) == KeyStatus::Active)
        .count();
    Ok(json!({
        "user_id": ctx.caller.user.user_id,
        "fingerprint": ctx.caller.fingerprint,
        "registered_at": time::rfc3339(ctx.caller.user.created_at),
        "keys": keys.len(),
        "active_keys": active,
    }))
}
