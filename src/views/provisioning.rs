//! What `sshsign-server provision …` prints: the token's slots, the device profiles, an
//! initialised token, the appliance's keys and their self-test, every Ed25519 key in the token.

use serde::Serialize;

use crate::hsm::pkcs11::module::SlotReport;
use crate::hsm::profile::{
    BackendKind, EcParamsForm, HsmProfile, KeyLogin, ProfileSources, WrapSupport,
};
use crate::hsm::{KeyAttributes, TokenDescription, TokenKey};
use crate::provision::{ApplianceKey, SelfTestReport};

/// `provision slots`.
#[derive(Debug, Serialize)]
pub struct SlotList {
    pub slots: Vec<SlotReport>,
}

/// A device profile, and whether its module is installed here.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileView {
    pub name: String,
    pub description: String,
    pub backend: BackendKind,
    pub installed_module: Option<String>,
    pub connector: Option<String>,
    pub ec_params: EcParamsForm,
    pub key_login: KeyLogin,
    pub objects: Option<usize>,
    pub message_limit: Option<usize>,
    pub verify: bool,
    /// Whether keys can leave the device wrapped, for `provision backup`.
    pub wrap: WrapSupport,
    pub tested: String,
    pub not_tested: String,
    pub sources: ProfileSources,
}

impl From<&HsmProfile> for ProfileView {
    fn from(p: &HsmProfile) -> Self {
        ProfileView {
            name: p.name.clone(),
            description: p.description.clone(),
            backend: p.backend,
            installed_module: p.installed_module().map(|m| m.display().to_string()),
            connector: p.connector.clone(),
            ec_params: p.ec_params,
            key_login: p.key_login,
            objects: p.objects,
            message_limit: p.message_limit,
            verify: p.verify,
            wrap: p.wrap,
            tested: p.tested.clone(),
            not_tested: p.not_tested.clone(),
            sources: p.sources.clone(),
        }
    }
}

/// `provision profiles`.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileList {
    pub profiles: Vec<ProfileView>,
}

/// `provision init-token`.
#[derive(Debug, Clone, Serialize)]
pub struct Initialized {
    pub initialized: InitializedToken,
}

#[derive(Debug, Clone, Serialize)]
pub struct InitializedToken {
    pub label: String,
    pub slot: u64,
}

/// One appliance key, and whether this run made it.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedKey {
    pub created: bool,
    pub key: ApplianceKey,
}

/// `provision generate-appliance-keys`.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedKeys {
    pub appliance_keys: Vec<GeneratedKey>,
}

/// `provision show`: the token, the appliance's keys, and the audit log's verifier key, which
/// clients can pin (`SSHSIGN_AUDIT_KEY`) before they first connect.
#[derive(Debug, Clone, Serialize)]
pub struct ShownToken {
    pub token: TokenDescription,
    pub appliance_keys: Vec<ApplianceKey>,
    pub audit_verifier_key: Option<String>,
    /// Signing keys in the token, and its room for them.
    pub signing_keys: super::SigningKeysView,
}

/// One Ed25519 key in the token, with its protection attributes.
#[derive(Debug, Clone, Serialize)]
pub struct TokenKeyView {
    pub label: String,
    pub object_id: String,
    pub fingerprint: String,
    pub attributes: KeyAttributes,
    /// What the device proves about where the key was made (asked with `--attest`), or why a
    /// token that cannot attest says nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<crate::attestation::Attestation>,
}

impl TokenKeyView {
    pub fn new(key: &TokenKey, attributes: KeyAttributes) -> Self {
        TokenKeyView {
            label: key.label.clone(),
            object_id: key.object_id.to_hex(),
            fingerprint: crate::pubkey::fingerprint(&key.public_key),
            attributes,
            attestation: None,
        }
    }
}

/// `provision attest`.
#[derive(Debug, Serialize)]
pub struct Attested {
    pub key_id: String,
    pub attestation: crate::attestation::Attestation,
}

/// `provision keys`.
#[derive(Debug, Clone, Serialize)]
pub struct TokenKeyList {
    pub keys: Vec<TokenKeyView>,
}

/// `provision self-test`.
#[derive(Debug, Serialize)]
pub struct SelfTestView {
    pub self_test: Vec<SelfTestReport>,
    pub ok: bool,
}

/// `provision wrap-key`: the wrap key's id on each token.
#[derive(Debug, Serialize)]
pub struct WrapKeyImported {
    /// Whether the key was marked trusted (`CKA_TRUSTED`, by the security officer).
    pub trusted: bool,
    pub tokens: Vec<WrapKeyToken>,
}

/// One token's wrap key.
#[derive(Debug, Serialize)]
pub struct WrapKeyToken {
    pub token: String,
    pub wrap_key: String,
    pub already_there: bool,
}

/// `provision rotate`.
#[derive(Debug, Serialize)]
pub struct Rotated {
    pub rotated: ApplianceKey,
    pub audit_verifier_key: Option<String>,
    /// Checkpoint key handover notes on disk.
    pub handovers: usize,
    pub takes_effect: &'static str,
}

/// `provision retire`.
#[derive(Debug, Serialize)]
pub struct Retired {
    pub retired: ApplianceKey,
}

/// `provision backup`.
#[derive(Debug, Serialize)]
pub struct BackupWritten {
    pub backup: String,
    pub keys: usize,
    pub wrap_key: String,
    pub audit_key: String,
}

/// `provision restore`.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub restored: crate::backup::RestoreReport,
}

/// The line `sshsign-server serve` prints once it listens, for whoever started it.
#[derive(Debug, Clone, Serialize)]
pub struct Listening {
    pub event: &'static str,
    pub ssh: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    pub url: String,
    pub host_key: String,
    pub host_key_fingerprint: String,
}
