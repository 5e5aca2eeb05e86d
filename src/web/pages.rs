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
//! HTML is rendered here with every value escaped; scripts and styles come from `/static/`
//! (the CSP allows nothing inline). No GET changes anything. Every POST must be same-origin
//! JSON: the `Origin` must be the appliance's, `Sec-Fetch-Site` (where sent) `same-origin`, and
//! the session cookie is SameSite=Strict.

use std::fmt::Write as _;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{MAX_BODY, json_body};
use super::guard::ClientAddress;
use super::session::set_cookie;
use super::{AppError, WebState};
use crate::appliance::{Credential, Error, HumanRequest, Proof, RequestPage, Ruling};
use crate::approval::decision::{Method, Verdict};
use crate::approval::envelope::MAX_IMAGE_BYTES;
use crate::request::{RequestId, RequestStatus};
use crate::store::{ApprovalRecord, PendingRequest, REQUEST_TOTP_BUDGET, TotpState};
use crate::time;

const SCRIPT: &str = include_str!("assets/sshsign.js");
const STYLE: &str = include_str!("assets/sshsign.css");

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · sshsign</title><link rel=\"stylesheet\" href=\"/static/sshsign.css\">\
         <script src=\"/static/sshsign.js\" defer></script></head>\
         <body><main><header class=\"brand\">sshsign</header>{body}\
         <p id=\"message\" role=\"status\"></p></main></body></html>\n",
        esc(title)
    )
}

/// An HTML page with a status, for links that do not (or no longer) work.
fn notice(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<h1>{}</h1><p>{}</p>", esc(title), esc(text));
    (status, Html(page(title, &body))).into_response()
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
    let enrollment = match state.appliance.enrollment(&token) {
        Ok(e) => e,
        Err(e) => return page_error(e),
    };
    let body = format!(
        "<h1>Register a passkey</h1>\
         <section data-page=\"enroll\" data-token=\"{token}\">\
         <p>This registers a passkey for <strong>{user}</strong> on this appliance. You will use \
         it to approve requests. The link works once, until <time datetime=\"{expires}\">{expires}</time>.</p>\
         <label for=\"label\">Name for this passkey</label>\
         <input id=\"label\" maxlength=\"64\" value=\"passkey\">\
         <div class=\"actions\"><button id=\"register\" class=\"primary\">Register passkey</button></div>\
         </section>",
        token = esc(&token),
        user = esc(&enrollment.user_id),
        expires = time::rfc3339(enrollment.expires_at),
    );
    Html(page("Register a passkey", &body)).into_response()
}

pub async fn enroll_options(
    State(state): State<WebState>,
    Path(token): Path<String>,
    request: Request<Body>,
) -> Result<Json<Value>, AppError> {
    let (_, Empty {}) = browser_body(&state, request).await?;
    let (ceremony, options) = state.appliance.passkey_registration_options(&token).await?;
    Ok(Json(json!({ "ceremony": ceremony, "options": options })))
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
) -> Result<Json<Value>, AppError> {
    let (_, finish): (_, Finish) = browser_body(&state, request).await?;
    let record = state
        .appliance
        .finish_passkey_registration(&token, &finish.ceremony, finish.credential, finish.label)
        .await?;
    Ok(Json(json!({ "id": record.id, "label": record.label })))
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
    let body = format!(
        "<h1>Log in</h1><section data-page=\"login\" data-next=\"{}\">\
         <p>Log in with a passkey you registered with <code>enroll passkey</code> over SSH.</p>\
         <div class=\"actions\"><button id=\"login\" class=\"primary\">Log in with a passkey</button></div>\
         </section>",
        esc(&local_path(query.next.as_deref()))
    );
    Html(page("Log in", &body)).into_response()
}

