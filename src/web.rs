//! The HTTP side (axum). Public, read-only endpoints for now:
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | 200 when the token answers, 503 when it does not |
//! | `GET /api/v1/appliance` | the SSH host key and the appliance's own public keys |
//! | `GET /.well-known/jwks.json` | the decision-signing key as an Ed25519 JWK |
//! | `GET /api/v1/keys/{key_id}` | a signing key's public half and status, for verifiers |
//!
//! [`router`] takes the state and returns a `Router`, so tests can drive it without a socket.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::appliance::{self, Appliance};
use crate::ids::IdKind;
use crate::time;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct WebState {
    pub appliance: Arc<Appliance>,
    /// The SSH host key, OpenSSH one-line form.
    pub host_key: String,
    pub host_key_fingerprint: String,
}

/// An error reply: `{"error":{"code","message"}}` with a status; internals are logged only.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<appliance::Error> for AppError {
    fn from(error: appliance::Error) -> Self {
        if error.is_internal() {
            tracing::error!(%error, "HTTP request failed");
        }
        AppError {
            status: if error.is_internal() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            },
            code: error.code(),
            message: error.public_message(),
        }
    }
}

pub fn router(state: WebState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/appliance", get(appliance_info))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/keys/{key_id}", get(signing_key))
        .with_state(state)
}

async fn health(State(state): State<WebState>) -> Response {
    let token = state.appliance.token();
    match token.random::<8>().await {
        Ok(_) => {
            Json(json!({ "status": "ok", "token": token.blocking().describe() })).into_response()
        }
        Err(error) => {
            tracing::error!(%error, "health check: token unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "token_unavailable" })),
            )
                .into_response()
        }
    }
}

async fn appliance_info(State(state): State<WebState>) -> Json<Value> {
    Json(json!({
        "ssh_host_key": {
            "public_key": state.host_key,
            "fingerprint": state.host_key_fingerprint,
        },
        "keys": state.appliance.appliance_keys(),
    }))
}

async fn jwks(State(state): State<WebState>) -> Json<Value> {
    let keys: Vec<Value> = state
        .appliance
        .appliance_keys()
        .iter()
        .filter(|key| key.role == "decision")
        .map(|key| crate::approval::decision::jwk(&key.fingerprint, &key.key.public_key))
        .collect();
    Json(json!({ "keys": keys }))
}

async fn signing_key(
    State(state): State<WebState>,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let not_found = || AppError {
        status: StatusCode::NOT_FOUND,
        code: "unknown_key",
        message: format!("unknown key id {key_id}"),
    };
    if !IdKind::SigningKey.matches(&key_id) {
        return Err(not_found());
    }
    let key = state
        .appliance
        .store()
        .signing_key(&key_id)
        .map_err(appliance::Error::from)?
        .ok_or_else(not_found)?;
    Ok(Json(json!({
        "key_id": key.key_id,
        "public_key": appliance::public_key_line(&key),
        "fingerprint": appliance::public_key_fingerprint(&key),
        "status": key.status(),
        "created_at": time::rfc3339(key.created_at),
        "revoked_at": key.revoked_at.map(time::rfc3339),
    })))
}
