//! The REST API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and reply types ([`crate::views`], [`super::api`]). What types
//! cannot say (the shared error replies, the webhooks the appliance sends, the security scheme)
//! is added here, once. The repository keeps a copy, `src/web/openapi.json`, for readers and
//! API tools; a test fails when it differs from what this builds (`sshsign-server openapi`
//! writes it anew).

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, PathItem, PathsBuilder, Ref, RefOr,
    Required, ServerBuilder,
};
use utoipa::{Modify, OpenApi as _};

use crate::views;

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        super::api::create,
        super::api::status,
        super::api::verify,
        super::jwks,
        super::appliance_info,
        super::signing_key,
        super::health,
        super::openapi,
        super::tlog::checkpoint,
        super::tlog::tile,
        super::tlog::handover,
    ),
    components(schemas(views::ErrorView, views::DecisionEvent, views::RequestedEvent)),
    modifiers(&Shared),
)]
struct Document;

/// The error replies the operations share, by status: `(status, component, description)`.
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "400",
        "BadRequest",
        "The body is not JSON of the request's schema, or a query parameter is out of its \
         range or given twice (`invalid_argument`).",
    ),
    ("401", "Unauthorized", "No valid API key (`unauthorized`)."),
    (
        "403",
        "Forbidden",
        "The key lacks the scope (`forbidden`), or an approver has not accepted requests from \
         the key's owner (`not_accepted`; they run `approvers allow --from usr_…` over SSH).",
    ),
    (
        "404",
        "NotFound",
        "No such request, key or approver, or not yours (`unknown_request`, `unknown_key`, \
         `unknown_user`).",
    ),
    (
        "422",
        "Unprocessable",
        "Well-formed, but refused by a rule the schema cannot state (`invalid_argument`): a \
         threshold above the number of approvers, metadata over 4 KB once serialized, a \
         callback_url the delivery cannot use (not HTTP(S), a port past 65535) or whose host \
         is or resolves to an internal address.",
    ),
    (
        "413",
        "TooLarge",
        "The body is over 16 KiB (`payload_too_large`).",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body is not JSON (`unsupported_media_type`).",
    ),
    (
        "429",
        "RateLimited",
        "Too many requests from this address or with this key (`rate_limited`), or over a \
         quota of the key's owner (`quota_exceeded`).",
    ),
];

/// Which shared errors each operation answers with.
const ANSWERS: &[(&str, HttpMethod, &[&str])] = &[
    (
        "/api/v1/approvals/request",
        HttpMethod::Post,
        &["400", "401", "403", "404", "413", "415", "422", "429"],
    ),
    (
        "/api/v1/approvals/{id}",
        HttpMethod::Get,
        &["400", "401", "403", "404", "429"],
    ),
    (
        "/api/v1/approvals/{id}/verify",
        HttpMethod::Get,
        &["404", "429"],
    ),
    ("/api/v1/keys/{key_id}", HttpMethod::Get, &["404", "429"]),
    ("/.well-known/jwks.json", HttpMethod::Get, &["429"]),
    ("/api/v1/appliance", HttpMethod::Get, &["429"]),
    ("/healthz", HttpMethod::Get, &["429"]),
    ("/api/v1/openapi.json", HttpMethod::Get, &["429"]),
    ("/audit/checkpoint", HttpMethod::Get, &["429"]),
    ("/audit/tile/{path}", HttpMethod::Get, &["429"]),
];

/// The webhooks the appliance sends: `(event, summary, body schema, answers)`.
const WEBHOOKS: &[(&str, &str, &str)] = &[
    (
        "approval.decided",
        "A request was approved or rejected (to its callback_url and its owner's endpoints)",
        "DecisionEvent",
    ),
    (
        "approval.expired",
        "A request expired undecided",
        "DecisionEvent",
    ),
    (
        "approval.requested",
        "A request waits for an approver (to their `notify set` URL; Slack and ntfy show `text`)",
        "RequestedEvent",
    ),
];

/// The webhook headers: `(name, component, schema type, description)`.
const WEBHOOK_HEADERS: &[(&str, &str, Type, &str)] = &[
    (
        "webhook-id",
        "WebhookId",
        Type::String,
        "The message id (`msg_…`), the same on every retry.",
    ),
    (
        "webhook-timestamp",
        "WebhookTimestamp",
        Type::Integer,
        "Unix seconds of this attempt.",
    ),
    (
        "webhook-signature",
        "WebhookSignature",
        Type::String,
        "`v1a,<base64 Ed25519 signature>` over `webhook-id.webhook-timestamp.body`, by the \
         decision key (`whpk_…` as `webhooks` over SSH shows it; the same key as the JWKS).",
    ),
];

fn schema_ref(name: &str) -> Ref {
    Ref::from_schema_name(name)
}

fn error_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(schema_ref("Error")))
        .build()
}

