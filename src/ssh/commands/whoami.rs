//! `whoami`: the user this SSH key identifies.

use serde_json::Value;

use super::Context;
use crate::appliance::{Error, Role};
use crate::time;
use crate::views::{WhoamiView, to_value};

pub fn run(ctx: &Context) -> Result<Value, Error> {
    let keys = ctx.appliance.keys(&ctx.caller)?;
    let count = |role| keys.iter().filter(|k| k.role == role).count();
    Ok(to_value(&WhoamiView {
        user_id: ctx.caller.id().to_owned(),
        fingerprint: ctx.caller.fingerprint.clone(),
        registered_at: time::rfc3339(ctx.caller.registered_at()),
        keys_owned: count(Role::Owner),
        keys_granted: count(Role::Grantee),
    }))
}
