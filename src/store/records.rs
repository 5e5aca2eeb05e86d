//! The records the store keeps. Each is a versioned serde record, written as
//! `{"v": VERSION, "r": {...}}` or, for sealed kinds, `{"v": VERSION, "s": "<base64>"}` (see
//! [`crate::seal`]); reading a version this build does not know is an error, not a guess. None of
//! them holds private key material: a signing key is its token object id and its public half.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use crate::request::RequestStatus;

pub use crate::policy::Authorization as AuthorizationRecord;

/// A record type the store can hold.
pub trait Record: Serialize + DeserializeOwned {
    /// Names the record in errors and in the seal's associated data.
    const KIND: &'static str;
    /// The version this build writes and reads.
    const VERSION: u32;
    /// Whether the record is stored sealed.
    const SEALED: bool = false;
}

/// A person or agent, known by the SSH keys they connect with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    pub user_id: String,
    pub created_at: i64,
    /// SHA-256 fingerprints of the SSH keys that identify this user.
    pub ssh_keys: Vec<String>,
}

impl Record for UserRecord {
    const KIND: &'static str = "user";
    const VERSION: u32 = 1;
}

/// An SSH public key that authenticates a user; registered the first time it connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshKeyRecord {
    pub fingerprint: String,
    pub user_id: String,
    /// OpenSSH one-line form.
    pub public_key: String,
    pub registered_at: i64,
    /// A key an agent holds (marked when it was linked): it may not decide requests or manage
    /// the identity. The key that made the identity is a person's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub agent: bool,
    /// What its holder calls it (`laptop`, `ci agent`), given when it was linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl Record for SshKeyRecord {
    const KIND: &'static str = "ssh key";
    const VERSION: u32 = 1;
}

/// An Ed25519 signing key whose private half is a token object. What it may sign lives in its
/// authorizations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRecord {
    pub key_id: String,
    /// `user_id` of the owner, who grants its authorizations.
    pub owner: String,
    /// The token object's `CKA_ID`, hex.
    pub token_object_id: String,
    /// The public key, hex.
    pub public_key: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl Record for SigningKeyRecord {
    const KIND: &'static str = "signing key";
    const VERSION: u32 = 2;
}

impl SigningKeyRecord {
    /// The 32-byte public key.
    pub fn public_key_bytes(&self) -> Option<[u8; 32]> {
        crate::hex::decode(&self.public_key)?.try_into().ok()
    }

    /// The OpenSSH line for the key: `ssh-ed25519 AAAA... ak_...`.
    pub fn openssh_line(&self) -> String {
        self.public_key_bytes()
            .map(|bytes| crate::pubkey::openssh(&bytes, &self.key_id))
            .unwrap_or_default()
    }

    /// The key's SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        self.public_key_bytes()
            .map(|bytes| crate::pubkey::fingerprint(&bytes))
            .unwrap_or_default()
    }

    pub fn facts(&self) -> crate::policy::KeyFacts<'_> {
        crate::policy::KeyFacts {
            key_id: &self.key_id,
            owner: &self.owner,
            revoked: self.revoked_at.is_some(),
        }
    }
}

/// A signing key as version 1 stored it, with its terms inside; read only to migrate it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigningKeyRecordV1 {
    pub key_id: String,
    pub owner: String,
    pub token_object_id: String,
    pub public_key: String,
    pub scopes: Vec<String>,
    pub tier: crate::policy::Tier,
    pub require_signature: bool,
    pub constraints: serde_json::Map<String, serde_json::Value>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Record for AuthorizationRecord {
    const KIND: &'static str = "authorization";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// A request to sign that waits for its principal. It holds the SHA-512 digest SSHSIG signs,
/// never the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingRequest {
    pub pending_id: String,
    pub key_id: String,
    pub authorization_id: String,
    pub requester: String,
    pub principal: String,
    pub namespace: String,
    /// SHA-512 of the payload, hex.
    pub payload_sha512: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub context: serde_json::Map<String, serde_json::Value>,
    pub require_signature: bool,
    pub warnings: Vec<String>,
    /// Made with an agent's key of the requester's identity: its principal may then be that
    /// same identity, deciding on the request's page (with a passkey or TOTP code), never over
    /// SSH.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub requested_by_agent: bool,
    /// Written by versions whose approval link carried a token; read and dropped.
    #[serde(
        default,
        rename = "approval_token_sha256",
        skip_serializing,
        deserialize_with = "retired"
    )]
    pub retired_link: (),
    /// Wrong TOTP codes entered on this request's page ([`REQUEST_TOTP_BUDGET`] close it).
    #[serde(default)]
    pub totp_failures: u32,
    pub created_at: i64,
    pub expires_at: i64,
    /// `denied` on disk for a rejection, as the sshsign seed says.
    #[serde(with = "crate::request::signature_words")]
    pub status: RequestStatus,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<i64>,
    pub reason: Option<String>,
    /// The armored SSHSIG, once made.
    pub signature: Option<String>,
    /// For an approval with a drawn signature: the evidence envelope's exact bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// The token's seal over the envelope's SHA-256, base64, once made, and the key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_seal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_key_id: Option<String>,
}

