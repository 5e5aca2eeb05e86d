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
    #[error(
        "generation {generation} is the active {role} key; rotate first (`provision rotate --role \
         {role}`), then retire it"
    )]
    RetireActive { role: KeyRole, generation: u32 },
    #[error("the checkpoint key handover {path}: {reason}")]
    Handover { path: String, reason: String },
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

/// Where an appliance key stands in its role's rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs now: the newest generation whose private half is on the token.
    Active,
    /// Replaced by a newer generation; its private half is kept until it is retired.
    Previous,
    /// Its private half is destroyed: it signs nothing more, and stays published so that what
    /// it signed stays checkable.
    Retired,
}

/// An appliance key found in the token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApplianceKey {
    pub role: KeyRole,
    pub label: String,
    pub purpose: String,
    /// 1 for the key made at provisioning; each rotation adds one (label `LABEL.N`).
    pub generation: u32,
    pub state: KeyState,
    #[serde(skip)]
    pub key: TokenKey,
    pub object_id: String,
    pub public_key: String,
    pub fingerprint: String,
}

impl ApplianceKey {
    fn new(spec: &ApplianceKeySpec, key: TokenKey) -> Self {
        Self::of_generation(spec, key, 1, KeyState::Active)
    }

    fn of_generation(
        spec: &ApplianceKeySpec,
        key: TokenKey,
        generation: u32,
        state: KeyState,
    ) -> Self {
        ApplianceKey {
            role: spec.role,
            label: key.label.clone(),
            purpose: spec.purpose.clone(),
            generation,
            state,
            object_id: key.object_id.to_hex(),
            public_key: pubkey::openssh(&key.public_key, &key.label),
            fingerprint: pubkey::fingerprint(&key.public_key),
            key,
        }
    }
}

