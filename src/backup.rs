//! Backup and restore between tokens: every key of the appliance (users' signing keys and its
//! own decision, checkpoint and seal keys) wrapped under the group's wrap key, in one file whose
//! manifest the checkpoint key signs.
//!
//! A backup is possible only where the operator chose, at provisioning, that keys may leave the
//! token wrapped (`SSHSIGN_KEY_EXPORT`, see [`KeyExport`]); keys made with `never` cannot leave
//! and the backup says which. The wrap key is an AES-256 key that the operator puts into every
//! token of the group (`provision wrap-key`) and keeps offline; the backup file alone opens
//! nothing. Restoring brings each key back under its own `CKA_ID` and label, which is how the
//! store names keys, so the appliance's records resolve on the new token unchanged.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::hsm::{Hsm, KeyExport, ObjectId, WrappedKey, WrappedKind};
use crate::provision::{self, KeyRole};

/// The `format` of a backup file.
pub const FORMAT: &str = "sshsign-backup/1";
/// What the checkpoint key signs: this, then the manifest's canonical JSON. The prefix keeps a
/// manifest signature from ever reading as a signed note's.
const SIGNED_PREFIX: &[u8] = b"sshsign backup manifest v1\n";
/// The largest backup file read: a full YubiHSM is 256 keys, a software token a few thousand.
const MAX_FILE: u64 = 64 << 20;

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Hsm(#[from] crate::hsm::Error),
    #[error(transparent)]
    Provision(#[from] provision::Error),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("the backup file is not valid: {0}")]
    Invalid(String),
    #[error(
        "no wrap key is on the token: put the group's wrap key into it first with \
         `sshsign-server provision wrap-key`"
    )]
    NoWrapKey,
    #[error("the token holds {0} wrap keys; name the one to use with --wrap-key")]
    SeveralWrapKeys(usize),
    #[error("the backup's manifest signature does not verify under its checkpoint key")]
    Signature,
    #[error(
        "the backup was signed by the checkpoint key of audit log {found}, not of {expected} \
         (--expect-audit-key)"
    )]
    WrongAppliance { expected: String, found: String },
    #[error(
        "the key {id} ({label}) cannot leave the token: it was made while SSHSIGN_KEY_EXPORT was \
         never, so it can be neither backed up nor moved; nothing was written"
    )]
    KeyStaysIn { id: ObjectId, label: String },
    #[error(
        "a restored key has left a token once, so it cannot be held to SSHSIGN_KEY_EXPORT=never \
         (never extractable); restore with the choice the backup was made under ({backup:?})"
    )]
    RestoreUnderNever { backup: KeyExport },
    #[error("a different key with id {0} is already on the token; nothing of it was restored")]
    Conflict(ObjectId),
    #[error("the restored key {0} does not sign under its public key")]
    SelfTest(ObjectId),
}

/// One key in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKey {
    pub kind: WrappedKind,
    /// `CKA_ID`, hex.
    pub id: String,
    pub label: String,
    /// Ed25519 keys: the public key, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The key wrapped under the wrap key, hex; empty for a retired key, whose private half is
    /// gone and whose public half is kept so that what it signed stays checkable.
    pub wrapped: String,
}

/// A backup file: the manifest and the checkpoint key's signature over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFile {
    pub format: String,
    /// Unix seconds.
    pub created: i64,
    /// The audit log's verifier key (what clients pin): names the appliance.
    pub audit_key: String,
    /// The wrap key's `CKA_ID`, hex.
    pub wrap_key: String,
    /// The PKCS#11 mechanism, or the device's wrap format.
    pub mechanism: String,
    /// Whether the keys were made to leave under trusted wrap keys only.
    pub export: KeyExport,
    pub keys: Vec<FileKey>,
    /// Ed25519 by the checkpoint key over [`SIGNED_PREFIX`] and the rest's canonical JSON, hex.
    pub signature: String,
}

impl BackupFile {
    /// The bytes the checkpoint key signs.
    fn signed_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut body = serde_json::to_value(self).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(map) = body.as_object_mut() {
            map.remove("signature");
        }
        let canonical =
            crate::approval::canonical::to_vec(&body).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok([SIGNED_PREFIX, &canonical].concat())
    }

    /// The key that signed: the checkpoint key the audit key names, which must be one of the
    /// file's checkpoint keys (any generation).
    fn checkpoint_public_key(&self) -> Result<[u8; 32], Error> {
        let label = provision::manifest()?
            .into_iter()
            .find(|spec| spec.role == KeyRole::Checkpoint)
            .map(|spec| spec.label)
            .ok_or_else(|| Error::Invalid("no checkpoint key is listed".to_owned()))?;
        let (_, named) = crate::audit::note::parse_verifier_key(&self.audit_key)
            .map_err(|_| Error::Invalid("audit_key is not a verifier key".to_owned()))?;
        let generation_of = |l: &str| {
            l == label
                || l.strip_prefix(&label)
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|n| n.parse::<u32>().is_ok())
        };
        self.keys
            .iter()
            .filter(|k| k.kind == WrappedKind::Ed25519 && generation_of(&k.label))
            .map(public_key)
            .find(|k| k.as_ref().is_ok_and(|k| *k == named))
            .unwrap_or_else(|| {
                Err(Error::Invalid(format!(
                    "the checkpoint key its audit_key names is not among its {label} keys"
                )))
            })
    }
}

