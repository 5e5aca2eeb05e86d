//! The pages' HTML, as maud templates: every value is escaped by the template engine, so no
//! page can forget to. Element ids, classes and `data-` attributes are what the script
//! (`assets/sshsign.js`) and the browser tests find things by.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::appliance::{AgreedTerms, REQUEST_TOTP_BUDGET, RequestPage};
use crate::approval::decision::{Method, Verdict};
use crate::negotiation::OfferRecord;
use crate::request::RequestStatus;
use crate::time;
use crate::views::{
    AuthenticatorView, PagedApproval, PublicKeyView, RequestView, SignatureRequestView,
};

/// A whole page around `body`.
pub fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · sshsign" }
                link rel="stylesheet" href="/static/sshsign.css";
                script src="/static/sshsign.js" defer {}
            }
            body {
                main {
                    header class="brand" { "sshsign" }
                    (body)
                    p id="message" role="status" {}
                }
            }
        }
    }
    .into_string()
}

/// A page that only says something: a link that does not work, an error.
pub fn notice(title: &str, text: &str) -> String {
    page(title, html! { h1 { (title) } p { (text) } })
}

/// A time (RFC 3339), readable and machine-readable.
fn when(text: &str) -> Markup {
    html! { time datetime=(text) { (text) } }
}

/// A time in Unix seconds, as [`when`] shows it.
fn when_at(at: i64) -> Markup {
    when(&time::rfc3339(at))
}

/// A pretty JSON block.
fn json_block(id: &str, value: &Value) -> Markup {
    html! { pre id=(id) { (serde_json::to_string_pretty(value).unwrap_or_default()) } }
}

pub fn enroll(token: &str, user: &str, expires_at: &str) -> String {
    let body = html! {
        h1 { "Register a passkey" }
        section data-page="enroll" data-token=(token) {
            p {
                "This registers a passkey for " strong { (user) } " on this appliance. You will \
                 use it to approve requests. The link works once, until " (when(expires_at)) "."
            }
            label for="label" { "Name for this passkey" }
            input id="label" maxlength="64" value="passkey";
            div class="actions" { button id="register" class="primary" { "Register passkey" } }
        }
    };
    page("Register a passkey", body)
}

pub fn login(next: &str) -> String {
    let body = html! {
        h1 { "Log in" }
        section data-page="login" data-next=(next) {
            p {
                "Log in with a passkey you registered with " code { "enroll passkey" }
                " over SSH."
            }
            div class="actions" {
                button id="login" class="primary" { "Log in with a passkey" }
            }
        }
    };
    page("Log in", body)
}

/// One request in the list of what waits for someone.
pub struct Waiting {
    pub id: String,
    pub summary: String,
    pub expires_at: i64,
}

/// What waits for `user`, and their TOTP secrets that wrong codes closed.
pub fn requests(user: &str, waiting: &[Waiting], closed: &[&AuthenticatorView]) -> String {
    let body = html! {
        h1 { "Waiting for you" }
        p { "Logged in as " strong { (user) } "." }
        ul class="requests" id="requests" {
            @for r in waiting {
                li {
                    a href={ "/approve/" (r.id) } { (r.summary) }
                    br;
                    small { (r.id) " · expires " (when_at(r.expires_at)) }
                }
            }
            @if waiting.is_empty() {
                li class="closed" { "Nothing waits for you." }
            }
        }
        @for totp in closed {
            section data-page="reopen" data-id=(totp.id) {
                h2 { "TOTP closed" }
                p {
                    "Your TOTP secret " strong { (totp.label) } " was closed after too many \
                     wrong codes (the audit log says where they came from). If they were yours, \
                     reopen it."
                }
                div class="actions" {
                    button id="reopen-totp" class="primary" { "Reopen with passkey" }
                }
            }
        }
    };
    page("Waiting for you", body)
}

/// A request's page: its kind's body, and a way to log in for a visitor.
pub fn request(view: &RequestPage, addressed: Option<&str>, login_next: Option<&str>) -> String {
    let (title, body) = match &view.request {
        RequestView::Signature(r) => ("Co-sign request", signature(view, r, addressed)),
        RequestView::Approval(r) => ("Approval request", approval(view, r, addressed)),
    };
    let body = html! {
        (body)
        @if let Some(next) = login_next {
            p {
                a href={ "/login?next=" (next) } { "Log in" }
                " to see everything that waits for you."
            }
        }
    };
    page(title, body)
}