/// The label of `spec`'s key of `generation`: the manifest's label for the first, then
/// `LABEL.2`, `LABEL.3`, ...
pub fn generation_label(spec: &ApplianceKeySpec, generation: u32) -> String {
    if generation <= 1 {
        spec.label.clone()
    } else {
        format!("{}.{generation}", spec.label)
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

/// Finds every generation of every manifest signing key, oldest first, each with its state; a
/// role without an active key is an error that says how to make one.
pub fn appliance_keys(hsm: &dyn Hsm) -> Result<Vec<ApplianceKey>, Error> {
    let mut all = Vec::new();
    for spec in manifest()?.iter().filter(|s| s.kind == KeyKind::Ed25519) {
        all.extend(generations(hsm, spec)?);
    }
    Ok(all)
}

/// Every generation of `spec`'s key: generations are made in turn and never removed (a retired
/// one keeps its public half), so the first label not found ends the list.
fn generations(hsm: &dyn Hsm, spec: &ApplianceKeySpec) -> Result<Vec<ApplianceKey>, Error> {
    let mut found = Vec::new();
    for generation in 1.. {
        let label = generation_label(spec, generation);
        let keys = hsm.find_by_label(&label)?;
        let named = ApplianceKeySpec {
            label,
            ..spec.clone()
        };
        let Some(key) = at_most_one(keys, &named)? else {
            break;
        };
        let has_private = hsm.find(&key.object_id)?.is_some();
        found.push((generation, key, has_private));
    }
    let active = found
        .iter()
        .rev()
        .find(|(_, _, has_private)| *has_private)
        .map(|(generation, _, _)| *generation)
        .ok_or_else(|| Error::Missing {
            role: spec.role,
            label: spec.label.clone(),
        })?;
    Ok(found
        .into_iter()
        .map(|(generation, key, has_private)| {
            let state = match (generation == active, has_private) {
                (true, _) => KeyState::Active,
                (false, true) => KeyState::Previous,
                (false, false) => KeyState::Retired,
            };
            ApplianceKey::of_generation(spec, key, generation, state)
        })
        .collect())
}

/// The active key of `role` among `keys`.
pub fn active(keys: &[ApplianceKey], role: KeyRole) -> Option<&ApplianceKey> {
    keys.iter()
        .find(|k| k.role == role && k.state == KeyState::Active)
}

/// The manifest's spec of the signing key of `role`.
fn spec_of(role: KeyRole) -> Result<ApplianceKeySpec, Error> {
    manifest()?
        .into_iter()
        .find(|spec| spec.role == role && spec.kind == KeyKind::Ed25519)
        .ok_or_else(|| Error::Manifest(format!("no {role} signing key is listed")))
}

/// Makes the next generation of `role`'s key, which becomes the active one; the one it
/// replaces becomes previous and goes on being published (and, until retired, can still sign
/// the note that hands over to its successor).
pub fn rotate(hsm: &dyn Hsm, role: KeyRole) -> Result<ApplianceKey, Error> {
    let spec = spec_of(role)?;
    let current = generations(hsm, &spec)?;
    let next = current.last().map_or(1, |k| k.generation + 1);
    let key = hsm.generate_ed25519(&generation_label(&spec, next))?;
    Ok(ApplianceKey::of_generation(
        &spec,
        key,
        next,
        KeyState::Active,
    ))
}

/// Retires generation `generation` of `role`'s key: destroys its private half, so it signs
/// nothing more, and keeps its public half, so what it signed stays checkable. The active key
/// cannot be retired (rotate first).
pub fn retire(hsm: &dyn Hsm, role: KeyRole, generation: u32) -> Result<ApplianceKey, Error> {
    let spec = spec_of(role)?;
    let keys = generations(hsm, &spec)?;
    let key = keys
        .into_iter()
        .find(|k| k.generation == generation)
        .ok_or_else(|| Error::Missing {
            role,
            label: generation_label(&spec, generation),
        })?;
    match key.state {
        KeyState::Active => Err(Error::RetireActive { role, generation }),
        KeyState::Retired => Ok(key),
        KeyState::Previous => {
            hsm.retire(&key.key.object_id)?;
            Ok(ApplianceKey {
                state: KeyState::Retired,
                ..key
            })
        }
    }
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
    for key in keys.iter().filter(|k| k.state != KeyState::Retired) {
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

/// The notes in which each generation of the checkpoint key hands the audit log over to the
/// next, oldest first, kept as `handovers/N.note` in the audit log's directory `audit_dir`.
/// A missing one is made now where the outgoing key can still sign (it is not retired); one
/// that does not verify under its two keys is an error.
pub fn handovers(
    hsm: &dyn Hsm,
    keys: &[ApplianceKey],
    audit_dir: &std::path::Path,
) -> Result<Vec<String>, Error> {
    use crate::audit::note;
    let Some(origin) = audit_origin(keys) else {
        return Ok(Vec::new());
    };
    let mut checkpoint_keys: Vec<&ApplianceKey> = keys
        .iter()
        .filter(|k| k.role == KeyRole::Checkpoint)
        .collect();
    checkpoint_keys.sort_by_key(|k| k.generation);
    let dir = audit_dir.join("handovers");
    let mut notes = Vec::new();
    for pair in checkpoint_keys.windows(2) {
        let (from, to) = (pair[0], pair[1]);
        let (vkey_from, vkey_to) = (
            note::verifier_key(&origin, &from.key.public_key),
            note::verifier_key(&origin, &to.key.public_key),
        );
        let path = dir.join(format!("{}.note", to.generation));
        let failed = |reason: String| Error::Handover {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if from.state == KeyState::Retired {
                    tracing::warn!(
                        generation = to.generation,
                        "no handover to this checkpoint key, and the key before it is retired: \
                         clients that pinned that key must pin the new one by hand"
                    );
                    continue;
                }
                let body = note::Handover {
                    origin: origin.clone(),
                    generation: to.generation,
                    next: vkey_to.clone(),
                }
                .body();
                let by_from = hsm.sign(&from.key.object_id, body.as_bytes())?;
                let by_to = hsm.sign(&to.key.object_id, body.as_bytes())?;
                let text = note::add_signature(
                    &note::signed_note(&body, &origin, &from.key.public_key, &by_from),
                    &origin,
                    &to.key.public_key,
                    &by_to,
                );
                write_new(&dir, &path, &text).map_err(|e| failed(e.to_string()))?;
                text
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let handover =
            note::verify_handover(&text, &vkey_from).map_err(|e| failed(e.to_string()))?;
        if handover.next != vkey_to || handover.generation != to.generation {
            return Err(failed(format!(
                "it hands over to {}, not to generation {}'s key {vkey_to}",
                handover.next, to.generation
            )));
        }
        notes.push(text);
    }
    Ok(notes)
}

/// Writes `text` to the new file `path` in `dir` (made if need be), synced.
fn write_new(dir: &std::path::Path, path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// What the label of an appliance's cosigner key begins with; the appliance's name follows.
const COSIGNER_LABEL: &str = "sshsign-cosigner@";

/// Whether a token key is an appliance's cosigner key, which stays with its token: a backup
/// leaves it out, so that each appliance of a group cosigns as itself.
pub fn is_cosigner_label(label: &str) -> bool {
    label.starts_with(COSIGNER_LABEL)
}

/// The cosigner key of the appliance named `name`, with which it cosigns the audit log's
/// checkpoints it has checked (C2SP `tlog-cosignature`): found by its label
/// (`sshsign-cosigner@NAME`), or made now if the token lacks it. Returns the key and whether it
/// was made now.
pub fn cosigner_key(hsm: &dyn Hsm, name: &str) -> Result<(TokenKey, bool), Error> {
    let label = format!("{COSIGNER_LABEL}{name}");
    let spec = ApplianceKeySpec {
        role: KeyRole::Checkpoint,
        label: label.clone(),
        kind: KeyKind::Ed25519,
        purpose: String::new(),
    };
    match find_one(hsm, &spec)? {
        Some(key) if hsm.find(&key.object_id)?.is_some() => Ok((key, false)),
        Some(_) => Err(Error::SelfTest {
            label,
            reason: "the cosigner key's private half is gone from the token".to_owned(),
        }),
        None => Ok((hsm.generate_ed25519(&label)?, true)),
    }
}

/// The audit log's verifier key: its origin and the active checkpoint key among `keys`. Clients
/// can pin it (`SSHSIGN_AUDIT_KEY`) before they first connect.
pub fn audit_verifier_key(keys: &[ApplianceKey]) -> Option<String> {
    let origin = audit_origin(keys)?;
    active(keys, KeyRole::Checkpoint)
        .map(|k| crate::audit::note::verifier_key(&origin, &k.key.public_key))
}

/// The audit log's origin (the name its checkpoints carry and clients pin): fixed by the first
/// checkpoint key, so it is set when the token is provisioned and changes with nothing else,
/// rotations included.
pub fn audit_origin(keys: &[ApplianceKey]) -> Option<String> {
    keys.iter()
        .filter(|k| k.role == KeyRole::Checkpoint)
        .min_by_key(|k| k.generation)
        .map(|first| {
            format!(
                "sshsign-audit-{}",
                crate::hex::encode(&first.key.public_key[..4])
            )
        })
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
