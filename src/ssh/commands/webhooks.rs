//! `webhook add --url U`, `webhook remove --id whk_...`, `webhooks`: where the decisions on your
//! approval requests are posted; `notify set --url U`, `notify clear`, `notify show`: where you
//! hear of requests waiting for you (a Slack incoming webhook or an ntfy topic takes the JSON
//! as it is).

use serde_json::Value;

use super::Context;
use crate::appliance::Error;
use crate::views::{EndpointList, EndpointReply, NotifyView, WebhookSigning, to_value};

#[derive(Debug, clap::Subcommand)]
pub enum WebhookCommand {
    /// Post every decision on your approval requests to this URL.
    Add {
        #[arg(long)]
        url: String,
    },
    /// Stop posting to an endpoint.
    Remove {
        /// The endpoint (whk_...).
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Post each request that waits for you, with your approval link, to this URL.
    Set {
        #[arg(long)]
        url: String,
    },
    /// Stop notifications.
    Clear,
    /// Where notifications go.
    Show,
}

/// How receivers check what they are sent.
fn signing(ctx: &Context) -> WebhookSigning {
    let key = ctx.appliance.decision_keys().into_iter().next();
    WebhookSigning {
        scheme: "Standard Webhooks v1a (Ed25519 over webhook-id.webhook-timestamp.body)",
        public_key: key
            .as_ref()
            .map(|(_, k)| crate::webhook::public_key_text(k)),
        key_id: key.map(|(kid, _)| kid),
    }
}

pub async fn run(command: WebhookCommand, ctx: &Context) -> Result<Value, Error> {
    let endpoint = match command {
        WebhookCommand::Add { url } => {
            ctx.appliance
                .add_webhook_endpoint(&ctx.caller, &url)
                .await?
        }
        WebhookCommand::Remove { id } => {
            ctx.appliance
                .remove_webhook_endpoint(&ctx.caller, &id)
                .await?
        }
    };
    Ok(to_value(&EndpointReply {
        endpoint,
        signing: signing(ctx),
    }))
}

pub fn list(ctx: &Context) -> Result<Value, Error> {
    let webhooks = ctx.appliance.webhook_endpoints(&ctx.caller)?;
    Ok(to_value(&EndpointList {
        webhooks,
        signing: signing(ctx),
    }))
}

pub async fn notify(command: NotifyCommand, ctx: &Context) -> Result<Value, Error> {
    let target = match command {
        NotifyCommand::Set { url } => {
            ctx.appliance
                .set_notify_target(&ctx.caller, Some(&url))
                .await?
        }
        NotifyCommand::Clear => ctx.appliance.set_notify_target(&ctx.caller, None).await?,
        NotifyCommand::Show => ctx.appliance.notify_target(&ctx.caller)?,
    };
    Ok(to_value(&NotifyView {
        target,
        signing: signing(ctx),
    }))
}