pub async fn login_options(
    State(state): State<WebState>,
    request: Request<Body>,
) -> Result<Json<Value>, AppError> {
    let (_, Empty {}) = browser_body(&state, request).await?;
    let (ceremony, options) = state.appliance.login_options().await?;
    Ok(Json(json!({ "ceremony": ceremony, "options": options })))
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
    state.sessions.start(&secret, &who.user_id);
    let mut response = Json(json!({ "user_id": who.user_id })).into_response();
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
    state.sessions.end(request.headers());
    let mut response = Json(json!({ "logged_out": true })).into_response();
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
    let requests = match state.appliance.requests_of(&user).await {
        Ok(list) => list,
        Err(e) => return page_error(e),
    };
    let mut items = String::new();
    for r in requests.iter().filter(|r| r.awaits(&user)) {
        let _ = write!(
            items,
            "<li><a href=\"/approve/{id}\">{summary}</a><br><small>{id} · expires \
             <time datetime=\"{expires}\">{expires}</time></small></li>",
            id = esc(r.id()),
            summary = esc(&r.summary()),
            expires = time::rfc3339(r.expires_at()),
        );
    }
    if items.is_empty() {
        items.push_str("<li class=\"closed\">Nothing waits for you.</li>");
    }
    let mut body = format!(
        "<h1>Waiting for you</h1><p>Logged in as <strong>{}</strong>.</p>\
         <ul class=\"requests\" id=\"requests\">{items}</ul>",
        esc(&user)
    );
    let closed = match state.appliance.authenticators_of(&user) {
        Ok(list) => list,
        Err(e) => return page_error(e),
    };
    for totp in closed
        .iter()
        .filter(|a| a.totp_state() == Some(TotpState::Closed))
    {
        let _ = write!(
            body,
            "<section data-page=\"reopen\" data-id=\"{id}\"><h2>TOTP closed</h2>\
             <p>Your TOTP secret <strong>{label}</strong> was closed after too many wrong codes \
             (the audit log says where they came from). If they were yours, reopen it.</p>\
             <div class=\"actions\"><button id=\"reopen-totp\" class=\"primary\">Reopen \
             with passkey</button></div></section>",
            id = esc(&totp.id),
            label = esc(&totp.label),
        );
    }
    Html(page("Waiting for you", &body)).into_response()
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
    let body = state
        .appliance
        .page(&id, viewer)
        .await
        .map(|view| match &view.request {
            HumanRequest::Signature(r) => ("Co-sign request", pending_body(&view, r, addressed)),
            HumanRequest::Approval(r) => ("Approval request", approval_body(&view, r, addressed)),
        });
    match body {
        Ok((title, mut body)) => {
            if viewer.is_none() {
                let next = percent(&format!("/approve/{id}"));
                let _ = write!(
                    body,
                    "<p><a href=\"/login?next={next}\">Log in</a> to see everything that waits \
                     for you.</p>"
                );
            }
            Html(page(title, &body)).into_response()
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

fn approval_body(view: &RequestPage, r: &ApprovalRecord, addressed: Option<&str>) -> String {
    let requester = &view.requested_by;
    let approvals = r
        .votes
        .iter()
        .filter(|v| v.verdict == Verdict::Approved)
        .count();
    let metadata = serde_json::to_string_pretty(&r.metadata).unwrap_or_default();
    let mut body = format!(
        "<h1>Approval request</h1>\
         <section data-page=\"decision\" data-id=\"{id}\">\
         <p><span class=\"status status-{status}\" id=\"status\">{status}</span></p>\
         <dl><dt>Action</dt><dd id=\"action\">{action}</dd>\
         <dt>Requested by</dt><dd>{requester}</dd>\
         <dt>Requested</dt><dd><time datetime=\"{created}\">{created}</time></dd>\
         <dt>Expires</dt><dd><time datetime=\"{expires}\">{expires}</time></dd>\
         <dt>Approvals</dt><dd>{approvals} of {threshold} needed</dd>\
         <dt>Approvers</dt><dd id=\"approvers\">{approvers}</dd>\
         <dt>Request</dt><dd><code>{id}</code></dd></dl>\
         <h2>Details</h2><pre id=\"metadata\">{metadata}</pre>",
        id = esc(&r.request_id),
        status = view.request.status_word(),
        action = esc(&r.action),
        requester = esc(requester),
        created = time::rfc3339(r.created_at),
        expires = time::rfc3339(r.expires_at),
        threshold = r.threshold,
        approvers = esc(&r.approvers.join(", ")),
        metadata = esc(&metadata),
    );
    let viewer = view.viewer.as_deref();
    if view.deciders.is_empty() {
        let why = match r.status {
            RequestStatus::Pending
                if r.votes.iter().any(|v| Some(v.approver.as_str()) == viewer) =>
            {
                "You have decided this request; it waits for the others."
            }
            RequestStatus::Pending if viewer.is_some() => {
                "This request waits for its approvers; you are logged in as someone else."
            }
            RequestStatus::Pending => "This request waits for its approvers.",
            RequestStatus::Approved => "This request was approved.",
            RequestStatus::Rejected => "This request was rejected.",
            RequestStatus::Expired => "This request expired before it was decided.",
        };
        let _ = write!(body, "<p class=\"closed\" id=\"closed\">{why}</p>");
    } else {
        body.push_str(
            "<div id=\"decide\"><label for=\"reason\">Reason (optional)</label>\
             <input id=\"reason\" maxlength=\"500\" size=\"40\">",
        );
        body.push_str(&approver_choice(&view.deciders, addressed));
        if r.totp_failures > 0 {
            let _ = write!(
                body,
                "<p class=\"closed\" id=\"totp-failures\">Wrong codes entered on this page: {} \
                 (after {REQUEST_TOTP_BUDGET} it takes only passkeys).</p>",
                r.totp_failures
            );
        }
        body.push_str(&decision_buttons(&r.methods, "Approve", "Reject"));
        body.push_str("</div>");
    }
    body.push_str("</section>");
    body
}

/// Who is deciding: the one approver who may, or a choice among several (the one the address
/// names first). Choosing says whose passkey or code to ask for; it proves nothing.
fn approver_choice(deciders: &[String], addressed: Option<&str>) -> String {
    match deciders {
        [one] => format!(
            "<p>Deciding as <strong id=\"approver-name\">{one}</strong>.</p>\
             <input type=\"hidden\" id=\"approver\" value=\"{one}\">",
            one = esc(one)
        ),
        several => {
            let mut html =
                String::from("<label for=\"approver\">You are</label><select id=\"approver\">");
            for d in several {
                let selected = if Some(d.as_str()) == addressed {
                    " selected"
                } else {
                    ""
                };
                let _ = write!(
                    html,
                    "<option value=\"{d}\"{selected}>{d}</option>",
                    d = esc(d)
                );
            }
            html.push_str("</select>");
            html
        }
    }
}

/// The approve and reject buttons for each method a request allows.
fn decision_buttons(methods: &[Method], approve: &str, reject: &str) -> String {
    let mut html = String::new();
    if methods.contains(&Method::Passkey) {
        let _ = write!(
            html,
            "<div class=\"actions\">\
             <button id=\"approve-passkey\" class=\"approve\" data-decision=\"approved\" \
             data-method=\"passkey\">{approve} with passkey</button>\
             <button id=\"reject-passkey\" class=\"reject\" data-decision=\"rejected\" \
             data-method=\"passkey\">{reject} with passkey</button></div>"
        );
    }
    if methods.contains(&Method::Totp) {
        let _ = write!(
            html,
            "<label for=\"totp-code\">Or a code from your authenticator app</label>\
             <input id=\"totp-code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
             maxlength=\"6\" size=\"8\">\
             <div class=\"actions\">\
             <button id=\"approve-totp\" class=\"approve\" data-decision=\"approved\" \
             data-method=\"totp\">{approve} with code</button>\
             <button id=\"reject-totp\" class=\"reject\" data-decision=\"rejected\" \
             data-method=\"totp\">{reject} with code</button></div>"
        );
    }
    html
}

/// A pretty JSON block.
fn json_block(id: &str, value: &Value) -> String {
    format!(
        "<pre id=\"{id}\">{}</pre>",
        esc(&serde_json::to_string_pretty(value).unwrap_or_default())
    )
}

fn pending_body(view: &RequestPage, r: &PendingRequest, addressed: Option<&str>) -> String {
    let terms = view.signing.clone().unwrap_or_default();
    let document = match r.namespace.as_str() {
        "git" => "git commit or tag".to_owned(),
        "file" => "file".to_owned(),
        other => other.to_owned(),
    };
    let key = match &terms.key {
        Some(key) => format!(
            "{} ({})",
            key.key_id,
            crate::appliance::public_key_fingerprint(key)
        ),
        None => r.key_id.clone(),
    };
    let status = view.request.status_word();
    let mut body = format!(
        "<h1>Co-sign request</h1>\
         <section data-page=\"decision\" data-id=\"{id}\">\
         <p><span class=\"status status-{status}\" id=\"status\">{status}</span></p>\
         <dl><dt>Document</dt><dd id=\"document\">{document}</dd>\
         <dt>SHA-512</dt><dd><code id=\"payload-hash\">{hash}</code></dd>\
         <dt>Requested by</dt><dd>{requester}</dd>\
         <dt>Key</dt><dd>{key}</dd>\
         <dt>Requested</dt><dd><time datetime=\"{created}\">{created}</time></dd>\
         <dt>Expires</dt><dd><time datetime=\"{expires}\">{expires}</time></dd>\
         <dt>Request</dt><dd><code>{id}</code></dd></dl>",
        id = esc(&r.pending_id),
        document = esc(&document),
        hash = esc(&r.payload_sha512),
        requester = esc(&r.requester),
        key = esc(&key),
        created = time::rfc3339(r.created_at),
        expires = time::rfc3339(r.expires_at),
    );
    for warning in &r.warnings {
        let _ = write!(body, "<p class=\"closed\">Warning: {}</p>", esc(warning));
    }
    body.push_str("<h2>Details</h2>");
    body.push_str(&json_block("metadata", &Value::Object(r.metadata.clone())));
    if !r.context.is_empty() {
        body.push_str("<h2>Where it was signed</h2>");
        body.push_str(&json_block("context", &Value::Object(r.context.clone())));
    }
    if let Some(agreed) = &terms.agreed {
        let offer = &agreed.offer;
        // A party's name is free text; who spoke for it is an identity.
        let party = |o: &crate::negotiation::OfferRecord| {
            let same = if o.speaker == r.requester {
                ", the requester of this signature"
            } else {
                ""
            };
            format!("{} (spoken for by {}{same})", esc(&o.from), esc(&o.speaker))
        };
        let standing = match &agreed.accepted_by {
            Some(accept) => format!("accepted by {} in round {}", party(accept), accept.round),
            None => "the latest offer, not accepted yet".to_owned(),
        };
        let _ = write!(
            body,
            "<h2>Agreed terms</h2><p id=\"terms-standing\">Negotiation <code>{}</code>: round {} \
             by {}, {standing}. Offer hash <code>{}</code>.</p>",
            esc(&agreed.negotiation_id),
            offer.round,
            party(offer),
            esc(&offer.hash),
        );
        body.push_str(&json_block("terms", &Value::Object(offer.metadata.clone())));
    }
    body.push_str("<h2>Authorized range</h2>");
    body.push_str(&json_block("authorized", &terms.authorized));
    if view.deciders.is_empty() {
        let why = match r.status {
            RequestStatus::Pending => "This request waits for its principal.",
            RequestStatus::Approved => "This request was approved and signed.",
            RequestStatus::Rejected => "This request was denied.",
            RequestStatus::Expired => "This request expired before it was decided.",
        };
        let _ = write!(body, "<p class=\"closed\" id=\"closed\">{why}</p>");
    } else {
        body.push_str(
            "<div id=\"decide\"><label for=\"reason\">Reason (optional, for a denial)</label>\
             <input id=\"reason\" maxlength=\"500\" size=\"40\">",
        );
        if r.require_signature {
            body.push_str(
                "<h2>Your signature</h2><p>Draw your signature; it is sealed into the evidence \
                 envelope with this document's hash.</p>\
                 <canvas id=\"signature-pad\" width=\"600\" height=\"200\" data-drawn=\"false\"></canvas>\
                 <div class=\"actions\"><button id=\"signature-clear\">Clear</button></div>",
            );
        }
        body.push_str(&approver_choice(&view.deciders, addressed));
        let approve = if r.require_signature {
            "Sign &amp; approve"
        } else {
            "Approve"
        };
        body.push_str(&decision_buttons(
            &[Method::Passkey, Method::Totp],
            approve,
            "Deny",
        ));
        body.push_str("</div>");
    }
    body.push_str("</section>");
    body
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
) -> Result<Json<Value>, AppError> {
    let (headers, body): (_, OptionsBody) = browser_body(&state, request).await?;
    let session = state.sessions.user(&headers);
    let (ceremony, options) = state
        .appliance
        .decision_passkey_options(
            &id,
            session.as_deref(),
            body.approver.as_deref(),
            body.decision,
        )
        .await?;
    Ok(Json(json!({ "ceremony": ceremony, "options": options })))
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
) -> Result<Json<Value>, AppError> {
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
    };
    let proof = Proof::Page {
        credential,
        viewer: session,
        client,
    };
    let decided = state.appliance.decide(&id, ruling, proof).await?;
    let mut reply = json!({ "id": decided.id(), "status": decided.status_word() });
    match &decided {
        HumanRequest::Signature(r) => reply["signed"] = r.signature.is_some().into(),
        HumanRequest::Approval(r) => reply["votes"] = r.votes.len().into(),
    }
    Ok(Json(reply))
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
) -> Result<Json<Value>, AppError> {
    let (headers, Empty {}) = browser_body(&state, request).await?;
    let user = logged_in(&state, &headers)?;
    let (ceremony, options) = state.appliance.reopen_totp_options(&user, &id).await?;
    Ok(Json(json!({ "ceremony": ceremony, "options": options })))
}

pub async fn reopen_totp(
    State(state): State<WebState>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Result<Json<Value>, AppError> {
    let (headers, login): (_, Login) = browser_body(&state, request).await?;
    let user = logged_in(&state, &headers)?;
    let record = state
        .appliance
        .reopen_totp_with_passkey(&user, &id, &login.ceremony, login.credential)
        .await?;
    Ok(Json(
        json!({ "id": record.id, "state": record.totp_state() }),
    ))
}

/// The client's address, as the guard found it (the socket's, or a trusted proxy's).
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
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

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
