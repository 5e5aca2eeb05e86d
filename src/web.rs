//! The HTTP side (axum).
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | 200 when the token answers, 503 when it does not or the audit log's full check failed |
//! | `GET /api/v1/appliance` | the SSH host key and the appliance's own public keys |
//! | `GET /.well-known/jwks.json` | the decision-signing key as an Ed25519 JWK |
//! | `GET /api/v1/keys/{key_id}` | a signing key's public half and status, for verifiers |
//! | `/api/v1/approvals/...` | the human-approval REST API ([`api`]) |
//! | `GET /api/v1/openapi.json` | its OpenAPI 3.1 document (`src/web/openapi.json`) |
//! | `GET /audit/checkpoint`, `GET /audit/tile/...` | the audit log as C2SP tlog-tiles ([`tlog`]) |
//! | `/enroll`, `/login`, `/requests`, `/approve/...`, `/account/...`, `/static/...` | the pages ([`pages`]) |
//!
//! Every error is `{"error":{"code","message"}}` with a stable code and the status that fits.
//!
//! [`router`] takes the state and returns a `Router`, so tests can drive it without a socket.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::appliance::{self, Appliance};
use crate::views::{
    ApplianceView, ErrorBody, ErrorView, HealthView, HostKeyView, Jwks, PublicKeyView,
    SigningKeysView, TokenUsageView,
};

pub mod api;
pub mod guard;
pub mod openapi;
pub mod pages;
pub mod serve;
pub mod session;
pub mod tlog;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct WebState {
    pub appliance: Arc<Appliance>,
    /// The SSH host key, OpenSSH one-line form.
    pub host_key: String,
    pub host_key_fingerprint: String,
    pub guard: Arc<guard::Guard>,
    pub sessions: Arc<session::Sessions>,
}

/// An error reply: `{"error":{"code","message"}}` with a status; internals are logged only.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds, for a 429.
    retry_after: Option<u64>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorView {
            error: ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<appliance::Error> for AppError {
    fn from(error: appliance::Error) -> Self {
        if error.is_internal() {
            tracing::error!(%error, "HTTP request failed");
        }
        AppError {
            status: status_of(&error),
            code: error.code(),
            message: error.public_message(),
            retry_after: None,
        }
    }
}

/// The HTTP status that fits an appliance error.
fn status_of(error: &appliance::Error) -> StatusCode {
    use appliance::Error as E;
    match error {
        _ if error.is_internal() => StatusCode::SERVICE_UNAVAILABLE,
        E::Unauthorized | E::AuthenticationFailed(_) => StatusCode::UNAUTHORIZED,
        E::TotpClosed { .. } | E::TotpRetired(_) | E::RequestTotpClosed(_) => StatusCode::FORBIDDEN,
        E::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        E::OverQuota(_) => StatusCode::TOO_MANY_REQUESTS,
        E::Forbidden(_)
        | E::NotPrincipal(_)
        | E::SelfApproval(_)
        | E::MethodNotAllowed { .. }
        | E::NotAccepted { .. }
        | E::Denied { .. } => StatusCode::FORBIDDEN,
        E::UnknownKey(_)
        | E::NoKeyFor(_)
        | E::UnknownAuthorization(_)
        | E::UnknownRequest(_)
        | E::UnknownApiKey(_)
        | E::UnknownEnrollment
        | E::UnknownAuthenticator(_) => StatusCode::NOT_FOUND,
        E::AlreadyRevoked(_)
        | E::AuthorizationAlreadyRevoked(_)
        | E::AlreadyResolved { .. }
        | E::RequestExpired(_)
        | E::ApiKeyRevoked(_)
        | E::AlreadyVoted(_) => StatusCode::CONFLICT,
        E::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        E::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        E::UnknownUser(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    }
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/appliance", get(appliance_info))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/keys/{key_id}", get(signing_key))
        .route("/api/v1/approvals/request", post(api::create))
        .route("/api/v1/approvals/{id}", get(api::status))
        .route("/api/v1/approvals/{id}/verify", get(api::verify))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/audit/checkpoint", get(tlog::checkpoint))
        .route("/audit/tile/{*path}", get(tlog::tile))
        .route("/audit/handovers/{name}", get(tlog::handover))
        .route("/static/sshsign.js", get(pages::script))
        .route("/static/sshsign.css", get(pages::style))
        .route("/enroll/{token}", get(pages::enroll_page))
        .route("/enroll/{token}/options", post(pages::enroll_options))
        .route("/enroll/{token}/finish", post(pages::enroll_finish))
        .route("/login", get(pages::login_page))
        .route("/login/options", post(pages::login_options))
        .route("/login/finish", post(pages::login_finish))
        .route("/logout", post(pages::logout))
        .route("/requests", get(pages::requests_page))
        .route("/approve/{id}", get(pages::approve_page))
        .route("/approve/{id}/options", post(pages::approve_options))
        .route("/approve/{id}/decide", post(pages::approve_decide))
        .route("/account/totp/{id}/options", post(pages::reopen_options))
        .route("/account/totp/{id}/reopen", post(pages::reopen_totp))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::protect,
        ))
        .with_state(state)
}