impl Record for PendingRequest {
    const KIND: &'static str = "pending request";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

impl Record for crate::negotiation::NegotiationRecord {
    const KIND: &'static str = "negotiation";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

impl Record for crate::negotiation::OfferRecord {
    const KIND: &'static str = "offer";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// Where a signing key stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
}

impl SigningKeyRecord {
    pub fn status(&self) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else {
            KeyStatus::Active
        }
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApiScope {
    #[serde(rename = "approval:create")]
    ApprovalCreate,
    #[serde(rename = "approval:read")]
    ApprovalRead,
}

impl ApiScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ApiScope::ApprovalCreate => "approval:create",
            ApiScope::ApprovalRead => "approval:read",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approval:create" => Some(ApiScope::ApprovalCreate),
            "approval:read" => Some(ApiScope::ApprovalRead),
            _ => None,
        }
    }
}

/// An API key for the REST API. The key itself is shown once; only its SHA-256 is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    pub id: String,
    pub owner: String,
    pub label: String,
    pub scopes: Vec<ApiScope>,
    /// The first characters of the key, to tell keys apart in listings.
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub key_sha256: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Record for ApiKeyRecord {
    const KIND: &'static str = "api key";
    const VERSION: u32 = 1;
}

/// One approver's say on a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    pub approver: String,
    pub verdict: crate::approval::decision::Verdict,
    pub method: crate::approval::decision::Method,
    pub at: i64,
    /// Why, for a rejection (at most 500 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A request for a human decision, made through the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRecord {
    pub request_id: String,
    /// The credential that made it (an API key's id, or over SSH the key's `SHA256:`
    /// fingerprint), and the user it belongs to.
    pub api_key: String,
    pub owner: String,
    pub action: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub callback_url: Option<String>,
    /// Who may decide, and how many approvals it takes.
    pub approvers: Vec<String>,
    pub threshold: u32,
    pub methods: Vec<crate::approval::decision::Method>,
    /// Written by versions whose links carried a token that stood for an approver; read and
    /// dropped.
    #[serde(
        default,
        rename = "links",
        skip_serializing,
        deserialize_with = "retired"
    )]
    pub retired_links: (),
    /// Wrong TOTP codes entered on this request's page ([`REQUEST_TOTP_BUDGET`] close it).
    #[serde(default)]
    pub totp_failures: u32,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: RequestStatus,
    pub votes: Vec<Vote>,
    /// The decision's canonical payload, fixed when the request resolves, base64.
    pub decision_payload: Option<String>,
    /// The token's signature over it, base64, once made.
    pub decision_signature: Option<String>,
    pub decision_key_id: Option<String>,
    pub decided_at: Option<i64>,
}

impl ApprovalRecord {
    /// Whether the request is open and waits for `user`'s vote.
    pub fn awaits(&self, user: &str) -> bool {
        self.status == RequestStatus::Pending
            && self.approvers.iter().any(|a| a == user)
            && !self.votes.iter().any(|v| v.approver == user)
    }
}

impl Record for ApprovalRecord {
    const KIND: &'static str = "approval request";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// What an enrollment link registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollmentKind {
    Passkey,
    /// Another SSH key for the identity (`link start`): the code is the token.
    SshKey,
}

/// What a linked SSH key will be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTerms {
    pub agent: bool,
    pub label: Option<String>,
}

/// A one-time link that binds a new authenticator to a user. Kept under the SHA-256 of its
/// token; the token itself is only in the link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRecord {
    pub token_sha256: String,
    pub user_id: String,
    pub kind: EnrollmentKind,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// For an SSH key: what it will be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<LinkTerms>,
}

impl Record for EnrollmentRecord {
    const KIND: &'static str = "enrollment";
    const VERSION: u32 = 1;
}

/// How an approver proves themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthenticatorKind {
    /// A WebAuthn credential (webauthn-rs `Passkey`: credential id, public key, counter).
    Passkey {
        /// The credential id, base64url.
        credential_id: String,
        passkey: serde_json::Value,
    },
    /// An RFC 6238 secret (SHA-1, 6 digits, 30 s), usable once confirmed.
    Totp {
        secret_hex: String,
        confirmed: bool,
        /// The last time step a code was accepted for; it and earlier ones are refused.
        last_step: u64,
        /// Wrong codes since it was confirmed or last reopened; at [`TOTP_FAILURE_BUDGET`] it
        /// closes.
        #[serde(default)]
        failures: u32,
        /// Wrong codes over its whole life; at [`TOTP_LIFETIME_FAILURES`] it is retired.
        #[serde(default)]
        failures_total: u32,
        /// When too many wrong codes closed it; only its owner reopens it.
        #[serde(default)]
        closed_at: Option<i64>,
    },
}

