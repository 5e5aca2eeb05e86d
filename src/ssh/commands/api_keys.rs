//! `api-key create --label L --scopes approval:create,approval:read`, `api-keys`,
//! `api-key revoke --id apk_...`: keys for the REST API, shown once, stored hashed.

use serde_json::Value;

use super::Context;
use crate::appliance::ApiScope;
use crate::appliance::Error;
use crate::views::{ApiKeyList, CreatedApiKey, to_value};

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
            Ok(to_value(&CreatedApiKey {
                key,
                api_key: secret,
                note: "The key is shown this once; only its hash is kept.",
            }))
        }
        ApiKeyCommand::Revoke { id } => Ok(to_value(
            &ctx.appliance.revoke_api_key(&ctx.caller, &id).await?,
        )),
    }
}

pub fn list(ctx: &Context) -> Result<Value, Error> {
    let api_keys = ctx.appliance.api_keys(&ctx.caller)?;
    Ok(to_value(&ApiKeyList { api_keys }))
}
