//! Durable state in sled: users, their SSH keys, and signing-key records.
//!
//! Trees and what they map:
//!
//! | tree | key | value |
//! |---|---|---|
//! | `users` | `user_id` | [`UserRecord`] |
//! | `ssh_keys` | SSH key fingerprint | [`SshKeyRecord`] |
//! | `signing_keys` | `key_id` | [`SigningKeyRecord`] |
//! | `signing_keys_by_owner` | `user_id` `\0` sequence number (u64, big-endian) | `key_id` |
//! | `signing_keys_by_public` | 32-byte public key | `key_id` |
//!
//! Writes that touch several trees run in one sled transaction. sled keeps writes in memory and
//! flushes them in the background; a caller whose reply depends on a write calls
//! [`Store::flush`] (an fsync) before replying. Nothing here is private key material.

pub mod records;

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional as _};
use sled::{Db, Tree};

pub use self::records::{KeyStatus, Record, SigningKeyRecord, SshKeyRecord, Tier, UserRecord};

/// Store failures. Internal detail for the log; users see a generic message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("{kind} record {key:?} is corrupt: {reason}")]
    Corrupt {
        kind: &'static str,
        key: String,
        reason: String,
    },
    #[error("{kind} record {key:?} has version {found}; this build reads version {supported}")]
    Version {
        kind: &'static str,
        key: String,
        found: u32,
        supported: u32,
    },
    #[error("{kind} {key:?} already exists")]
    Exists { kind: &'static str, key: String },
    #[error("{kind} {key:?} changed while it was being updated")]
    Conflict { kind: &'static str, key: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(serde::Serialize)]
struct EnvelopeOut<'a, R> {
    v: u32,
    r: &'a R,
}

#[derive(serde::Deserialize)]
struct EnvelopeIn {
    v: u32,
    r: serde_json::Value,
}

fn encode<R: Record>(record: &R) -> Vec<u8> {
    // Records are plain data (strings, numbers, maps with string keys): serialising cannot fail.
    serde_json::to_vec(&EnvelopeOut {
        v: R::VERSION,
        r: record,
    })
    .unwrap_or_default()
}

fn decode<R: Record>(key: &[u8], bytes: &[u8]) -> Result<R> {
    let key = String::from_utf8_lossy(key).into_owned();
    let corrupt = |reason: String| Error::Corrupt {
        kind: R::KIND,
        key: key.clone(),
        reason,
    };
    let envelope: EnvelopeIn = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if envelope.v != R::VERSION {
        return Err(Error::Version {
            kind: R::KIND,
            key,
            found: envelope.v,
            supported: R::VERSION,
        });
    }
    serde_json::from_value(envelope.r).map_err(|e| corrupt(e.to_string()))
}

/// `owner ‖ 0 ‖ sequence`: scanning an owner's prefix yields their keys in creation order.
fn owner_index_key(owner: &str, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + 9);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// Turns a transaction's outcome into ours.
fn settle<T>(outcome: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
    outcome.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Sled(e),
    })
}