/// What types cannot say: the info block, the shared error replies, the webhooks.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut OpenApi) {
        doc.info = InfoBuilder::new()
            .title("sshsign appliance: human approval API")
            .version("1.0.0")
            .description(Some(
                "Ask a person to approve an action; get back a decision the appliance's \
                 hardware token signed, which anyone can verify offline.\n\nCompatible with the SignedApproval API. An API key (made over SSH with \
                 `api-key create`) asks for a decision; the approvers decide in the browser \
                 with a passkey or a TOTP code (or over SSH where the request allows it); the \
                 decision is canonical JSON (RFC 8785) signed with Ed25519 by the token's \
                 decision key, published at `/.well-known/jwks.json`. Errors are \
                 `{\"error\": {\"code\", \"message\"}}` with a stable code.",
            ))
            .license(Some(LicenseBuilder::new().name("MIT OR Apache-2.0").build()))
            .build();
        doc.servers = Some(vec![
            ServerBuilder::new()
                .url("/")
                .description(Some("the appliance (SSHSIGN_HTTP_DOMAIN)"))
                .build(),
        ]);
        doc.tags = Some(
            [
                ("approvals", "Requests for a human decision"),
                ("keys", "The appliance's public keys"),
                (
                    "audit",
                    "The audit log as C2SP tlog-tiles, for witnesses and tlog clients",
                ),
                ("operations", "Health and this document"),
            ]
            .into_iter()
            .map(|(name, about)| {
                TagBuilder::new()
                    .name(name)
                    .description(Some(about))
                    .build()
            })
            .collect(),
        );
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`sshsign_…`) made over SSH with `api-key create --label L \
                         --scopes approval:create,approval:read`; shown once, stored hashed, \
                         revocable with `api-key revoke`.",
                    ))
                    .build(),
            ),
        );
        for (_, name, about) in ERRORS {
            let mut response = ResponseBuilder::new()
                .description(*about)
                .content("application/json", error_content());
            if *name == "RateLimited" {
                let wait = utoipa::openapi::HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("Seconds to wait."))
                    .build();
                response = response.header("Retry-After", wait);
            }
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response.build()));
        }
        for (header, name, kind, about) in WEBHOOK_HEADERS {
            let parameter = ParameterBuilder::new()
                .name(*header)
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .schema(Some(ObjectBuilder::new().schema_type(kind.clone())))
                .description(Some(*about))
                .build();
            components
                .parameters
                .insert((*name).to_owned(), RefOr::T(parameter));
        }
        for (path, method, statuses) in ANSWERS {
            let Some(item) = doc.paths.paths.get_mut(*path) else {
                continue;
            };
            let Some(operation) = operation_mut(item, method) else {
                continue;
            };
            for status in *statuses {
                let (_, name, _) = ERRORS
                    .iter()
                    .find(|(s, _, _)| s == status)
                    .expect("every status in ANSWERS is in ERRORS");
                operation.responses.responses.insert(
                    (*status).to_owned(),
                    RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))),
                );
            }
        }
        let mut webhooks = PathsBuilder::new();
        for (event, summary, body) in WEBHOOKS {
            let mut operation = OperationBuilder::new()
                .summary(Some(*summary))
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(schema_ref(body))).build(),
                        )
                        .build(),
                ))
                .response(
                    "200",
                    ResponseBuilder::new().description("Any 2xx: delivered."),
                );
            for (_, name, _, _) in WEBHOOK_HEADERS {
                operation =
                    operation.parameter_ref(Ref::new(format!("#/components/parameters/{name}")));
            }
            if *event == "approval.decided" {
                operation = operation.response(
                    "410",
                    ResponseBuilder::new().description("Gone: no more deliveries are attempted."),
                );
            }
            webhooks = webhooks.path(*event, PathItem::new(HttpMethod::Post, operation));
        }
        doc.webhooks = Some(webhooks.build());
    }
}

fn operation_mut<'a>(
    item: &'a mut PathItem,
    method: &HttpMethod,
) -> Option<&'a mut utoipa::openapi::path::Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        _ => None,
    }
}

/// The document, as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(Document::openapi()).unwrap_or_default()
}

/// The document as the repository keeps it: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_copy_is_what_the_types_generate() {
        assert!(
            include_str!("openapi.json") == document_text(),
            "src/web/openapi.json is stale: run `cargo run --bin sshsign-server -- openapi > \
             src/web/openapi.json`"
        );
    }

    #[test]
    fn every_reference_resolves_and_every_operation_says_how_it_fails() {
        let doc = document();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/").skip(1) {
            let pointer = format!("/{}", &reference[..reference.find('"').unwrap()]);
            assert!(
                doc.pointer(&pointer).is_some(),
                "{pointer} does not resolve"
            );
        }
        for (path, method, statuses) in ANSWERS {
            let method = match method {
                HttpMethod::Post => "post",
                _ => "get",
            };
            let responses = &doc["paths"][path][method]["responses"];
            for status in *statuses {
                assert!(responses.get(*status).is_some(), "{method} {path} {status}");
            }
        }
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["webhooks"].as_object().map(|w| w.len()), Some(3));
    }
}
