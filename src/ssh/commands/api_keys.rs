//! `api-key create --label L --scopes approval:create,approval:read`, `api-keys`,
//! `api-key revoke --id apk_...`: keys for the REST API, shown once, stored hashed.

use serde_json::{Value, json};

use super::Context;
use crate::appliance::Error;
use crate::store::{ApiKeyRecord, ApiScope};
use crate::time;

#[derive(Debug, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Make an API key; it is shown once.
    Create {
        /// What the key is for.
        #[arg(long)]
        label: String,
        /// approval:create and/or approval:read, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "approval:create,approval:read"
        )]
        scopes: Vec<String>,
    },
    /// Revoke an API key; it stops working at once.
    Revoke {
        /// The key's id (apk_...).
        #[arg(long)]
        id: String,
    },
}

fn key_json(key: &ApiKeyRecord) -> Value {
    json!({
        "id": key.id,
        "label": key.label,
        "scopes": key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "prefix": key.prefix,
        "created_at": time::rfc3339(key.created_at),
        "revoked_at": key.revoked_at.map(time::rfc3339),
    })
}

pub async fn run(command: ApiKeyCommand, ctx: &Context) -> Result<Value, Error> {
    match command {
        ApiKeyCommand::Create { label, scopes } => {
            let scopes = scopes
                .iter()
                .map(|s| {
                    ApiScope::parse(s.trim()).ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "unknown scope {s:?} (approval:create, approval:read)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (key, secret) = ctx
                .appliance
                .create_api_key(&ctx.caller, &label, scopes)
                .await?;
            let mut reply = key_json(&key);
            reply["api_key"] = secret.into();
            reply["note"] = "The key is shown this once; only its hash is kept.".into();
            Ok(reply)
        }
        ApiKeyCommand::Revoke { id } => Ok(key_json(
            &ctx.appliance.revoke_api_key(&ctx.caller, &id).await?,
        )),
    }
}

pub fn list(ctx: &Context) -> Result<Value, Error> {
    let keys: Vec<Value> = ctx
        .appliance
        .api_keys(&ctx.caller)?
        .iter()
        .map(key_json)
        .collect();
    Ok(json!({ "api_keys": keys }))
}
