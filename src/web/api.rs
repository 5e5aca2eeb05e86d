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
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{AppError, WebState};
use crate::appliance::{ApiCaller, ApiScope, ApprovalInput, Error, Requester};
use crate::approval::decision::Method;

use crate::views::{CreatedApproval, TrackedApproval, VerificationView};

/// The largest request body the API reads.
pub const MAX_BODY: usize = 16 * 1024;
/// How long a body may take to arrive.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request for a human decision: `POST /api/v1/approvals/request`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalInput)]
pub struct RequestBody {
    /// What the approvers are asked to approve: at least one character that is not white
    /// space (the text is trimmed of Unicode `White_Space`: the regex `\s` with U+0085 and
    /// without U+FEFF).
    #[schema(min_length = 1, max_length = 500, pattern = r"[^\s\u0085]|\uFEFF")]
    action: String,
    /// How long the request waits (default 86400). A whole number (`3600.0` is 3600).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 60, maximum = 604800)]
    ttl_seconds: Option<i64>,
    /// Up to 4 KB of JSON (serialized), shown to the approvers; more is refused with 422.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Map<String, Value>>,
    /// Receives the decision over HTTP(S); a URL the delivery cannot use, or whose host is or
    /// resolves to an internal address, is refused with 422.
    #[schema(format = Uri, max_length = 2048, pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+")]
    callback_url: Option<String>,
    /// User ids (`usr_…`) or SSH key fingerprints (`SHA256:…`); default: the key's owner.
    /// Each must exist (404 `unknown_user`) and have accepted the key's owner (`approvers
    /// allow --from`; 403 `not_accepted`).
    #[schema(min_items = 1, max_items = 20, inline, value_type = Option<Vec<ApproverName>>)]
    approvers: Option<Vec<String>>,
    /// Approvals needed (m of n); default 1, at most the number of approvers (422 past it).
    /// One rejection closes the request. A whole number.
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 20)]
    threshold: Option<u32>,
    /// How approvers may prove themselves; default passkey and totp.
    #[schema(min_items = 1)]
    methods: Option<Vec<Method>>,
}

impl From<RequestBody> for ApprovalInput {
    fn from(body: RequestBody) -> Self {
        ApprovalInput {
            action: body.action,
            ttl_seconds: body.ttl_seconds,
            metadata: body.metadata.unwrap_or_default(),
            callback_url: body.callback_url,
            approvers: body.approvers,
            threshold: body.threshold,
            methods: body.methods,
        }
    }
}

/// A request body's bytes as the handler reads them (for the fuzz target).
#[cfg(any(test, fuzzing))]
pub fn parse_request_body(bytes: &[u8]) -> Result<ApprovalInput, AppError> {
    parse_json::<RequestBody>(bytes).map(ApprovalInput::from)
}

/// An approver: a user id or an SSH key fingerprint.
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^(usr_[a-z2-7]{26}|SHA256:[A-Za-z0-9+/]{43})$")]
#[allow(dead_code)]
struct ApproverName(String);

/// A JSON Schema integer: `3600` or `3600.0` (JSON numbers do not tell them apart), never a
/// fraction, and within the field's type.
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error as _;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_i64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    });
    let whole = whole.ok_or_else(|| D::Error::custom(format!("{number} is not a whole number")))?;
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{number} is out of range")))
}

/// The API key a request's `Authorization: Bearer` header carries, checked for `scope`.
fn api_key(state: &WebState, headers: &HeaderMap, scope: ApiScope) -> Result<ApiCaller, AppError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| SecretString::from(v.trim().to_owned()))
        .ok_or(Error::Unauthorized)?;
    let key = state
        .appliance
        .authenticate_api_key(secret.expose_secret(), scope)?;
    if let Err(wait) = state.guard.per_api_key.check(&key.id().to_owned()) {
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
    parse_json(&bytes)
}