fn public_key(key: &FileKey) -> Result<[u8; 32], Error> {
    key.public_key
        .as_deref()
        .and_then(crate::hex::decode)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| Error::Invalid(format!("key {}: public_key is not 32 hex bytes", key.id)))
}

impl FileKey {
    fn to_wrapped(&self) -> Result<WrappedKey, Error> {
        let invalid = |what: &str| Error::Invalid(format!("key {}: {what}", self.id));
        Ok(WrappedKey {
            kind: self.kind,
            object_id: ObjectId::from_hex(&self.id).ok_or_else(|| invalid("id is not hex"))?,
            label: self.label.clone(),
            public_key: match self.kind {
                WrappedKind::Ed25519 => Some(public_key(self)?),
                WrappedKind::Seal => None,
            },
            wrapped: crate::hex::decode(&self.wrapped)
                .filter(|w| !w.is_empty() || self.kind == WrappedKind::Ed25519)
                .ok_or_else(|| invalid("wrapped is not hex"))?,
        })
    }
}

/// The wrap key to use: `chosen`, or the one the token holds.
fn wrap_key(hsm: &dyn Hsm, chosen: Option<&ObjectId>) -> Result<ObjectId, Error> {
    let held = hsm.wrap_keys()?;
    match chosen {
        Some(id) if held.contains(id) => Ok(id.clone()),
        Some(id) => Err(crate::hsm::Error::NoWrapKey(id.clone()).into()),
        None => match held.as_slice() {
            [] => Err(Error::NoWrapKey),
            [one] => Ok(one.clone()),
            several => Err(Error::SeveralWrapKeys(several.len())),
        },
    }
}

/// Wraps every key of the appliance under the group's wrap key and signs the manifest with the
/// checkpoint key.
pub fn backup(
    hsm: &dyn Hsm,
    export: KeyExport,
    mechanism: &str,
    chosen_wrap_key: Option<&ObjectId>,
    now: i64,
) -> Result<BackupFile, Error> {
    let wrap = wrap_key(hsm, chosen_wrap_key)?;
    let appliance = provision::appliance_keys(hsm.primary())?;
    let checkpoint = provision::active(&appliance, KeyRole::Checkpoint)
        .ok_or_else(|| Error::Invalid("the token has no checkpoint key".to_owned()))?;
    let mut keys = Vec::new();
    // Each appliance cosigns the shared audit log with a key of its own, which stays with it.
    for key in hsm
        .list()?
        .into_iter()
        .filter(|key| !provision::is_cosigner_label(&key.label))
    {
        let wrapped = match hsm.attributes(&key.object_id) {
            // Retired: the public half alone.
            Err(crate::hsm::Error::KeyNotFound(_)) => Vec::new(),
            Ok(attributes) if !attributes.extractable => {
                return Err(Error::KeyStaysIn {
                    id: key.object_id,
                    label: key.label,
                });
            }
            Ok(_) => hsm.wrap_key(&wrap, WrappedKind::Ed25519, &key.object_id)?,
            Err(e) => return Err(e.into()),
        };
        keys.push(FileKey {
            kind: WrappedKind::Ed25519,
            id: key.object_id.to_hex(),
            label: key.label,
            public_key: Some(crate::hex::encode(&key.public_key)),
            wrapped: crate::hex::encode(&wrapped),
        });
    }
    let seal = provision::seal_key(hsm.primary())?;
    let seal_label = provision::manifest()?
        .into_iter()
        .find(|spec| spec.role == KeyRole::Seal)
        .map(|spec| spec.label)
        .unwrap_or_default();
    keys.push(FileKey {
        kind: WrappedKind::Seal,
        id: seal.to_hex(),
        label: seal_label,
        public_key: None,
        wrapped: crate::hex::encode(&hsm.wrap_key(&wrap, WrappedKind::Seal, &seal)?),
    });
    let mut file = BackupFile {
        format: FORMAT.to_owned(),
        created: now,
        audit_key: provision::audit_verifier_key(&appliance).unwrap_or_default(),
        wrap_key: wrap.to_hex(),
        mechanism: mechanism.to_owned(),
        export,
        keys,
        signature: String::new(),
    };
    let signature = hsm
        .primary()
        .sign(&checkpoint.key.object_id, &file.signed_bytes()?)?;
    file.signature = crate::hex::encode(&signature);
    Ok(file)
}

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct RestoreReport {
    /// Keys brought into the token now.
    pub restored: usize,
    /// Keys that were already there (a restore can be run again after an interruption).
    pub present: usize,
    /// Ed25519 keys that signed a fresh challenge under their public key afterwards.
    pub verified: usize,
    pub audit_key: String,
}

