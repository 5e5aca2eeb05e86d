//! What the pages' script is answered: passkey prompts, registrations, logins, decisions.

use serde::Serialize;
use serde_json::Value;

use crate::store::TotpState;

/// A WebAuthn prompt: the ceremony to finish, and the options for `navigator.credentials`.
#[derive(Debug, Clone, Serialize)]
pub struct CeremonyView {
    pub ceremony: String,
    pub options: Value,
}

/// A passkey registered through an enrollment link.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredView {
    pub id: String,
    pub label: String,
}

/// A login: whose session the cookie now carries.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedInView {
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoggedOutView {
    pub logged_out: bool,
}

/// A decision made on a page: the request's status after it and, by kind, whether it is
/// signed or how many votes it has.
#[derive(Debug, Clone, Serialize)]
pub struct DecidedView {
    pub id: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub votes: Option<usize>,
}

/// A TOTP secret reopened with a passkey.
#[derive(Debug, Clone, Serialize)]
pub struct ReopenedView {
    pub id: String,
    pub state: Option<TotpState>,
}
