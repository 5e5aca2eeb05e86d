//! The appliance's errors, each with a stable code users and agents can match on. Internal
//! detail (store and token failures) goes to the log; the user sees a short, safe message.

use crate::policy::Rule;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown key id {0}")]
    UnknownKey(String),
    /// `sign` without a key: none of the caller's active keys covers the namespace.
    #[error(
        "no active signing key of yours covers namespace {0}: run keys to list your keys, or \
         create-key --scope {0}"
    )]
    NoKeyFor(String),
    #[error("{0}")]
    CannotAttest(String),
    #[error("unknown authorization id {0}")]
    UnknownAuthorization(String),
    #[error("unknown user {0}: they must connect once before they can be granted a key")]
    UnknownUser(String),
    #[error("{reason}")]
    Denied { rule: Rule, reason: String },
    #[error("key {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("authorization {0} is already revoked")]
    AuthorizationAlreadyRevoked(String),
    #[error("unknown request {0}")]
    UnknownRequest(String),
    #[error("only the principal of request {0} may approve or deny it")]
    NotPrincipal(String),
    #[error(
        "request {0} was made by you; a co-signed request needs someone else's approval, or, \
         when an agent's key of yours made it, yours on its page with a passkey or TOTP code"
    )]
    SelfApproval(String),
    #[error("request {id} is already {status}")]
    AlreadyResolved { id: String, status: &'static str },
    #[error("request {0} expired before it was approved")]
    RequestExpired(String),
    /// `approve` over SSH of a legal agreement without `--confirm`: the reply is the
    /// disclosure, and nothing is approved.
    #[error(
        "approving {id} ({namespace}) is an electronic signature: read the disclosure, then run \
         approve --id {id} --confirm"
    )]
    ConsentRequired {
        id: String,
        namespace: String,
        metadata: Box<serde_json::Map<String, serde_json::Value>>,
    },
    #[error("this approval requires a handwritten signature: open {url} in a browser")]
    SignatureRequired { url: String },
    #[error("the signature was not made by key {0}")]
    WrongKey(String),
    #[error("unknown API key {0}")]
    UnknownApiKey(String),
    #[error("API key {0} is already revoked")]
    ApiKeyRevoked(String),
    #[error("a valid API key is needed: Authorization: Bearer sshsign_...")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("this request may not be decided by {method}; open {url}")]
    MethodNotAllowed { method: &'static str, url: String },
    #[error("you have already decided request {0}")]
    AlreadyVoted(String),
    #[error("{0}")]
    AuthenticationFailed(String),
    #[error(
        "TOTP is closed for {approver} after too many wrong codes; they reopen it themselves \
         (`authenticator reopen --id {authenticator}` over SSH, or with a passkey on /requests)"
    )]
    TotpClosed {
        approver: String,
        authenticator: String,
    },
    #[error(
        "TOTP is retired for {0} after too many wrong codes over its life; they enroll a new \
         secret with `enroll totp`"
    )]
    TotpRetired(String),
    #[error(
        "request {0} takes no more TOTP codes after too many wrong ones; decide with a passkey \
         (or over SSH, where the request allows it)"
    )]
    RequestTotpClosed(String),
    #[error(
        "{who} does not take requests from {from}; they accept them with `approvers allow \
         --from {from}` over SSH"
    )]
    NotAccepted { who: String, from: String },
    #[error("no {0} is enrolled for this approver (enroll one over SSH: `enroll {0}`)")]
    NoAuthenticator(&'static str),
    #[error("this enrollment link is unknown, used or expired; run `enroll passkey` again")]
    UnknownEnrollment,
    #[error("unknown authenticator {0}")]
    UnknownAuthenticator(String),
    #[error("{0}")]
    Busy(String),
    /// A quota or a per-source limit reached; the message names the limit.
    #[error("{0}")]
    OverQuota(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A field out of bounds. `field` is the domain's name for it (`label`, `ttl`,
    /// `require_signature`); `reason` reads after it ("is 1 to 64 bytes"). Each front names the
    /// field its own way: a flag over SSH (`--label`), the JSON member over REST.
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
    /// Well-formed input that a rule the request's schema cannot state refuses (one field
    /// against another, a size in bytes, where an address leads): HTTP 422 where [`Invalid`]
    /// is 400.
    ///
    /// [`Invalid`]: Error::Invalid
    #[error("{field} {reason}")]
    Unprocessable { field: &'static str, reason: String },
    #[error("the payload is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error("audit log unavailable; nothing was signed")]
    AuditUnavailable(#[source] crate::audit::Error),
    #[error("{0}")]
    Audit(#[source] crate::audit::Error),
    #[error("{0}")]
    Negotiation(crate::negotiation::Refusal),
    #[error(transparent)]
    Signature(#[from] crate::sshsig::Error),
    #[error(transparent)]
    Token(#[from] crate::hsm::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Internal(String),
}

impl From<crate::negotiation::Refusal> for Error {
    fn from(refusal: crate::negotiation::Refusal) -> Self {
        match refusal {
            crate::negotiation::Refusal::Invalid { field, reason } => {
                Error::Invalid { field, reason }
            }
            other => Error::Negotiation(other),
        }
    }
}

impl Error {
    /// The stable code of the error, as `{"error":{"code":...}}` carries it.
    pub fn code(&self) -> &'static str {
        use crate::sshsig::Error as Sig;
        match self {
            Error::UnknownKey(_) => "unknown_key",
            Error::NoKeyFor(_) => "no_signing_key",
            Error::CannotAttest(_) => "attestation_unavailable",
            Error::UnknownAuthorization(_) => "unknown_authorization",
            Error::UnknownUser(_) => "unknown_user",
            Error::Denied { rule, .. } => match rule {
                Rule::UnknownKey => "unknown_key",
                Rule::KeyRevoked => "key_revoked",
                Rule::NotAuthorized => "not_authorized",
                Rule::AuthorizationRevoked => "authorization_revoked",
                Rule::AuthorizationExpired => "authorization_expired",
                Rule::Scope => "scope_denied",
                Rule::Constraint => "constraint_violation",
                Rule::HardRule => "hard_rule_violation",
            },
            Error::AlreadyRevoked(_) => "key_revoked",
            Error::AuthorizationAlreadyRevoked(_) => "authorization_revoked",
            Error::UnknownRequest(_) => "unknown_request",
            Error::NotPrincipal(_) => "not_principal",
            Error::SelfApproval(_) => "self_approval",
            Error::AlreadyResolved { .. } => "already_resolved",
            Error::RequestExpired(_) => "request_expired",
            Error::SignatureRequired { .. } => "signature_required",
            Error::ConsentRequired { .. } => "consent_required",
            Error::WrongKey(_) => "key_mismatch",
            Error::UnknownApiKey(_) => "unknown_api_key",
            Error::ApiKeyRevoked(_) => "api_key_revoked",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::AlreadyVoted(_) => "already_voted",
            Error::AuthenticationFailed(_) => "authentication_failed",
            Error::TotpClosed { .. } => "totp_closed",
            Error::TotpRetired(_) => "totp_retired",
            Error::RequestTotpClosed(_) => "request_totp_closed",
            Error::NotAccepted { .. } => "not_accepted",
            Error::NoAuthenticator(_) => "no_authenticator",
            Error::UnknownEnrollment => "unknown_enrollment",
            Error::UnknownAuthenticator(_) => "unknown_authenticator",
            Error::Busy(_) => "busy",
            Error::OverQuota(_) => "quota_exceeded",
            Error::InvalidArgument(_) | Error::Invalid { .. } | Error::Unprocessable { .. } => {
                "invalid_argument"
            }
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::AuditUnavailable(_) => "audit_unavailable",
            Error::Audit(crate::audit::Error::NoCheckpoint(_)) => "no_checkpoint",
            Error::Audit(crate::audit::Error::Proof(_)) => "invalid_range",
            Error::Audit(_) => "audit_unavailable",
            Error::Negotiation(refusal) => refusal.code(),
            Error::Signature(Sig::EmptyNamespace) => "invalid_namespace",
            Error::Signature(Sig::NamespaceMismatch { .. }) => "namespace_mismatch",
            Error::Signature(Sig::BadSignature) => "invalid_signature",
            Error::Signature(_) => "malformed_signature",
            Error::Token(crate::hsm::Error::SessionLost { .. }) => "token_session_lost",
            Error::Token(crate::hsm::Error::KeyNotFound(_)) => "key_not_on_token",
            Error::Token(_) => "token_unavailable",
            Error::Store(_) | Error::Internal(_) => "internal",
        }
    }

    /// The message shown to the caller. Store, token and audit internals stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Token(
                e @ (crate::hsm::Error::SessionLost { .. } | crate::hsm::Error::Busy(_)),
            ) => e.to_string(),
            // With several appliances, a key made through one after the others' tokens were
            // restored from the group's backup, where keys cannot travel wrapped, is on that
            // one's token alone.
            Error::Token(crate::hsm::Error::KeyNotFound(_)) => {
                "this key is not on this appliance's token, so nothing was signed: it was made \
                 through another appliance after this one's token was restored, and keys do not \
                 travel wrapped between these tokens; ask through that appliance, or have the \
                 operator restore a newer backup here"
                    .to_owned()
            }
            Error::Token(_) => {
                "the signing token failed; nothing was signed (the operator's log has the cause)"
                    .to_owned()
            }
            Error::Audit(crate::audit::Error::Proof(e)) => e.to_string(),
            Error::Audit(e @ crate::audit::Error::NoCheckpoint(_)) => e.to_string(),
            Error::Audit(_) => {
                "audit log unavailable (the operator's log has the cause)".to_owned()
            }
            Error::Store(_) | Error::Internal(_) => {
                "internal error (the operator's log has the cause)".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Whether the operator should hear of it (the caller did nothing wrong).
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Error::Token(_)
                | Error::Store(_)
                | Error::Internal(_)
                | Error::AuditUnavailable(_)
                | Error::Audit(_)
        )
    }
}
