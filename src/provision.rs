//! The appliance's own keys: what `provisioning/appliance-keys.toml` lists, generating them in the
//! token, finding them again at start-up, and the self-test that signs and verifies with each.
//! Most are Ed25519 signing keys; the seal key is an AES-256 key (see [`crate::seal`]).

use serde::{Deserialize, Serialize};

use crate::hsm::{Hsm, KeyAttributes, KeyExport, ObjectId, TokenKey};
use crate::pubkey;

const MANIFEST: &str = include_str!("../provisioning/appliance-keys.toml");

/// Provisioning failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("provisioning/appliance-keys.toml: {0}")]
    Manifest(String),
    #[error(
        "the token has no {role} key (label {label:?}); run `sshsign-server provision \
         generate-appliance-keys`"
    )]
    Missing { role: KeyRole, label: String },
    #[error("the token holds {count} keys labelled {label:?}; exactly one is expected")]
    Duplicate { label: String, count: usize },
    #[error("{label}: {reason}")]
    SelfTest { label: String, reason: String },
    #[error(transparent)]
    Hsm(#[from] crate::hsm::Error),
}

/// What an appliance key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    /// Signs approval decisions, evidence-envelope seals and webhook deliveries.
    Decision,
    /// Signs audit-log checkpoints.
    Checkpoint,
    /// Encrypts the data key that seals records.
    Seal,
}

impl std::fmt::Display for KeyRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyRole::Decision => "decision",
            KeyRole::Checkpoint => "checkpoint",
            KeyRole::Seal => "seal",
        })
    }
}

/// What kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum KeyKind {
    #[default]
    #[serde(rename = "ed25519")]
    Ed25519,
    #[serde(rename = "aes-256")]
    Aes256,
}

/// One key the manifest asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceKeySpec {
    pub role: KeyRole,
    pub label: String,
    #[serde(default)]
    pub kind: KeyKind,
    pub purpose: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    key: Vec<ApplianceKeySpec>,
}

/// The keys the appliance needs, as the manifest lists them.
pub fn manifest() -> Result<Vec<ApplianceKeySpec>, Error> {
    let manifest: Manifest =
        toml::from_str(MANIFEST).map_err(|e| Error::Manifest(e.to_string()))?;
    Ok(manifest.key)
}

/// An appliance key found in the token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplianceKey {
    pub role: KeyRole,
    pub label: String,
    pub purpose: String,
    #[serde(skip)]
    pub key: TokenKey,
    pub object_id: String,
    pub public_key: String,
    pub fingerprint: String,
}

impl ApplianceKey {
    fn new(spec: &ApplianceKeySpec, key: TokenKey) -> Self {
        ApplianceKey {
            role: spec.role,
            label: spec.label.clone(),
            purpose: spec.purpose.clone(),
            object_id: key.object_id.to_hex(),
            public_key: pubkey::openssh(&key.public_key, &spec.label),
            fingerprint: pubkey::fingerprint(&key.public_key),
            key,
        }
    }
}

/// The one key a label names, if any; two or more is an error, never a guess.
fn at_most_one<T>(mut found: Vec<T>, spec: &ApplianceKeySpec) -> Result<Option<T>, Error> {
    match found.len() {
        0 | 1 => Ok(found.pop()),
        count => Err(Error::Duplicate {
            label: spec.label.clone(),
            count,
        }),
    }
}

fn find_one(hsm: &dyn Hsm, spec: &ApplianceKeySpec) -> Result<Option<TokenKey>, Error> {
    at_most_one(hsm.find_by_label(&spec.label)?, spec)
}

/// Generates each manifest key the token lacks; keys already there are kept. Returns every
/// signing key and whether it was made now (the seal key is made too, but has no public half).
pub fn generate_appliance_keys(hsm: &dyn Hsm) -> Result<Vec<(ApplianceKey, bool)>, Error> {
    let mut keys = Vec::new();
    for spec in manifest()? {
        if spec.kind == KeyKind::Aes256 {
            if find_secret(hsm, &spec)?.is_none() {
                hsm.generate_seal_key(&spec.label)?;
            }
            continue;
        }
        let (key, created) = match find_one(hsm, &spec)? {
            Some(key) => (key, false),
            None => (hsm.generate_ed25519(&spec.label)?, true),
        };
        keys.push((ApplianceKey::new(&spec, key), created));
    }
    Ok(keys)
}