/// The appliance's database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    users: Tree,
    ssh_keys: Tree,
    signing_keys: Tree,
    by_owner: Tree,
    by_public: Tree,
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Store {
            users: db.open_tree("users")?,
            ssh_keys: db.open_tree("ssh_keys")?,
            signing_keys: db.open_tree("signing_keys")?,
            by_owner: db.open_tree("signing_keys_by_owner")?,
            by_public: db.open_tree("signing_keys_by_public")?,
            db,
        })
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    fn get<R: Record>(tree: &Tree, key: &[u8]) -> Result<Option<R>> {
        tree.get(key)?.map(|bytes| decode(key, &bytes)).transpose()
    }

    pub fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        Self::get(&self.users, user_id.as_bytes())
    }

    pub fn ssh_key(&self, fingerprint: &str) -> Result<Option<SshKeyRecord>> {
        Self::get(&self.ssh_keys, fingerprint.as_bytes())
    }

    /// Registers `ssh_key` for a new user `user`, unless the key is already registered, in which
    /// case the existing owner is returned and nothing is written (two first connections racing
    /// end with one user).
    pub fn register(&self, user: UserRecord, ssh_key: SshKeyRecord) -> Result<UserRecord> {
        let outcome = (&self.users, &self.ssh_keys).transaction(|(users, ssh_keys)| {
            if let Some(existing) = ssh_keys.get(ssh_key.fingerprint.as_bytes())? {
                let existing: SshKeyRecord = decode(ssh_key.fingerprint.as_bytes(), &existing)
                    .map_err(ConflictableTransactionError::Abort)?;
                return Ok(Err(existing.user_id));
            }
            users.insert(user.user_id.as_bytes(), encode(&user))?;
            ssh_keys.insert(ssh_key.fingerprint.as_bytes(), encode(&ssh_key))?;
            Ok(Ok(user.clone()))
        });
        match settle(outcome)? {
            Ok(user) => Ok(user),
            Err(user_id) => self.user(&user_id)?.ok_or_else(|| Error::Corrupt {
                kind: UserRecord::KIND,
                key: user_id,
                reason: "an SSH key names a user that does not exist".to_owned(),
            }),
        }
    }

    pub fn signing_key(&self, key_id: &str) -> Result<Option<SigningKeyRecord>> {
        Self::get(&self.signing_keys, key_id.as_bytes())
    }

    /// The signing key with this public key, if the appliance made it.
    pub fn signing_key_by_public(&self, public_key: &[u8; 32]) -> Result<Option<SigningKeyRecord>> {
        match self.by_public.get(public_key)? {
            Some(key_id) => self.signing_key(&String::from_utf8_lossy(&key_id)),
            None => Ok(None),
        }
    }

    /// Every signing key `owner` holds, in the order they were created.
    pub fn signing_keys_of(&self, owner: &str) -> Result<Vec<SigningKeyRecord>> {
        let mut prefix = owner.as_bytes().to_vec();
        prefix.push(0);
        let mut keys = Vec::new();
        for entry in self.by_owner.scan_prefix(&prefix) {
            let (_, key_id) = entry?;
            if let Some(record) = self.signing_key(&String::from_utf8_lossy(&key_id))? {
                keys.push(record);
            }
        }
        Ok(keys)
    }

    /// Adds a new signing key and its indexes.
    pub fn insert_signing_key(&self, record: &SigningKeyRecord) -> Result<()> {
        let public = record.public_key_bytes().ok_or_else(|| Error::Corrupt {
            kind: SigningKeyRecord::KIND,
            key: record.key_id.clone(),
            reason: "public key is not 32 bytes of hex".to_owned(),
        })?;
        let sequence = self.db.generate_id()?;
        let outcome = (&self.signing_keys, &self.by_owner, &self.by_public).transaction(
            |(keys, by_owner, by_public)| {
                if keys.get(record.key_id.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(Error::Exists {
                        kind: SigningKeyRecord::KIND,
                        key: record.key_id.clone(),
                    }));
                }
                keys.insert(record.key_id.as_bytes(), encode(record))?;
                by_owner.insert(
                    owner_index_key(&record.owner, sequence),
                    record.key_id.as_bytes(),
                )?;
                by_public.insert(&public[..], record.key_id.as_bytes())?;
                Ok(())
            },
        );
        settle(outcome)
    }

    /// Replaces `before` with `after` (same key id), failing if the stored record is no longer
    /// `before`: two revocations racing cannot both win.
    pub fn update_signing_key(
        &self,
        before: &SigningKeyRecord,
        after: &SigningKeyRecord,
    ) -> Result<()> {
        let swapped = self.signing_keys.compare_and_swap(
            before.key_id.as_bytes(),
            Some(encode(before)),
            Some(encode(after)),
        )?;
        swapped.map_err(|_| Error::Conflict {
            kind: SigningKeyRecord::KIND,
            key: before.key_id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRecord {
        UserRecord {
            user_id: id.into(),
            created_at: 1,
            ssh_keys: vec![format!("SHA256:{id}")],
        }
    }

    fn ssh_key(fingerprint: &str, user_id: &str) -> SshKeyRecord {
        SshKeyRecord {
            fingerprint: fingerprint.into(),
            user_id: user_id.into(),
            public_key: "ssh-ed25519 AAAA".into(),
            registered_at: 1,
        }
    }

    fn signing_key(key_id: &str, owner: &str, byte: u8) -> SigningKeyRecord {
        SigningKeyRecord {
            key_id: key_id.into(),
            owner: owner.into(),
            token_object_id: "abcd".into(),
            public_key: crate::hex::encode(&[byte; 32]),
            scopes: vec!["git".into()],
            tier: Tier::Autonomous,
            require_signature: false,
            constraints: Default::default(),
            created_at: u8::MAX as i64 - byte as i64,
            expires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn registration_is_idempotent_per_ssh_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store
            .register(user("usr_a"), ssh_key("fp", "usr_a"))
            .unwrap();
        let second = store
            .register(user("usr_b"), ssh_key("fp", "usr_b"))
            .unwrap();
        assert_eq!(first, second);
        assert!(store.user("usr_b").unwrap().is_none());
    }

    #[test]
    fn signing_keys_are_indexed_by_owner_and_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .insert_signing_key(&signing_key("ak_1", "usr_a", 1))
            .unwrap();
        store
            .insert_signing_key(&signing_key("ak_2", "usr_a", 2))
            .unwrap();
        store
            .insert_signing_key(&signing_key("ak_3", "usr_b", 3))
            .unwrap();
        let ids: Vec<_> = store
            .signing_keys_of("usr_a")
            .unwrap()
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        assert_eq!(ids, ["ak_1", "ak_2"]);
        assert_eq!(
            store
                .signing_key_by_public(&[3; 32])
                .unwrap()
                .unwrap()
                .key_id,
            "ak_3"
        );
        assert!(matches!(
            store.insert_signing_key(&signing_key("ak_1", "usr_b", 9)),
            Err(Error::Exists { .. })
        ));
    }

    #[test]
    fn updates_are_compare_and_swap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = signing_key("ak_1", "usr_a", 1);
        store.insert_signing_key(&before).unwrap();
        let mut revoked = before.clone();
        revoked.revoked_at = Some(5);
        store.update_signing_key(&before, &revoked).unwrap();
        assert!(matches!(
            store.update_signing_key(&before, &revoked),
            Err(Error::Conflict { .. })
        ));
        assert_eq!(store.signing_key("ak_1").unwrap(), Some(revoked));
    }

    #[test]
    fn unknown_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .users
            .insert("usr_x", br#"{"v":99,"r":{}}"#.to_vec())
            .unwrap();
        assert!(matches!(
            store.user("usr_x"),
            Err(Error::Version { found: 99, .. })
        ));
    }
}