/// Parses JSON as `T`, naming where it went wrong.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let reader = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(reader).map_err(|e| {
        let at = match e.path().to_string().as_str() {
            "." => String::new(),
            path => format!(" at {path}"),
        };
        let message = format!("the body is not a valid request{at}: {}", e.inner());
        AppError::from(Error::InvalidArgument(message))
    })
}

/// Ask for a human decision.
#[utoipa::path(
    post,
    path = "/api/v1/approvals/request",
    tag = "approvals",
    operation_id = "requestApproval",
    request_body(
        content = RequestBody,
        example = json!({"action": "Deploy v2.1.0 to production", "ttl_seconds": 3600, "metadata": {"commit": "abc123"}}),
    ),
    responses((status = 201, description = "Recorded; the approvers' pages are listed.", body = CreatedApproval)),
    security(("apiKey" = ["approval:create"])),
)]
pub async fn create(
    State(state): State<WebState>,
    request: Request<Body>,
) -> Result<Response, AppError> {
    let key = api_key(&state, request.headers(), ApiScope::ApprovalCreate)?;
    let body: RequestBody = json_body(request, MAX_BODY).await?;
    let input = ApprovalInput::from(body);
    let created = state
        .appliance
        .request_approval(Requester::ApiKey(&key), input)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The approval request a path names.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ApprovalId {
    /// `apr_…`
    #[param(pattern = r"^apr_[a-z2-7]{26}$")]
    #[allow(dead_code)]
    id: String,
}

/// `wait` from a query string: at most once, 0 to [`crate::appliance::MAX_WAIT`] seconds.
fn wait_of(query: Option<&str>) -> Result<std::time::Duration, Error> {
    let most = crate::appliance::MAX_WAIT.as_secs();
    let refused = || Error::Invalid {
        field: "wait",
        reason: format!("is given at most once, a whole number of seconds from 0 to {most}"),
    };
    let mut waits = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(name, _)| name == "wait")
        .map(|(_, value)| value.parse::<u64>());
    let wait = match (waits.next(), waits.next()) {
        (None, _) => 0,
        (Some(Ok(seconds)), None) if seconds <= most => seconds,
        _ => return Err(refused()),
    };
    Ok(std::time::Duration::from_secs(wait))
}

/// How long a read of a request may wait for its decision (the OpenAPI document's account of
/// [`wait_of`]).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct WaitQuery {
    /// Seconds to wait while the request is pending (0 to 30, default 0): the answer comes as
    /// soon as it is decided or expires, or when the time is up with it still pending. A
    /// pipeline waits without polling by asking again.
    #[param(minimum = 0, maximum = 30, value_type = Option<u64>)]
    wait: Option<String>,
}

/// A request made with your keys: its status, votes, decision and webhook deliveries; with
/// `wait`, once it is decided (long polling).
#[utoipa::path(
    get,
    path = "/api/v1/approvals/{id}",
    tag = "approvals",
    operation_id = "getApproval",
    params(ApprovalId, WaitQuery),
    responses((status = 200, description = "The request.", body = TrackedApproval)),
    security(("apiKey" = ["approval:read"])),
)]
pub async fn status(
    State(state): State<WebState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<TrackedApproval>, AppError> {
    let key = api_key(&state, &headers, ApiScope::ApprovalRead)?;
    let wait = wait_of(query.as_deref())?;
    Ok(Json(
        state.appliance.wait_for_approval(&key, &id, wait).await?,
    ))
}

/// Public: the decision, checked against the appliance's own decision key (never a key the
/// request carries).
#[utoipa::path(
    get,
    path = "/api/v1/approvals/{id}/verify",
    tag = "approvals",
    operation_id = "verifyApproval",
    params(ApprovalId),
    responses((
        status = 200,
        description = "The verification; `valid` is false while there is no decision.",
        body = VerificationView,
    )),
)]
pub async fn verify(
    State(state): State<WebState>,
    Path(id): Path<String>,
) -> Result<Json<VerificationView>, AppError> {
    Ok(Json(state.appliance.verify_approval(&id).await?))
}