fn find_secret(hsm: &dyn Hsm, spec: &ApplianceKeySpec) -> Result<Option<ObjectId>, Error> {
    at_most_one(hsm.find_seal_keys(&spec.label)?, spec)
}

/// The token's seal key; a missing one is an error that says how to make it.
pub fn seal_key(hsm: &dyn Hsm) -> Result<ObjectId, Error> {
    let spec = manifest()?
        .into_iter()
        .find(|spec| spec.kind == KeyKind::Aes256)
        .ok_or_else(|| Error::Manifest("no aes-256 key is listed".to_owned()))?;
    find_secret(hsm, &spec)?.ok_or(Error::Missing {
        role: spec.role,
        label: spec.label,
    })
}

/// Finds every manifest signing key; a missing one is an error that says how to make it.
pub fn appliance_keys(hsm: &dyn Hsm) -> Result<Vec<ApplianceKey>, Error> {
    manifest()?
        .iter()
        .filter(|spec| spec.kind == KeyKind::Ed25519)
        .map(|spec| {
            find_one(hsm, spec)?
                .map(|key| ApplianceKey::new(spec, key))
                .ok_or_else(|| Error::Missing {
                    role: spec.role,
                    label: spec.label.clone(),
                })
        })
        .collect()
}

/// What the self-test found for one key.
#[derive(Debug, Serialize)]
pub struct SelfTestReport {
    pub label: String,
    pub fingerprint: String,
    pub attributes: KeyAttributes,
    pub signature_verified: bool,
}

/// Signs a fresh random challenge with each key and verifies the signature against the public
/// key read from the token; checks that each private key is protected as `export` says
/// (non-exportable, unless the appliance lets keys leave wrapped).
pub fn self_test(
    hsm: &dyn Hsm,
    keys: &[ApplianceKey],
    export: KeyExport,
) -> Result<Vec<SelfTestReport>, Error> {
    let mut reports = Vec::new();
    for key in keys {
        let failed = |reason: &str| Error::SelfTest {
            label: key.label.clone(),
            reason: reason.to_owned(),
        };
        let attributes = hsm.attributes(&key.key.object_id)?;
        if !attributes.meets(export) {
            return Err(failed(&format!(
                "the private key is not protected as SSHSIGN_KEY_EXPORT={} says: \
                 {attributes:?}",
                serde_json::to_value(export)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )));
        }
        let mut challenge = [0u8; 32];
        hsm.random(&mut challenge)?;
        let mut message = b"sshsign self-test ".to_vec();
        message.extend_from_slice(&challenge);
        let signature = hsm.sign(&key.key.object_id, &message)?;
        crate::sshsig::verify_ed25519(&key.key.public_key, &message, &signature)
            .map_err(|_| failed("the token's signature does not verify under its public key"))?;
        reports.push(SelfTestReport {
            label: key.label.clone(),
            fingerprint: key.fingerprint.clone(),
            attributes,
            signature_verified: true,
        });
    }
    Ok(reports)
}

/// The audit log's verifier key, fixed by the checkpoint key among `keys`: clients can pin it
/// (`SSHSIGN_AUDIT_KEY`) before they first connect.
pub fn audit_verifier_key(keys: &[ApplianceKey]) -> Option<String> {
    keys.iter()
        .find(|k| k.role == KeyRole::Checkpoint)
        .map(|k| crate::audit::note::verifier_key(&audit_origin(k), &k.key.public_key))
}

/// The audit log's origin (the name its checkpoints carry and clients pin): fixed by the
/// checkpoint key, so it is set when the token is provisioned and changes with nothing else.
pub fn audit_origin(checkpoint_key: &ApplianceKey) -> String {
    format!(
        "sshsign-audit-{}",
        crate::hex::encode(&checkpoint_key.key.public_key[..4])
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn manifest_names_decision_and_checkpoint_keys() {
        let roles: Vec<_> = super::manifest()
            .unwrap()
            .into_iter()
            .map(|k| k.role)
            .collect();
        assert_eq!(
            roles,
            [
                super::KeyRole::Decision,
                super::KeyRole::Checkpoint,
                super::KeyRole::Seal
            ]
        );
    }
}
