//! REST API v1 for human approval, compatible with the SignedApproval seed.
//!
//! | route | auth | what |
//! |---|---|---|
//! | `POST /api/v1/approvals/request` | bearer, `approval:create` | ask for a human decision |
//! | `GET /api/v1/approvals/{id}` | bearer, `approval:read`, own requests | status and decision |
//! | `GET /api/v1/approvals/{id}/verify` | public | the decision, checked by the appliance |
//!
//! Bodies are JSON (`Content-Type: application/json`, at most [`MAX_BODY`] bytes); unknown
//! fields are refused so a misspelt option never passes silently.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{AppError, WebState};
use crate::appliance::{ApprovalInput, Error, VerifiedDecision};
use crate::approval::decision::Method;
use crate::approval::view::approval_json;
use crate::store::{ApiKeyRecord, ApiScope};

/// The largest request body the API reads.
pub const MAX_BODY: usize = 16 * 1024;
/// How long a body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `POST /api/v1/approvals/request`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    action: String,
    ttl_seconds: Option<i64>,
    metadata: Option<Map<String, Value>>,
    callback_url: Option<String>,
    approvers: Option<Vec<String>>,
    threshold: Option<u32>,
    methods: Option<Vec<Method>>,
}

/// The API key a request's `Authorization: Bearer` header carries, checked for `scope`.
fn api_key(
    state: &WebState,
    headers: &HeaderMap,
    scope: ApiScope,
) -> Result<ApiKeyRecord, AppError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| SecretString::from(v.trim().to_owned()))
        .ok_or(Error::Unauthorized)?;
    let key = state
        .appliance
        .authenticate_api_key(secret.expose_secret(), scope)?;
    if let Err(wait) = state.guard.per_api_key.check(&key.id) {
        return Err(super::guard::too_many(wait));
    }
    Ok(key)
}

/// Reads a JSON body: 415 if it is not JSON, 413 past `limit` bytes, 400 if it does not parse.
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(
    request: Request<Body>,
    limit: usize,
) -> Result<T, AppError> {
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let read = axum::body::to_bytes(request.into_body(), limit);
    let bytes = tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| {
            AppError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the body did not arrive in time",
            )
        })?
        .map_err(|_| Error::PayloadTooLarge { limit })?;
    let reader = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(reader).map_err(|e| {
        let at = match e.path().to_string().as_str() {
            "." => String::new(),
            path => format!(" at {path}"),
        };
        let message = format!("the body is not a valid request{at}: {}", e.inner());
        AppError::from(Error::InvalidArgument(message))
    })
}

/// `POST /api/v1/approvals/request`.
pub async fn create(
    State(state): State<WebState>,
    request: Request<Body>,
) -> Result<Response, AppError> {
    let key = api_key(&state, request.headers(), ApiScope::ApprovalCreate)?;
    let body: RequestBody = json_body(request, MAX_BODY).await?;
    let input = ApprovalInput {
        action: body.action,
        ttl_seconds: body.ttl_seconds,
        metadata: body.metadata.unwrap_or_default(),
        callback_url: body.callback_url,
        approvers: body.approvers,
        threshold: body.threshold,
        methods: body.methods,
    };
    let (record, urls) = state.appliance.request_approval(&key, input).await?;
    let mut reply = approval_json(&record);
    // Where to poll, the first approver's page (as the seed has it) and every approver's own.
    // They are addresses, not credentials: each approver proves themselves on the page.
    reply["status_url"] = format!(
        "{}/api/v1/approvals/{}",
        state.appliance.approval_base(),
        record.request_id
    )
    .into();
    reply["approval_url"] = urls.first().map(|(_, url)| url.clone()).into();
    reply["approval_urls"] = urls
        .iter()
        .map(|(approver, url)| json!({ "approver": approver, "url": url }))
        .collect();
    Ok((StatusCode::CREATED, Json(reply)).into_response())
}

/// `GET /api/v1/approvals/{id}`: the caller's own requests only.
pub async fn status(
    State(state): State<WebState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let key = api_key(&state, &headers, ApiScope::ApprovalRead)?;
    let record = state.appliance.approval_for_key(&key, &id).await?;
    let mut reply = approval_json(&record);
    reply["webhooks"] = state
        .appliance
        .decision_deliveries(&record)?
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "url": d.url,
                "state": d.state.as_str(),
                "attempts": d.attempts,
                "last_result": d.last_result,
            })
        })
        .collect();
    Ok(Json(reply))
}

/// `GET /api/v1/approvals/{id}/verify`: public. The decision is checked against the
/// appliance's own decision keys, never a key the request carries.
pub async fn verify(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let (request, decision) = state.appliance.verify_approval(&id).await?;
    let Some(VerifiedDecision {
        signed,
        public_key,
        checked,
    }) = decision
    else {
        return Ok(Json(json!({
            "id": request.request_id,
            "valid": false,
            "approved": false,
            "status": request.status.word(crate::request::RequestKind::Approval),
            "reason": format!("the request is {} and has no decision", request.status.word(crate::request::RequestKind::Approval)),
        })));
    };
    let payload = BASE64
        .decode(&signed.signed_payload)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
    // `valid` says the signature checks out (the seed's meaning); `approved` says that it does
    // and that what it signs is an approval of this request, made before it expired, so a
    // client reading one field cannot take a rejection for an approval.
    let approved = checked.as_ref().is_ok_and(|c| {
        c.payload.decision == crate::approval::decision::Verdict::Approved
            && c.payload.rid == request.request_id
            && c.payload.ts <= c.payload.exp
    });
    let mut reply = json!({
        "id": request.request_id,
        "valid": checked.is_ok(),
        "approved": approved,
        "status": request.status.word(crate::request::RequestKind::Approval),
        "decision": payload.as_ref().map(|p| p["decision"].clone()),
        "method": payload.as_ref().map(|p| p["method"].clone()),
        "payload": payload,
        "signed_payload": signed.signed_payload,
        "signature": signed.signature,
        "key_id": signed.key_id,
        "public_key": public_key.map(|k| crate::approval::decision::jwk(&signed.key_id, &k)),
        "jwks_url": format!("{}/.well-known/jwks.json", state.appliance.approval_base()),
    });
    if let Err(error) = checked {
        reply["reason"] = error.to_string().into();
    }
    Ok(Json(reply))
}
