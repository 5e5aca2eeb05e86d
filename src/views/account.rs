//! How a user's own things are shown: who they are, API keys, authenticators, consents,
//! webhook endpoints and notification targets.

use serde::Serialize;

use crate::store::{
    ApiKeyRecord, AuthenticatorKind, AuthenticatorRecord, ConsentRecord, NotifyTarget,
    TOTP_FAILURE_BUDGET, TOTP_LIFETIME_FAILURES, TotpState, WebhookEndpoint,
};
use crate::time;

/// `whoami`.
#[derive(Debug, Clone, Serialize)]
pub struct WhoamiView {
    pub user_id: String,
    /// The SSH key this session connected with.
    pub fingerprint: String,
    /// Whether that key is an agent's (it may not decide requests or manage the identity).
    pub agent: bool,
    pub registered_at: String,
    pub keys_owned: usize,
    pub keys_granted: usize,
    /// Every SSH key of the identity, in the order they joined.
    pub ssh_keys: Vec<LinkedKey>,
}

/// One SSH key of an identity.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedKey {
    pub fingerprint: String,
    pub public_key: String,
    /// `person` or `agent`.
    pub kind: &'static str,
    pub label: Option<String>,
    pub linked_at: String,
    /// Whether this session connected with it.
    pub current: bool,
}

impl LinkedKey {
    pub fn new(key: &crate::store::SshKeyRecord, current: &str) -> Self {
        LinkedKey {
            fingerprint: key.fingerprint.clone(),
            public_key: key.public_key.clone(),
            kind: if key.agent { "agent" } else { "person" },
            label: key.label.clone(),
            linked_at: crate::time::rfc3339(key.registered_at),
            current: key.fingerprint == current,
        }
    }
}

/// `link start`: the code the new key's first connection gives.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStarted {
    pub code: String,
    /// What to run with the new key (`ssh -i NEW_KEY <appliance> ...`).
    pub command: String,
    pub agent: bool,
    pub expires_at: String,
}

/// An API key, without its secret.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyView {
    pub id: String,
    pub label: String,
    pub scopes: Vec<&'static str>,
    /// The first characters of the secret, to recognise it by.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(key: &ApiKeyRecord) -> Self {
        ApiKeyView {
            id: key.id.clone(),
            label: key.label.clone(),
            scopes: key.scopes.iter().map(|s| s.as_str()).collect(),
            prefix: key.prefix.clone(),
            created_at: time::rfc3339(key.created_at),
            revoked_at: key.revoked_at.map(time::rfc3339),
        }
    }
}

/// `api-key create`: the key, with its secret shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    pub api_key: String,
    pub note: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyView>,
}

/// A passkey or TOTP secret; for TOTP, its state and wrong-code counts.
#[derive(Debug, Clone, Serialize)]
pub struct AuthenticatorView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub label: String,
    pub confirmed: bool,
    pub created_at: String,
    pub last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<TotpState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrong_codes: Option<WrongCodes>,
    /// For TOTP: when wrong codes closed it (null while open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Option<String>>,
}

/// A TOTP secret's wrong codes, and where they close and retire it.
#[derive(Debug, Clone, Serialize)]
pub struct WrongCodes {
    pub since_reopened: u32,
    pub closes_at: u32,
    pub total: u32,
    pub retires_at: u32,
}

impl From<&AuthenticatorRecord> for AuthenticatorView {
    fn from(record: &AuthenticatorRecord) -> Self {
        let mut view = AuthenticatorView {
            id: record.id.clone(),
            kind: record.kind_name(),
            label: record.label.clone(),
            confirmed: record.totp_state() != Some(TotpState::Unconfirmed),
            created_at: time::rfc3339(record.created_at),
            last_used_at: record.last_used_at.map(time::rfc3339),
            state: None,
            wrong_codes: None,
            closed_at: None,
        };
        if let AuthenticatorKind::Totp {
            failures,
            failures_total,
            closed_at,
            ..
        } = &record.kind
        {
            view.state = record.totp_state();
            view.wrong_codes = Some(WrongCodes {
                since_reopened: *failures,
                closes_at: TOTP_FAILURE_BUDGET,
                total: *failures_total,
                retires_at: TOTP_LIFETIME_FAILURES,
            });
            view.closed_at = Some(closed_at.map(time::rfc3339));
        }
        view
    }
}

/// `enroll totp`: the new secret, shown this once as an `otpauth://` URI.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolledTotp {
    #[serde(flatten)]
    pub authenticator: AuthenticatorView,
    pub otpauth_uri: String,
    pub note: &'static str,
}

/// `enroll passkey`: the one-time link that registers a passkey.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollmentView {
    pub enrollment_url: String,
    pub expires_at: String,
}

/// The page an enrollment link opens: whom it registers a passkey for, and until when.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollmentPage {
    pub user_id: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuthenticatorList {
    pub authenticators: Vec<AuthenticatorView>,
}

/// Someone a user accepts requests and grants from.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    pub from: String,
    /// The SSH key fingerprint they named, if they named one.
    pub named_as: String,
    pub since: String,
}

impl From<&ConsentRecord> for ConsentView {
    fn from(consent: &ConsentRecord) -> Self {
        ConsentView {
            from: consent.from.clone(),
            named_as: consent.named_as.clone(),
            since: time::rfc3339(consent.created_at),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsentList {
    pub accepted: Vec<ConsentView>,
}

/// `approvers revoke`.
#[derive(Debug, Clone, Serialize)]
pub struct RevokedConsent {
    pub revoked: String,
}

/// How receivers check what they are sent.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSigning {
    pub scheme: &'static str,
    pub public_key: Option<String>,
    pub key_id: Option<String>,
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub created_at: String,
}

impl From<&WebhookEndpoint> for EndpointView {
    fn from(endpoint: &WebhookEndpoint) -> Self {
        EndpointView {
            id: endpoint.id.clone(),
            url: endpoint.url.clone(),
            created_at: time::rfc3339(endpoint.created_at),
        }
    }
}

/// `webhook add|remove`: the endpoint, and how it checks what it is sent.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointReply {
    #[serde(flatten)]
    pub endpoint: EndpointView,
    pub signing: WebhookSigning,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointList {
    pub webhooks: Vec<EndpointView>,
    pub signing: WebhookSigning,
}

/// Where a user hears of requests waiting for them, if anywhere.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyTargetView {
    pub url: Option<String>,
    pub updated_at: Option<String>,
}

impl From<Option<&NotifyTarget>> for NotifyTargetView {
    fn from(target: Option<&NotifyTarget>) -> Self {
        NotifyTargetView {
            url: target.map(|t| t.url.clone()),
            updated_at: target.map(|t| time::rfc3339(t.updated_at)),
        }
    }
}

/// `notify set|clear|show`.
#[derive(Debug, Clone, Serialize)]
pub struct NotifyView {
    #[serde(flatten)]
    pub target: NotifyTargetView,
    pub signing: WebhookSigning,
}

/// `help`: the commands and their flags.
#[derive(Debug, Clone, Serialize)]
pub struct HelpView {
    pub help: String,
}