/// Checks a backup's signature (and, given `expected_audit_key`, that it is this appliance's),
/// then brings every key into the token under the wrap key it names, protected as `export`
/// says; keys already on the token are left as they are, a different key under the same id is
/// refused. Every Ed25519 key then signs a fresh challenge that must verify.
pub fn restore(
    hsm: &dyn Hsm,
    file: &BackupFile,
    export: KeyExport,
    expected_audit_key: Option<&str>,
) -> Result<RestoreReport, Error> {
    if export == KeyExport::Never {
        return Err(Error::RestoreUnderNever {
            backup: file.export,
        });
    }
    let checked = check(file, expected_audit_key)?;
    let wrap = ObjectId::from_hex(&file.wrap_key)
        .ok_or_else(|| Error::Invalid("wrap_key is not hex".to_owned()))?;
    wrap_key(hsm, Some(&wrap))?;
    let mut report = RestoreReport {
        restored: 0,
        present: 0,
        verified: 0,
        audit_key: file.audit_key.clone(),
    };
    for key in &checked {
        let present = match key.kind {
            WrappedKind::Ed25519 if key.wrapped.is_empty() => hsm
                .find_by_label(&key.label)?
                .iter()
                .any(|k| k.object_id == key.object_id),
            WrappedKind::Ed25519 => match hsm.find(&key.object_id)? {
                Some(found) if Some(found.public_key) == key.public_key => true,
                Some(_) => return Err(Error::Conflict(key.object_id.clone())),
                None => false,
            },
            WrappedKind::Seal => hsm.find_seal_keys(&key.label)?.contains(&key.object_id),
        };
        if present {
            report.present += 1;
        } else {
            hsm.unwrap_key(&wrap, key, export)?;
            report.restored += 1;
        }
    }
    for key in &checked {
        let Some(public_key) = key.public_key.filter(|_| !key.wrapped.is_empty()) else {
            continue;
        };
        let mut challenge = [0u8; 32];
        hsm.random(&mut challenge)?;
        let message = [b"sshsign restore check ".as_slice(), &challenge].concat();
        let signature = hsm.sign(&key.object_id, &message)?;
        crate::sshsig::verify_ed25519(&public_key, &message, &signature)
            .map_err(|_| Error::SelfTest(key.object_id.clone()))?;
        report.verified += 1;
    }
    Ok(report)
}

/// The file's keys, once its format, signature and appliance check out.
fn check(file: &BackupFile, expected_audit_key: Option<&str>) -> Result<Vec<WrappedKey>, Error> {
    if file.format != FORMAT {
        return Err(Error::Invalid(format!(
            "format {:?}; this appliance reads {FORMAT}",
            file.format
        )));
    }
    if let Some(expected) = expected_audit_key
        && expected.trim() != file.audit_key
    {
        return Err(Error::WrongAppliance {
            expected: expected.trim().to_owned(),
            found: file.audit_key.clone(),
        });
    }
    let checkpoint = file.checkpoint_public_key()?;
    let signature = crate::hex::decode(&file.signature).ok_or(Error::Signature)?;
    crate::sshsig::verify_ed25519(&checkpoint, &file.signed_bytes()?, &signature)
        .map_err(|_| Error::Signature)?;
    // The audit key names the log by its checkpoint key: it must be the key that signed.
    if !audit_key_names(&file.audit_key, &checkpoint) {
        return Err(Error::Invalid(
            "audit_key does not name the checkpoint key that signed".to_owned(),
        ));
    }
    if let Some(key) = file
        .keys
        .iter()
        .find(|key| provision::is_cosigner_label(&key.label))
    {
        return Err(Error::Invalid(format!(
            "it holds {}, an appliance's own cosigner key, which stays with its token",
            key.label
        )));
    }
    file.keys.iter().map(FileKey::to_wrapped).collect()
}

/// Whether the audit verifier key `audit_key` is the checkpoint key `public_key`'s.
fn audit_key_names(audit_key: &str, public_key: &[u8; 32]) -> bool {
    audit_key.split_once('+').is_some_and(|(origin, _)| {
        crate::audit::note::verifier_key(origin, public_key) == audit_key
    })
}

/// Writes `file` to `path`, a new file with mode 0600, synced.
pub fn write(path: &Path, file: &BackupFile) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed = |e: std::io::Error| Error::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let text =
        serde_json::to_vec_pretty(&json!(file)).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    out.write_all(&text).map_err(failed)?;
    out.write_all(b"\n").map_err(failed)?;
    out.sync_all().map_err(failed)
}

/// Reads a backup file (at most 64 MiB).
pub fn read(path: &Path) -> Result<BackupFile, Error> {
    use std::io::Read as _;
    let failed = |reason: String| Error::File {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut text = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| failed(e.to_string()))?;
    if text.len() as u64 > MAX_FILE {
        return Err(failed(format!("larger than {MAX_FILE} bytes")));
    }
    serde_json::from_slice(&text).map_err(|e| Error::Invalid(e.to_string()))
}
