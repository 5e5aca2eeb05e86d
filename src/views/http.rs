//! The rest of the REST API's replies: the decision keys, errors, health, the appliance's keys.

use serde::Serialize;
use utoipa::ToSchema;

use crate::approval::decision::Jwk;

/// The decision keys, as a JWK set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// An error: a stable code to match on, and a message for people.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorView {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// The token's state, for health checks.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Health)]
pub struct HealthView {
    /// `ok`; `token_degraded` when some of several tokens do not answer (keys on the others
    /// go on signing); or, with 503, `token_unavailable` (no token answers) or `audit_tampered`
    /// (the full check found a mismatch: nothing is signed).
    pub status: &'static str,
    /// What the token (the primary, with several) says it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<crate::hsm::TokenDescription>,
    /// Each token's answer to this check.
    pub tokens: Vec<crate::hsm::TokenHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsageView>,
    pub signing_keys: SigningKeysView,
    pub audit: AuditHealthView,
}

/// Signing keys in the token, and the most it may hold.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = SigningKeys)]
pub struct SigningKeysView {
    /// Keys not revoked.
    pub live: u64,
    /// Room for signing keys: the token's fixed capacity less what is kept for the appliance's
    /// own keys; `null` when the token sets no fixed limit (SoftHSMv2, NetHSM).
    pub limit: Option<u64>,
}

impl SigningKeysView {
    pub fn new((live, limit): (usize, Option<usize>)) -> Self {
        let wide = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        SigningKeysView {
            live: wide(live),
            limit: limit.map(wide),
        }
    }
}

/// The audit log: how big, whether its full check passed, and its tile cache.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = AuditHealth)]
pub struct AuditHealthView {
    pub entries: u64,
    pub check: crate::audit::Integrity,
    /// Bytes of tiles in memory, and the most it keeps (`SSHSIGN_AUDIT_CACHE_MIB`).
    pub cache_bytes: usize,
    pub cache_budget: usize,
}

/// How busy the token has been since start-up.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TokenUsage)]
pub struct TokenUsageView {
    pub calls: u64,
    pub busy_seconds: f64,
}

/// The appliance's public keys: its SSH host key and its own keys.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ApplianceKeys)]
pub struct ApplianceView {
    pub ssh_host_key: HostKeyView,
    /// The decision, checkpoint and seal keys.
    pub keys: Vec<crate::provision::ApplianceKey>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = HostKey)]
pub struct HostKeyView {
    /// OpenSSH one-line form.
    pub public_key: String,
    /// `SHA256:…`
    pub fingerprint: String,
}
