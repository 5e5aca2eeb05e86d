//! The pages people use: enrolling a passkey, logging in, the list of requests waiting for
//! them, and a request's approval page; and the same-origin JSON endpoints their script calls.
//!
//! | route | what |
//! |---|---|
//! | `GET /enroll/{token}` | register a passkey through a link printed by `enroll passkey` |
//! | `POST /enroll/{token}/options`, `/finish` | the WebAuthn registration ceremony |
//! | `GET /login`, `POST /login/options`, `/login/finish`, `POST /logout` | passkey login |
//! | `GET /requests` | what waits for the logged-in approver |
//! | `GET /approve/{id}[?as=usr_...]` | a request, and its decision buttons for its approvers |
//! | `POST /approve/{id}/options`, `/decide` | a decision, proved by passkey or TOTP code |
//! | `POST /account/totp/{id}/options`, `/reopen` | reopen a closed TOTP secret with a passkey |
//!
//! A request's address is a pointer, not a credential: whoever holds it sees the request, and
//! only an approver's own passkey or TOTP code decides it.
//!
//! HTML is rendered by the templates in [`html`] (maud, which escapes every value); scripts and styles come from `/static/`
//! (the CSP allows nothing inline). No GET changes anything. Every POST must be same-origin
//! JSON: the `Origin` must be the appliance's, `Sec-Fetch-Site` (where sent) `same-origin`, and
//! the session cookie is SameSite=Strict.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::Value;

use super::api::{MAX_BODY, json_body};
use super::guard::ClientAddress;
use super::session::set_cookie;
use super::{AppError, WebState};
use crate::appliance::TotpState;
use crate::appliance::{Credential, Error, Proof, Ruling};
use crate::approval::decision::{Method, Verdict};
use crate::approval::envelope::MAX_IMAGE_BYTES;
use crate::request::RequestId;
use crate::views::{
    CeremonyView, DecidedView, LoggedInView, LoggedOutView, RegisteredView, ReopenedView,
    RequestView,
};

mod html;

const SCRIPT: &str = include_str!("assets/sshsign.js");
const STYLE: &str = include_str!("assets/sshsign.css");

/// An HTML page with a status, for links that do not (or no longer) work.
fn notice(status: StatusCode, title: &str, text: &str) -> Response {
    (status, Html(html::notice(title, text))).into_response()
}

/// What a page handler's error looks like to a person.
fn page_error(error: Error) -> Response {
    match error {
        Error::UnknownRequest(_) | Error::UnknownEnrollment => notice(
            StatusCode::NOT_FOUND,
            "Link not valid",
            "This link is unknown, used or expired. Ask for a new one.",
        ),
        other => {
            if other.is_internal() {
                tracing::error!(error = %other, "page failed");
            }
            notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                &other.public_message(),
            )
        }
    }
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    let mut response = text.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Refuses a POST that did not come from one of our own pages.
fn same_origin(state: &WebState, headers: &HeaderMap) -> Result<(), AppError> {
    let refused = |why: &str| {
        AppError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            format!("refused: {why}"),
        )
    };
    let base = state.appliance.approval_base();
    let origin_ok = headers
        .get(header::ORIGIN)
        .is_none_or(|origin| origin.to_str().ok() == Some(base));
    let site_ok = headers
        .get("sec-fetch-site")
        .is_none_or(|site| site.to_str().ok() == Some("same-origin"));
    if !origin_ok || !site_ok {
        return Err(refused("the request came from another site"));
    }
    Ok(())
}

/// The largest browser POST: a decision carrying the largest drawn signature the envelope
/// takes, base64-encoded, with room for the rest of the body.
const MAX_BROWSER_BODY: usize = MAX_IMAGE_BYTES.div_ceil(3) * 4 + MAX_BODY;

/// A browser POST's JSON body, once its origin is checked.
async fn browser_body<T: serde::de::DeserializeOwned>(
    state: &WebState,
    request: Request<Body>,
) -> Result<(HeaderMap, T), AppError> {
    same_origin(state, request.headers())?;
    let headers = request.headers().clone();
    Ok((headers, json_body(request, MAX_BROWSER_BODY).await?))
}

// ----- enrollment -----

pub async fn enroll_page(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    let enrollment = match state.appliance.enrollment_page(&token) {
        Ok(e) => e,
        Err(e) => return page_error(e),
    };
    Html(html::enroll(
        &token,
        &enrollment.user_id,
        &enrollment.expires_at,
    ))
    .into_response()
}

