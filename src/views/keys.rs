//! How signing keys, their authorizations and signatures are shown.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::policy::{Authorization, Role, constraint, rules};
use crate::store::{KeyStatus, PendingRequest, SigningKeyRecord};
use crate::time;

/// A signing key's public half and status, as anyone may see it (verifiers, the REST API).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SigningKey)]
pub struct PublicKeyView {
    /// `ak_…`
    pub key_id: String,
    /// OpenSSH one-line form, as an allowed_signers line takes it.
    pub public_key: String,
    /// `SHA256:…`
    pub fingerprint: String,
    pub status: KeyStatus,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
}

impl From<&SigningKeyRecord> for PublicKeyView {
    fn from(key: &SigningKeyRecord) -> Self {
        PublicKeyView {
            key_id: key.key_id.clone(),
            public_key: key.openssh_line(),
            fingerprint: key.fingerprint(),
            status: key.status(),
            created_at: time::rfc3339(key.created_at),
            revoked_at: key.revoked_at.map(time::rfc3339),
        }
    }
}

/// A signing key as its owner and its grantees see it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    #[serde(flatten)]
    pub key: PublicKeyView,
    pub owner: String,
}

impl From<&SigningKeyRecord> for KeyView {
    fn from(key: &SigningKeyRecord) -> Self {
        KeyView {
            key: PublicKeyView::from(key),
            owner: key.owner.clone(),
        }
    }
}

/// `create-key`: the new key and its first authorization.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    pub authorization: AuthorizationView,
}

/// A key in `keys`: how the caller relates to it, and their authorizations on it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedKey {
    #[serde(flatten)]
    pub key: KeyView,
    pub role: Role,
    pub authorizations: Vec<AuthorizationView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyList {
    pub keys: Vec<ListedKey>,
    /// `--from` for the next page; null on the last.
    pub next: Option<usize>,
    /// Whether the token can prove that it generated the keys.
    pub attestation: crate::attestation::Support,
}

/// `revoke`.
#[derive(Debug, Clone, Serialize)]
pub struct RevokedKey {
    pub key_id: String,
    pub status: KeyStatus,
    pub revoked_at: Option<String>,
}

/// An authorization: who may sign with a key, and under which terms.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorizationView {
    pub authorization_id: String,
    pub key_id: String,
    pub grantee: String,
    pub principal: String,
    /// `active`, `revoked` or `expired`.
    pub status: &'static str,
    pub scopes: Vec<String>,
    /// The sshsign seed's word for a scope, where it has one (`git`: `git-commit`).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub scope_aliases: std::collections::BTreeMap<String, &'static str>,
    pub tier: &'static str,
    pub require_signature: bool,
    pub constraints: Value,
    pub hard_rules: Value,
    pub soft_rules: Value,
    pub expires_at: Option<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<&Authorization> for AuthorizationView {
    fn from(auth: &Authorization) -> Self {
        let status = if auth.revoked_at.is_some() {
            "revoked"
        } else if auth.terms.expires_at.is_some_and(|at| at <= time::now()) {
            "expired"
        } else {
            "active"
        };
        AuthorizationView {
            authorization_id: auth.authorization_id.clone(),
            key_id: auth.key_id.clone(),
            grantee: auth.grantee.clone(),
            principal: auth.principal.clone(),
            status,
            scopes: auth.terms.scopes.clone(),
            scope_aliases: auth
                .terms
                .scopes
                .iter()
                .flat_map(|scope| {
                    crate::policy::aliases_of(crate::policy::namespace_of(scope))
                        .map(move |alias| (scope.clone(), alias))
                })
                .collect(),
            tier: auth.terms.tier.as_str(),
            require_signature: auth.terms.require_signature,
            constraints: constraint::constraints_json(&auth.terms.constraints),
            hard_rules: rules::rules_json(&auth.terms.hard_rules),
            soft_rules: rules::rules_json(&auth.terms.soft_rules),
            expires_at: auth.terms.expires_at.map(time::rfc3339),
            created_at: time::rfc3339(auth.created_at),
            revoked_at: auth.revoked_at.map(time::rfc3339),
        }
    }
}

/// `authorizations --key-id`.
#[derive(Debug, Clone, Serialize)]
pub struct AuthorizationList {
    pub key_id: String,
    pub authorizations: Vec<AuthorizationView>,
}

/// `sign`, when the token signed.
#[derive(Debug, Clone, Serialize)]
pub struct SignedView {
    /// `signed`.
    pub status: &'static str,
    pub key_id: String,
    pub authorization_id: String,
    pub namespace: String,
    pub public_key: String,
    pub fingerprint: String,
    /// The armored SSHSIG.
    pub signature: String,
    /// Soft rules that did not hold.
    pub warnings: Vec<String>,
    /// The audit entry that recorded the signature before the token made it.
    pub audit: AuditRef,
}

/// Where an entry sits in the audit log, so that a client can ask for its inclusion proof
/// (`audit-proof --index`) against any checkpoint of at least `size` entries.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AuditRef {
    /// The entry's leaf index.
    pub index: u64,
    /// The smallest tree size that covers it.
    pub size: u64,
}

impl AuditRef {
    pub fn of(index: u64) -> Self {
        AuditRef {
            index,
            size: index.saturating_add(1),
        }
    }
}

/// `sign`, when the request waits for its principal.
#[derive(Debug, Clone, Serialize)]
pub struct PendingCosignView {
    /// `pending_cosign`.
    pub status: &'static str,
    pub pending_id: String,
    pub approval_url: String,
    pub key_id: String,
    pub authorization_id: String,
    pub principal: String,
    pub require_signature: bool,
    pub expires_at: String,
    pub warnings: Vec<String>,
    /// The audit entry that recorded the request.
    pub audit: AuditRef,
}

impl PendingCosignView {
    pub fn new(request: &PendingRequest, approval_url: String, audit: AuditRef) -> Self {
        PendingCosignView {
            status: "pending_cosign",
            pending_id: request.pending_id.clone(),
            approval_url,
            key_id: request.key_id.clone(),
            authorization_id: request.authorization_id.clone(),
            principal: request.principal.clone(),
            require_signature: request.require_signature,
            expires_at: time::rfc3339(request.expires_at),
            warnings: request.warnings.clone(),
            audit,
        }
    }
}

/// `verify`: a good signature, and which of our keys made it (if one did).
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedView {
    pub valid: bool,
    pub namespace: String,
    pub public_key: String,
    pub fingerprint: String,
    pub key_id: Option<String>,
    pub key_status: Option<KeyStatus>,
}