/// Wrong TOTP codes after which a secret closes until its owner reopens it (over SSH, or with
/// a passkey).
pub const TOTP_FAILURE_BUDGET: u32 = 5;
/// Wrong TOTP codes after which a secret is retired for good: its owner enrolls a new one. A
/// guess is right with probability at most 3 in 10^6 (the code of the step before, now or
/// after), so a secret's whole life gives a guesser less than 30 × 3 / 10^6 = 1 in 11,000.
pub const TOTP_LIFETIME_FAILURES: u32 = 30;
/// Wrong TOTP codes after which a request's page takes no more codes (passkeys still work).
pub const REQUEST_TOTP_BUDGET: u32 = 3;

/// Where a TOTP secret stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TotpState {
    /// Enrolled, waiting for its first code.
    Unconfirmed,
    Active,
    /// Closed by wrong codes; its owner may reopen it.
    Closed,
    /// Past its lifetime budget of wrong codes; its owner enrolls a new one.
    Retired,
}

/// Reads and drops a field an earlier version wrote.
fn retired<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| ())
}

/// An authenticator bound to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticatorRecord {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub kind: AuthenticatorKind,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl AuthenticatorRecord {
    /// Where a TOTP secret stands; `None` for a passkey.
    pub fn totp_state(&self) -> Option<TotpState> {
        match &self.kind {
            AuthenticatorKind::Passkey { .. } => None,
            AuthenticatorKind::Totp {
                confirmed: false, ..
            } => Some(TotpState::Unconfirmed),
            AuthenticatorKind::Totp { failures_total, .. }
                if *failures_total >= TOTP_LIFETIME_FAILURES =>
            {
                Some(TotpState::Retired)
            }
            AuthenticatorKind::Totp {
                closed_at: Some(_), ..
            } => Some(TotpState::Closed),
            AuthenticatorKind::Totp { .. } => Some(TotpState::Active),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            AuthenticatorKind::Passkey { .. } => "passkey",
            AuthenticatorKind::Totp { .. } => "totp",
        }
    }
}

impl Record for AuthenticatorRecord {
    const KIND: &'static str = "authenticator";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// A URL that receives every decision on the approval requests a user's API keys make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    pub id: String,
    pub user_id: String,
    pub url: String,
    pub created_at: i64,
}

impl Record for WebhookEndpoint {
    const KIND: &'static str = "webhook endpoint";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// Where an approver hears of requests waiting for them (a Slack incoming webhook, an ntfy
/// topic, ...). Such URLs are secrets; the record is sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    pub user_id: String,
    pub url: String,
    pub updated_at: i64,
}

impl Record for NotifyTarget {
    const KIND: &'static str = "notification target";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    /// A decision (or expiry) on an approval request, to its callback and its owner's endpoints.
    Decision,
    /// A new request, to an approver's notification URL.
    Notification,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// 410 Gone: the receiver asked for no more.
    Gone,
    /// Every attempt failed, or the destination is refused.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Gone => "gone",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One webhook message and its attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The `webhook-id` (`msg_...`), the same on every attempt.
    pub id: String,
    pub kind: DeliveryKind,
    pub url: String,
    /// The exact body sent.
    pub body: String,
    /// The request it is about.
    pub request_id: String,
    /// Who may read its audit entries.
    pub readers: Vec<String>,
    pub created_at: i64,
    pub attempts: u32,
    /// When the next attempt is due (unix seconds), while pending.
    pub next_attempt_at: i64,
    pub state: DeliveryState,
    /// The last attempt's outcome: an HTTP status or why there was none.
    pub last_result: Option<String>,
    pub finished_at: Option<i64>,
}

impl Record for Delivery {
    const KIND: &'static str = "webhook delivery";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// A user's consent to be asked by another: to approve their requests, or to be granted their
/// authorizations. Nobody else can put anything in a user's lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRecord {
    /// Who consents (the approver or grantee).
    pub user_id: String,
    /// Whom they accept requests and grants from.
    pub from: String,
    /// The SSH key fingerprint they named, if they named one.
    pub named_as: String,
    pub created_at: i64,
}

impl Record for ConsentRecord {
    const KIND: &'static str = "consent";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}

/// A login session of the approval pages, kept under the SHA-256 of its cookie (hex); the
/// cookie itself is only in the browser. Every appliance sharing the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSession {
    pub cookie_sha256: String,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl Record for LoginSession {
    const KIND: &'static str = "login session";
    const VERSION: u32 = 1;
}

/// A passkey ceremony under way (a registration, an authentication or a login): what it is
/// bound to and webauthn-rs's state for it, sealed. Kept in the store so that a person may
/// start on one appliance and finish on another; taken once, whatever the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyRecord {
    pub id: String,
    /// Where it was started from (an IPv4 address or an IPv6 /64), for the limits per source.
    pub source: String,
    pub expires_at: i64,
    pub ceremony: serde_json::Value,
}

impl Record for CeremonyRecord {
    const KIND: &'static str = "passkey ceremony";
    const VERSION: u32 = 1;
    const SEALED: bool = true;
}