/// This document: OpenAPI 3.1, generated from the handlers and types ([`openapi`]).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "OpenAPI 3.1.", content_type = "application/json", body = Object)),
)]
async fn openapi() -> Response {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        TEXT.get_or_init(openapi::document_text).as_str(),
    )
        .into_response()
}

async fn not_found() -> AppError {
    AppError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "http_method_not_allowed",
        "this endpoint does not take that HTTP method",
    )
}

/// Whether the token answers, and how busy it has been.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "health",
    responses(
        (status = 200, description = "Healthy.", body = HealthView),
        (status = 503, description = "No token answers, or the audit log's full check found a mismatch.", body = HealthView),
    ),
)]
async fn health(State(state): State<WebState>) -> Response {
    let audit = state.appliance.audit_health();
    let tampered = audit.check.state == crate::audit::CheckState::Tampered;
    match state.appliance.token_health().await {
        Ok((description, tokens, usage)) if tokens.iter().any(|t| t.error.is_none()) => {
            let degraded = tokens.iter().any(|t| t.error.is_some());
            let view = HealthView {
                status: if tampered {
                    "audit_tampered"
                } else if degraded {
                    "token_degraded"
                } else {
                    "ok"
                },
                token: Some(description),
                tokens,
                token_usage: Some(TokenUsageView {
                    calls: usage.calls,
                    busy_seconds: usage.busy.as_secs_f64(),
                }),
                signing_keys: SigningKeysView::new(state.appliance.key_usage()),
                audit,
            };
            let status = if tampered {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            (status, Json(view)).into_response()
        }
        answer => {
            let tokens = match answer {
                Ok((_, tokens, _)) => tokens,
                Err(error) => {
                    tracing::error!(%error, "health check: token unreachable");
                    Vec::new()
                }
            };
            let down = HealthView {
                status: "token_unavailable",
                token: None,
                tokens,
                token_usage: None,
                signing_keys: SigningKeysView::new(state.appliance.key_usage()),
                audit,
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(down)).into_response()
        }
    }
}

/// The SSH host key and the appliance's own public keys.
#[utoipa::path(
    get,
    path = "/api/v1/appliance",
    tag = "keys",
    operation_id = "appliance",
    responses((status = 200, description = "Public keys.", body = ApplianceView)),
)]
async fn appliance_info(State(state): State<WebState>) -> Json<ApplianceView> {
    Json(ApplianceView {
        ssh_host_key: HostKeyView {
            public_key: state.host_key.clone(),
            fingerprint: state.host_key_fingerprint.clone(),
        },
        keys: state.appliance.appliance_keys().to_vec(),
    })
}

/// The decision key(s), as Ed25519 JWKs.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "keys",
    operation_id = "jwks",
    responses((status = 200, description = "A JWK set.", body = Jwks)),
)]
async fn jwks(State(state): State<WebState>) -> Json<Jwks> {
    Json(state.appliance.jwks())
}

/// A signing key's public half and status, for verifiers.
#[utoipa::path(
    get,
    path = "/api/v1/keys/{key_id}",
    tag = "keys",
    operation_id = "signingKey",
    params(("key_id" = String, Path, description = "`ak_…`", pattern = r"^ak_[a-z2-7]{26}$")),
    responses((status = 200, description = "The key.", body = PublicKeyView)),
)]
async fn signing_key(
    State(state): State<WebState>,
    Path(key_id): Path<String>,
) -> Result<Json<PublicKeyView>, AppError> {
    let key = state.appliance.public_key(&key_id)?;
    Ok(Json(key))
}