pub async fn enroll_options(
    State(state): State<WebState>,
    Path(token): Path<String>,
    request: Request<Body>,
) -> Result<Json<CeremonyView>, AppError> {
    let from = client_ip(&request);
    let (_, Empty {}) = browser_body(&state, request).await?;
    let (ceremony, options) = state
        .appliance
        .passkey_registration_options(&token, from)
        .await?;
    Ok(Json(CeremonyView { ceremony, options }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    ceremony: String,
    credential: Value,
    label: Option<String>,
}

pub async fn enroll_finish(
    State(state): State<WebState>,
    Path(token): Path<String>,
    request: Request<Body>,
) -> Result<Json<RegisteredView>, AppError> {
    let (_, finish): (_, Finish) = browser_body(&state, request).await?;
    let record = state
        .appliance
        .finish_passkey_registration(&token, &finish.ceremony, finish.credential, finish.label)
        .await?;
    Ok(Json(RegisteredView {
        id: record.id,
        label: record.label,
    }))
}

// ----- login -----

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// A same-site path to go to after login; anything else goes to the request list.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/requests".to_owned(),
    }
}

pub async fn login_page(Query(query): Query<NextQuery>) -> Response {
    Html(html::login(&local_path(query.next.as_deref()))).into_response()
}

pub async fn login_options(
    State(state): State<WebState>,
    request: Request<Body>,
) -> Result<Json<CeremonyView>, AppError> {
    let from = client_ip(&request);
    let (_, Empty {}) = browser_body(&state, request).await?;
    let (ceremony, options) = state.appliance.login_options(from).await?;
    Ok(Json(CeremonyView { ceremony, options }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    ceremony: String,
    credential: Value,
}

pub async fn login_finish(
    State(state): State<WebState>,
    request: Request<Body>,
) -> Result<Response, AppError> {
    let (_, login): (_, Login) = browser_body(&state, request).await?;
    let who = state
        .appliance
        .finish_login(&login.ceremony, login.credential)
        .await?;
    let secret = state.appliance.session_secret().await?;
    state
        .sessions
        .start(&secret, &who.user_id)
        .await
        .map_err(crate::appliance::Error::from)?;
    let mut response = Json(LoggedInView {
        user_id: who.user_id,
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(Some(&secret), state.guard.https),
    );
    Ok(response)
}

pub async fn logout(
    State(state): State<WebState>,
    request: Request<Body>,
) -> Result<Response, AppError> {
    same_origin(&state, request.headers())?;
    state
        .sessions
        .end(request.headers())
        .map_err(crate::appliance::Error::from)?;
    let mut response = Json(LoggedOutView { logged_out: true }).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(None, state.guard.https));
    Ok(response)
}

// ----- the list -----

pub async fn requests_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let Some(user) = state.sessions.user(&headers) else {
        return Redirect::to("/login?next=/requests").into_response();
    };
    // The first page (a thousand): a person's queue, not an archive.
    let requests = match state
        .appliance
        .requests_of(&user, crate::appliance::Page::first())
        .await
    {
        Ok((list, _)) => list,
        Err(e) => return page_error(e),
    };
    let waiting: Vec<html::Waiting> = requests
        .iter()
        .filter(|r| r.awaits(&user))
        .map(|r| html::Waiting {
            id: r.id().to_owned(),
            summary: r.summary(),
            expires_at: r.expires_at(),
        })
        .collect();
    let authenticators = match state.appliance.authenticators_of(&user) {
        Ok(list) => list,
        Err(e) => return page_error(e),
    };
    let closed: Vec<_> = authenticators
        .iter()
        .filter(|a| a.state == Some(TotpState::Closed))
        .collect();
    Html(html::requests(&user, &waiting, &closed)).into_response()
}

// ----- a request -----

#[derive(Debug, Deserialize)]
pub struct ApproverQuery {
    /// The approver the page is addressed to (a pointer, like the rest of the address).
    #[serde(rename = "as")]
    approver: Option<String>,
}

pub async fn approve_page(
    State(state): State<WebState>,
    Path(id): Path<String>,
    Query(query): Query<ApproverQuery>,
    headers: HeaderMap,
) -> Response {
    let session = state.sessions.user(&headers);
    let viewer = session.as_deref();
    let addressed = query.approver.as_deref();
    match state.appliance.page(&id, viewer).await {
        Ok(view) => {
            let login = viewer.is_none().then(|| percent(&format!("/approve/{id}")));
            Html(html::request(&view, addressed, login.as_deref())).into_response()
        }
        Err(e) => page_error(e),
    }
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsBody {
    decision: Verdict,
    /// Whose passkey to ask for, when the page lets several decide.
    approver: Option<String>,
}

pub async fn approve_options(
    State(state): State<WebState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Json<CeremonyView>, AppError> {
    let from = client_ip(&request);
    let (headers, body): (_, OptionsBody) = browser_body(&state, request).await?;
    let session = state.sessions.user(&headers);
    let (ceremony, options) = state
        .appliance
        .decision_passkey_options(
            &id,
            session.as_deref(),
            body.approver.as_deref(),
            body.decision,
            from,
        )
        .await?;
    Ok(Json(CeremonyView { ceremony, options }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    decision: Verdict,
    method: Method,
    /// Who is deciding: whose TOTP code this is.
    approver: Option<String>,
    ceremony: Option<String>,
    credential: Option<Value>,
    code: Option<String>,
    reason: Option<String>,
    /// A drawn signature, base64 PNG (co-signed requests).
    signature_png: Option<String>,
}

pub async fn approve_decide(
    State(state): State<WebState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Json<DecidedView>, AppError> {
    let client = client_address(&request);
    let (headers, body): (_, DecideBody) = browser_body(&state, request).await?;
    let session = state.sessions.user(&headers);
    let missing = |what: &str| Error::InvalidArgument(format!("{what} is missing"));
    let credential = match body.method {
        Method::Passkey => Credential::Passkey {
            ceremony: body.ceremony.ok_or_else(|| missing("ceremony"))?,
            credential: body.credential.ok_or_else(|| missing("credential"))?,
        },
        Method::Totp => Credential::Totp {
            approver: body.approver.ok_or_else(|| missing("approver"))?,
            code: body.code.ok_or_else(|| missing("code"))?,
        },
        Method::Ssh => {
            return Err(
                Error::InvalidArgument("decide over SSH with `approve --id`".into()).into(),
            );
        }
    };
    let drawn = match body.signature_png {
        Some(png) => Some(
            BASE64
                .decode(png.as_bytes())
                .map_err(|_| Error::InvalidArgument("signature_png is not base64".into()))?,
        ),
        None => None,
    };
    let id = RequestId::parse(&id).ok_or(Error::UnknownRequest(id))?;
    let ruling = Ruling {
        verdict: body.decision,
        reason: body.reason,
        drawn,
        // The page shows the disclosure above its buttons for a legal agreement.
        consented: true,
    };
    let proof = Proof::Page {
        credential,
        viewer: session,
        client,
    };
    let decided = state.appliance.decide(&id, ruling, proof).await?;
    let (signed, votes) = match decided.view(state.appliance.page_url(decided.id(), None)) {
        RequestView::Signature(r) => (Some(r.signature.is_some()), None),
        RequestView::Approval(r) => (None, Some(r.request.votes.len())),
    };
    Ok(Json(DecidedView {
        id: decided.id().to_owned(),
        status: decided.status_word(),
        signed,
        votes,
    }))
}

/// The logged-in user of a browser POST, or 401.
fn logged_in(state: &WebState, headers: &HeaderMap) -> Result<String, AppError> {
    state.sessions.user(headers).ok_or_else(|| {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "log in with a passkey first",
        )
    })
}

pub async fn reopen_options(
    State(state): State<WebState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Json<CeremonyView>, AppError> {
    let from = client_ip(&request);
    let (headers, Empty {}) = browser_body(&state, request).await?;
    let user = logged_in(&state, &headers)?;
    let (ceremony, options) = state
        .appliance
        .reopen_totp_options(&user, &id, from)
        .await?;
    Ok(Json(CeremonyView { ceremony, options }))
}

pub async fn reopen_totp(
    State(state): State<WebState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Json<ReopenedView>, AppError> {
    let (headers, login): (_, Login) = browser_body(&state, request).await?;
    let user = logged_in(&state, &headers)?;
    let record = state
        .appliance
        .reopen_totp_with_passkey(&user, &id, &login.ceremony, login.credential)
        .await?;
    Ok(Json(ReopenedView {
        state: record.state,
        id: record.id,
    }))
}

/// The client's address, as the guard found it (the socket's, or a trusted proxy's).
fn client_ip(request: &Request<Body>) -> std::net::IpAddr {
    request
        .extensions()
        .get::<ClientAddress>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |ClientAddress(ip)| {
            *ip
        })
}

/// [`client_ip`], written out for the evidence of a decision.
fn client_address(request: &Request<Body>) -> String {
    request
        .extensions()
        .get::<ClientAddress>()
        .map(|ClientAddress(ip)| ip.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/approve/apr_x")), "/approve/apr_x");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "javascript:alert(1)",
            "/a\nb",
        ] {
            assert_eq!(local_path(Some(bad)), "/requests", "{bad}");
        }
        assert_eq!(local_path(None), "/requests");
    }
}