fn approval(view: &RequestPage, paged: &PagedApproval, addressed: Option<&str>) -> Markup {
    let r = &paged.request;
    let approvals = r
        .votes
        .iter()
        .filter(|v| v.decision == Verdict::Approved)
        .count();
    let status = view.request.status_word();
    let viewer = view.viewer.as_deref();
    let closed = match view.status {
        RequestStatus::Pending if r.votes.iter().any(|v| Some(v.approver.as_str()) == viewer) => {
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
    html! {
        h1 { "Approval request" }
        section data-page="decision" data-id=(r.id) {
            p { span class={ "status status-" (status) } id="status" { (status) } }
            dl {
                dt { "Action" } dd id="action" { (r.action) }
                dt { "Requested by" } dd { (view.requested_by) }
                dt { "Requested" } dd { (when(&r.created_at)) }
                dt { "Expires" } dd { (when(&r.expires_at)) }
                dt { "Approvals" } dd { (approvals) " of " (r.threshold) " needed" }
                dt { "Approvers" } dd id="approvers" { (r.approvers.join(", ")) }
                dt { "Request" } dd { code { (r.id) } }
            }
            h2 { "Details" }
            pre id="metadata" { (serde_json::to_string_pretty(&r.metadata).unwrap_or_default()) }
            @if view.deciders.is_empty() {
                p class="closed" id="closed" { (closed) }
            } @else {
                div id="decide" {
                    label for="reason" { "Reason (optional)" }
                    input id="reason" maxlength="500" size="40";
                    (approver_choice(&view.deciders, addressed))
                    @if r.totp_failures > 0 {
                        p class="closed" id="totp-failures" {
                            "Wrong codes entered on this page: " (r.totp_failures)
                            " (after " (REQUEST_TOTP_BUDGET) " it takes only passkeys)."
                        }
                    }
                    (decision_buttons(&r.methods, "Approve", "Reject"))
                }
            }
        }
    }
}

fn signature(view: &RequestPage, r: &SignatureRequestView, addressed: Option<&str>) -> Markup {
    let terms = view.signing.clone().unwrap_or_default();
    let document = match r.namespace.as_str() {
        "git" => "git commit or tag",
        "file" => "file",
        other => other,
    };
    let key = match &terms.key {
        Some(key) => key_line(key),
        None => r.key_id.clone(),
    };
    let status = view.request.status_word();
    let closed = match view.status {
        RequestStatus::Pending => "This request waits for its principal.",
        RequestStatus::Approved => "This request was approved and signed.",
        RequestStatus::Rejected => "This request was denied.",
        RequestStatus::Expired => "This request expired before it was decided.",
    };
    let approve = if r.require_signature {
        "Sign & approve"
    } else {
        "Approve"
    };
    html! {
        h1 { "Co-sign request" }
        section data-page="decision" data-id=(r.pending_id) {
            p { span class={ "status status-" (status) } id="status" { (status) } }
            dl {
                dt { "Document" } dd id="document" { (document) }
                dt { "SHA-512" } dd { code id="payload-hash" { (r.payload_sha512) } }
                dt { "Requested by" } dd { (r.requester) }
                dt { "Key" } dd { (key) }
                dt { "Requested" } dd { (when(&r.created_at)) }
                dt { "Expires" } dd { (when(&r.expires_at)) }
                dt { "Request" } dd { code { (r.pending_id) } }
            }
            @for warning in &r.warnings {
                p class="closed" { "Warning: " (warning) }
            }
            h2 { "Details" }
            (json_block("metadata", &Value::Object(r.metadata.clone())))
            @if !r.context.is_empty() {
                h2 { "Where it was signed" }
                (json_block("context", &Value::Object(r.context.clone())))
            }
            @if let Some(agreed) = &terms.agreed {
                (agreed_terms(agreed, &r.requester))
            }
            h2 { "Authorized range" }
            (json_block("authorized", &authorized(terms.authorized.as_ref())))
            @if view.deciders.is_empty() {
                p class="closed" id="closed" { (closed) }
            } @else {
                div id="decide" {
                    label for="reason" { "Reason (optional, for a denial)" }
                    input id="reason" maxlength="500" size="40";
                    @if r.require_signature {
                        h2 { "Your signature" }
                        p {
                            "Draw your signature; it is sealed into the evidence envelope with \
                             this document's hash."
                        }
                        canvas id="signature-pad" width="600" height="200" data-drawn="false" {}
                        div class="actions" { button id="signature-clear" { "Clear" } }
                    }
                    (approver_choice(&view.deciders, addressed))
                    @if crate::approval::disclosure::is_legal(&r.namespace) {
                        p id="disclosure" class="disclosure" {
                            (crate::approval::disclosure::TEXT)
                        }
                    }
                    (decision_buttons(&[Method::Passkey, Method::Totp], approve, "Deny"))
                }
            }
        }
    }
}

/// An authorization's terms, as `authorizations` shows them over SSH.
fn authorized(authorization: Option<&crate::policy::Authorization>) -> Value {
    authorization.map_or(Value::Null, |a| {
        crate::views::to_value(&crate::views::AuthorizationView::from(a))
    })
}

/// A signing key as its page names it: its id and fingerprint.
fn key_line(key: &PublicKeyView) -> String {
    format!("{} ({})", key.key_id, key.fingerprint)
}

/// The negotiation a co-signed request names: the terms that stand, and who spoke for them.
fn agreed_terms(agreed: &AgreedTerms, requester: &str) -> Markup {
    // A party's name is free text; who spoke for it is an identity.
    let party = |o: &OfferRecord| {
        let same = if o.speaker == requester {
            ", the requester of this signature"
        } else {
            ""
        };
        format!("{} (spoken for by {}{same})", o.from, o.speaker)
    };
    let offer = &agreed.offer;
    let standing = match &agreed.accepted_by {
        Some(accept) => format!("accepted by {} in round {}", party(accept), accept.round),
        None => "the latest offer, not accepted yet".to_owned(),
    };
    html! {
        h2 { "Agreed terms" }
        p id="terms-standing" {
            "Negotiation " code { (agreed.negotiation_id) } ": round " (offer.round) " by "
            (party(offer)) ", " (standing) ". Offer hash " code { (offer.hash) } "."
        }
        (json_block("terms", &Value::Object(offer.metadata.clone())))
    }
}

/// Who is deciding: the one approver who may, or a choice among several (the one the address
/// names first). Choosing says whose passkey or code to ask for; it proves nothing.
fn approver_choice(deciders: &[String], addressed: Option<&str>) -> Markup {
    html! {
        @if let [one] = deciders {
            p { "Deciding as " strong id="approver-name" { (one) } "." }
            input type="hidden" id="approver" value=(one);
        } @else {
            label for="approver" { "You are" }
            select id="approver" {
                @for d in deciders {
                    option value=(d) selected[Some(d.as_str()) == addressed] { (d) }
                }
            }
        }
    }
}

/// The approve and reject buttons for each method a request allows.
fn decision_buttons(methods: &[Method], approve: &str, reject: &str) -> Markup {
    html! {
        @if methods.contains(&Method::Passkey) {
            div class="actions" {
                button id="approve-passkey" class="approve" data-decision="approved"
                    data-method="passkey" { (approve) " with passkey" }
                button id="reject-passkey" class="reject" data-decision="rejected"
                    data-method="passkey" { (reject) " with passkey" }
            }
        }
        @if methods.contains(&Method::Totp) {
            label for="totp-code" { "Or a code from your authenticator app" }
            input id="totp-code" inputmode="numeric" autocomplete="one-time-code" maxlength="6"
                size="8";
            div class="actions" {
                button id="approve-totp" class="approve" data-decision="approved"
                    data-method="totp" { (approve) " with code" }
                button id="reject-totp" class="reject" data-decision="rejected"
                    data-method="totp" { (reject) " with code" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_everywhere() {
        let hostile = "<script>alert(\"x\")</script>&'";
        let text = notice(hostile, hostile);
        assert!(!text.contains("<script>alert"), "{text}");
        assert!(text.contains("&lt;script&gt;"), "{text}");
        let login = login("\"><img src=x onerror=alert(1)>");
        assert!(!login.contains("<img"), "{login}");
        let choice = approver_choice(&["a\"b".into(), "<c>".into()], Some("<c>")).into_string();
        assert!(choice.contains("value=\"a&quot;b\""), "{choice}");
        assert!(
            choice.contains("<option value=\"&lt;c&gt;\" selected>"),
            "{choice}"
        );
    }
}
