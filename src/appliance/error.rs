//! The appliance's errors, each with a stable code users and agents can match on. Internal
//! detail (store and token failures) goes to the log; the user sees a short, safe message.

use crate::policy::Rule;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown key id {0}")]
    UnknownKey(String),
    #[error("{reason}")]
    Denied { rule: Rule, reason: String },
    #[error("the signature was not made by key {0}")]
    WrongKey(String),
    #[error("key {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the payload is larger than the {limit}-byte limit")]
    PayloadTooLarge { limit: usize },
    #[error(transparent)]
    Signature(#[from] crate::sshsig::Error),
    #[error(transparent)]
    Token(#[from] crate::hsm::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The stable code of the error, as `{"error":{"code":...}}` carries it.
    pub fn code(&self) -> &'static str {
        use crate::sshsig::Error as Sig;
        match self {
            Error::UnknownKey(_) => "unknown_key",
            Error::Denied { rule, .. } => match rule {
                Rule::Owner => "unknown_key",
                Rule::Revoked => "key_revoked",
                Rule::Expired => "key_expired",
                Rule::Scope => "scope_denied",
                Rule::Tier => "approval_required",
                Rule::Constraints => "constraints_unchecked",
            },
            Error::WrongKey(_) => "key_mismatch",
            Error::AlreadyRevoked(_) => "key_revoked",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::Signature(Sig::EmptyNamespace) => "invalid_namespace",
            Error::Signature(Sig::NamespaceMismatch { .. }) => "namespace_mismatch",
            Error::Signature(Sig::BadSignature) => "invalid_signature",
            Error::Signature(_) => "malformed_signature",
            Error::Token(crate::hsm::Error::SessionLost { .. }) => "token_session_lost",
            Error::Token(_) => "token_unavailable",
            Error::Store(_) | Error::Internal(_) => "internal",
        }
    }

    /// The message shown to the caller. Store and token internals stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Token(
                e @ (crate::hsm::Error::SessionLost { .. } | crate::hsm::Error::Busy(_)),
            ) => e.to_string(),
            Error::Token(_) => {
                "the signing token failed; nothing was signed (the operator's log has the cause)"
                    .to_owned()
            }
            Error::Store(_) | Error::Internal(_) => {
                "internal error; nothing was changed (the operator's log has the cause)".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Whether the operator should hear of it (the caller did nothing wrong).
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Token(_) | Error::Store(_) | Error::Internal(_))
    }
}
