//! Users, their SSH keys, signing keys and authorizations.

use super::engine::{Span, TreeName, TxError};
use super::records::SigningKeyRecordV1;
use super::{
    AuthorizationRecord, Envelope, Error, Record, Result, SigningKeyRecord, SshKeyRecord, Store,
    UserRecord, index_key, owner_span,
};
use crate::policy::Terms;

/// The trees a user and their SSH keys are written to together.
const IDENTITY_TREES: [TreeName; 2] = [TreeName::Users, TreeName::SshKeys];

/// The trees a signing key and its first authorization are written to together.
const KEY_TREES: [TreeName; 6] = [
    TreeName::SigningKeys,
    TreeName::SigningKeysByOwner,
    TreeName::SigningKeysByPublic,
    TreeName::Authorizations,
    TreeName::AuthorizationsByKey,
    TreeName::AuthorizationsByGrantee,
];

impl Store {
    pub fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.get(TreeName::Users, user_id)
    }

    pub fn ssh_key(&self, fingerprint: &str) -> Result<Option<SshKeyRecord>> {
        self.get(TreeName::SshKeys, fingerprint)
    }

    /// Registers `ssh_key` for a new user `user`, unless the key is already registered, in which
    /// case the existing owner is returned and nothing is written (two first connections racing
    /// end with one user).
    pub fn register(&self, user: UserRecord, ssh_key: SshKeyRecord) -> Result<UserRecord> {
        let user_bytes = self.encode(&user.user_id, &user)?;
        let key_bytes = self.encode(&ssh_key.fingerprint, &ssh_key)?;
        let fingerprint = ssh_key.fingerprint.as_bytes();
        let existing = self.engine.transaction(&IDENTITY_TREES, |tx| {
            if let Some(existing) = tx.get(TreeName::SshKeys, fingerprint)? {
                return Ok(Some(existing));
            }
            tx.insert(TreeName::Users, user.user_id.as_bytes(), &user_bytes)?;
            tx.insert(TreeName::SshKeys, fingerprint, &key_bytes)?;
            Ok(None)
        })?;
        match existing {
            None => Ok(user),
            Some(existing) => {
                let existing: SshKeyRecord = self.decode(fingerprint, &existing)?;
                self.user(&existing.user_id)?.ok_or_else(|| Error::Corrupt {
                    kind: UserRecord::KIND,
                    key: existing.user_id,
                    reason: "an SSH key names a user that does not exist".to_owned(),
                })
            }
        }
    }

    /// Joins `ssh_key` to its user (`ssh_key.user_id`), in one transaction: refused with
    /// [`Error::Exists`] if the key already identifies someone.
    pub fn link_ssh_key(&self, ssh_key: &SshKeyRecord) -> Result<UserRecord> {
        let key_bytes = self.encode(&ssh_key.fingerprint, ssh_key)?;
        let user_id = ssh_key.user_id.as_str();
        let fingerprint = ssh_key.fingerprint.as_bytes();
        self.engine.transaction(&IDENTITY_TREES, |tx| {
            if tx.get(TreeName::SshKeys, fingerprint)?.is_some() {
                return Err(TxError::Abort(Error::Exists {
                    kind: SshKeyRecord::KIND,
                    key: ssh_key.fingerprint.clone(),
                }));
            }
            let Some(bytes) = tx.get(TreeName::Users, user_id.as_bytes())? else {
                return Err(TxError::Abort(Error::Missing {
                    kind: UserRecord::KIND,
                    key: user_id.to_owned(),
                }));
            };
            let mut user: UserRecord = self.decode(user_id.as_bytes(), &bytes)?;
            user.ssh_keys.push(ssh_key.fingerprint.clone());
            let user_bytes = self.encode(user_id, &user)?;
            tx.insert(TreeName::Users, user_id.as_bytes(), &user_bytes)?;
            tx.insert(TreeName::SshKeys, fingerprint, &key_bytes)?;
            Ok(user)
        })
    }

    /// Removes `fingerprint` from `user_id`'s keys, in one transaction; never the last one
    /// (`Ok(None)` then, and when the key is not theirs). The removed key's record is returned.
    pub fn unlink_ssh_key(&self, user_id: &str, fingerprint: &str) -> Result<Option<SshKeyRecord>> {
        self.engine.transaction(&IDENTITY_TREES, |tx| {
            let (Some(user_bytes), Some(key_bytes)) = (
                tx.get(TreeName::Users, user_id.as_bytes())?,
                tx.get(TreeName::SshKeys, fingerprint.as_bytes())?,
            ) else {
                return Ok(None);
            };
            let mut user: UserRecord = self.decode(user_id.as_bytes(), &user_bytes)?;
            let key: SshKeyRecord = self.decode(fingerprint.as_bytes(), &key_bytes)?;
            if key.user_id != user_id || user.ssh_keys.len() < 2 {
                return Ok(None);
            }
            user.ssh_keys.retain(|k| k != fingerprint);
            let user_bytes = self.encode(user_id, &user)?;
            tx.insert(TreeName::Users, user_id.as_bytes(), &user_bytes)?;
            tx.remove(TreeName::SshKeys, fingerprint.as_bytes())?;
            Ok(Some(key))
        })
    }

    /// Identities registered (a count over the tree: for start-up).
    pub fn count_users(&self) -> Result<usize> {
        self.engine.count(TreeName::Users, &Span::all())
    }

    /// Signing keys not revoked, across all owners (a scan: for start-up).
    pub fn count_live_signing_keys(&self) -> Result<usize> {
        let keys: Vec<SigningKeyRecord> = self.every(TreeName::SigningKeys, &Span::all())?;
        Ok(keys.iter().filter(|k| k.revoked_at.is_none()).count())
    }

    pub fn signing_key(&self, key_id: &str) -> Result<Option<SigningKeyRecord>> {
        self.get(TreeName::SigningKeys, key_id)
    }

    /// The signing key with this public key, if the appliance made it.
    pub fn signing_key_by_public(&self, public_key: &[u8; 32]) -> Result<Option<SigningKeyRecord>> {
        match self.engine.get(TreeName::SigningKeysByPublic, public_key)? {
            Some(key_id) => self.signing_key(&String::from_utf8_lossy(&key_id)),
            None => Ok(None),
        }
    }

    /// Every signing key `owner` holds, in the order they were created.
    pub fn signing_keys_of(&self, owner: &str) -> Result<Vec<SigningKeyRecord>> {
        self.indexed(TreeName::SigningKeysByOwner, TreeName::SigningKeys, owner)
    }

    /// One page of [`Store::signing_keys_of`], and how many `owner` holds in all.
    pub fn signing_keys_page(
        &self,
        owner: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<SigningKeyRecord>, Option<usize>)> {
        self.indexed_page(
            TreeName::SigningKeysByOwner,
            TreeName::SigningKeys,
            owner,
            from,
            limit,
        )
    }

    pub fn signing_keys_count(&self, owner: &str) -> Result<usize> {
        self.index_len(TreeName::SigningKeysByOwner, owner)
    }

    /// Adds a new signing key with its first authorization, and their indexes, in one
    /// transaction.
    pub fn insert_signing_key(
        &self,
        record: &SigningKeyRecord,
        authorization: &AuthorizationRecord,
    ) -> Result<()> {
        let public = record.public_key_bytes().ok_or_else(|| Error::Corrupt {
            kind: SigningKeyRecord::KIND,
            key: record.key_id.clone(),
            reason: "public key is not 32 bytes of hex".to_owned(),
        })?;
        let key_bytes = self.encode(&record.key_id, record)?;
        let auth_bytes = self.encode(&authorization.authorization_id, authorization)?;
        let (key_seq, auth_seq) = (self.engine.sequence()?, self.engine.sequence()?);
        let key_id = record.key_id.as_bytes();
        let az = authorization.authorization_id.as_bytes();
        self.engine.transaction(&KEY_TREES, |tx| {
            if tx.get(TreeName::SigningKeys, key_id)?.is_some() {
                return Err(TxError::Abort(Error::Exists {
                    kind: SigningKeyRecord::KIND,
                    key: record.key_id.clone(),
                }));
            }
            tx.insert(TreeName::SigningKeys, key_id, &key_bytes)?;
            let by_owner = index_key(&record.owner, key_seq);
            tx.insert(TreeName::SigningKeysByOwner, &by_owner, key_id)?;
            tx.insert(TreeName::SigningKeysByPublic, &public, key_id)?;
            tx.insert(TreeName::Authorizations, az, &auth_bytes)?;
            let by_key = index_key(&record.key_id, auth_seq);
            tx.insert(TreeName::AuthorizationsByKey, &by_key, az)?;
            let by_grantee = index_key(&authorization.grantee, auth_seq);
            tx.insert(TreeName::AuthorizationsByGrantee, &by_grantee, az)?;
            Ok(())
        })
    }

    /// Notes that `key_id`'s token object may need destroying, until [`Store::drop_token_chore`].
    pub fn put_token_chore(&self, key_id: &str) -> Result<()> {
        self.engine
            .insert(TreeName::TokenChores, key_id.as_bytes(), &[])
    }

    pub fn drop_token_chore(&self, key_id: &str) -> Result<()> {
        self.engine
            .remove(TreeName::TokenChores, key_id.as_bytes())
            .map(drop)
    }

    /// The key ids whose token objects may need destroying.
    pub fn token_chores(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        self.engine
            .walk(TreeName::TokenChores, &Span::all(), |key, _| {
                found.push(String::from_utf8_lossy(&key).into_owned());
                Ok(())
            })?;
        Ok(found)
    }

    /// The index entry under `owner` that names `value`.
    pub(super) fn entry_naming(
        &self,
        index: TreeName,
        owner: &str,
        value: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let mut found = None;
        self.engine.walk(index, &owner_span(owner), |key, named| {
            if found.is_none() && named == value {
                found = Some(key);
            }
            Ok(())
        })?;
        Ok(found)
    }

    /// Undoes [`Store::insert_signing_key`]: the key, its first authorization, and their
    /// index entries, in one transaction (for a creation that failed after the insert).
    pub fn remove_signing_key(
        &self,
        record: &SigningKeyRecord,
        authorization: &AuthorizationRecord,
    ) -> Result<()> {
        let key_id = record.key_id.as_bytes();
        let az = authorization.authorization_id.as_bytes();
        let entries = [
            (
                TreeName::SigningKeysByOwner,
                self.entry_naming(TreeName::SigningKeysByOwner, &record.owner, key_id)?,
            ),
            (
                TreeName::AuthorizationsByKey,
                self.entry_naming(TreeName::AuthorizationsByKey, &record.key_id, az)?,
            ),
            (
                TreeName::AuthorizationsByGrantee,
                self.entry_naming(
                    TreeName::AuthorizationsByGrantee,
                    &authorization.grantee,
                    az,
                )?,
            ),
        ];
        let public = record.public_key_bytes().unwrap_or_default();
        self.engine.transaction(&KEY_TREES, |tx| {
            tx.remove(TreeName::SigningKeys, key_id)?;
            tx.remove(TreeName::SigningKeysByPublic, &public)?;
            tx.remove(TreeName::Authorizations, az)?;
            for (tree, entry) in &entries {
                if let Some(entry) = entry {
                    tx.remove(*tree, entry)?;
                }
            }
            Ok(())
        })
    }

    /// Revokes a key; refuses with `already` if it was revoked before.
    pub fn revoke_signing_key<E: From<Error>>(
        &self,
        key_id: &str,
        at: i64,
        already: impl Fn() -> E,
    ) -> Result<SigningKeyRecord, E> {
        self.modify(
            TreeName::SigningKeys,
            key_id,
            |mut key: SigningKeyRecord| {
                if key.revoked_at.is_some() {
                    return Err(already());
                }
                key.revoked_at = Some(at);
                Ok(key)
            },
        )
    }

    pub fn authorization(&self, authorization_id: &str) -> Result<Option<AuthorizationRecord>> {
        self.get(TreeName::Authorizations, authorization_id)
    }

    /// Every authorization of a key, in the order granted.
    pub fn authorizations_of_key(&self, key_id: &str) -> Result<Vec<AuthorizationRecord>> {
        self.indexed(
            TreeName::AuthorizationsByKey,
            TreeName::Authorizations,
            key_id,
        )
    }

    /// One page of [`Store::authorizations_of_grantee`].
    pub fn authorizations_of_grantee_page(
        &self,
        user_id: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<AuthorizationRecord>, Option<usize>)> {
        self.indexed_page(
            TreeName::AuthorizationsByGrantee,
            TreeName::Authorizations,
            user_id,
            from,
            limit,
        )
    }

    /// Every authorization granted to a user, in the order granted.
    pub fn authorizations_of_grantee(&self, user_id: &str) -> Result<Vec<AuthorizationRecord>> {
        self.indexed(
            TreeName::AuthorizationsByGrantee,
            TreeName::Authorizations,
            user_id,
        )
    }

    /// Revokes one authorization; refuses with `already` if it was revoked before.
    pub fn revoke_authorization<E: From<Error>>(
        &self,
        authorization_id: &str,
        at: i64,
        already: impl Fn() -> E,
    ) -> Result<AuthorizationRecord, E> {
        self.modify(
            TreeName::Authorizations,
            authorization_id,
            |mut auth: AuthorizationRecord| {
                if auth.revoked_at.is_some() {
                    return Err(already());
                }
                auth.revoked_at = Some(at);
                Ok(auth)
            },
        )
    }
}

impl Store {
    /// Rewrites signing keys stored by version 1 (terms inside the key) as version 2 keys with one
    /// authorization each, granted by and to the owner. Constraints that no longer validate are
    /// not dropped: that authorization is stored revoked, so the key signs nothing it did not
    /// before. Returns the keys migrated.
    pub fn migrate_v1_keys(&self, now: i64) -> Result<Vec<String>> {
        let mut migrated = Vec::new();
        let mut stored = Vec::new();
        self.engine
            .walk(TreeName::SigningKeys, &Span::all(), |key, raw| {
                stored.push((key, raw));
                Ok(())
            })?;
        for (key, raw) in stored {
            let envelope = match serde_json::from_slice::<Envelope>(&raw) {
                Ok(envelope) if envelope.v == 1 => envelope,
                _ => continue,
            };
            let corrupt = |reason: String| Error::Corrupt {
                kind: SigningKeyRecord::KIND,
                key: String::from_utf8_lossy(&key).into_owned(),
                reason,
            };
            let old: SigningKeyRecordV1 = serde_json::from_value(envelope.r.unwrap_or_default())
                .map_err(|e| corrupt(e.to_string()))?;
            let constraints = crate::policy::constraint::parse_constraints(&old.constraints);
            let (constraints, revoked_at) = match constraints {
                Ok(constraints) => (constraints, None),
                Err(reason) => {
                    tracing::warn!(key = %old.key_id, %reason, "v1 constraints no longer validate; the migrated authorization is revoked");
                    (Default::default(), Some(now))
                }
            };
            let suffix = old.key_id.strip_prefix("ak_").unwrap_or(&old.key_id);
            let authorization = AuthorizationRecord {
                authorization_id: format!("az_{suffix}"),
                key_id: old.key_id.clone(),
                grantee: old.owner.clone(),
                principal: old.owner.clone(),
                terms: Terms {
                    scopes: old.scopes,
                    tier: old.tier,
                    require_signature: old.require_signature,
                    constraints,
                    hard_rules: Default::default(),
                    soft_rules: Default::default(),
                    expires_at: old.expires_at,
                },
                created_at: old.created_at,
                revoked_at,
            };
            let record = SigningKeyRecord {
                key_id: old.key_id.clone(),
                owner: old.owner,
                token_object_id: old.token_object_id,
                public_key: old.public_key,
                created_at: old.created_at,
                revoked_at: old.revoked_at,
            };
            let key_bytes = self.encode(&record.key_id, &record)?;
            let auth_bytes = self.encode(&authorization.authorization_id, &authorization)?;
            let sequence = self.engine.sequence()?;
            let az = authorization.authorization_id.as_bytes();
            let trees = [
                TreeName::SigningKeys,
                TreeName::Authorizations,
                TreeName::AuthorizationsByKey,
                TreeName::AuthorizationsByGrantee,
            ];
            let moved = self.engine.transaction(&trees, |tx| {
                if tx.get(TreeName::SigningKeys, &key)?.as_ref() != Some(&raw) {
                    return Ok(false);
                }
                tx.insert(TreeName::SigningKeys, &key, &key_bytes)?;
                tx.insert(TreeName::Authorizations, az, &auth_bytes)?;
                let by_key = index_key(&record.key_id, sequence);
                tx.insert(TreeName::AuthorizationsByKey, &by_key, az)?;
                let by_grantee = index_key(&authorization.grantee, sequence);
                tx.insert(TreeName::AuthorizationsByGrantee, &by_grantee, az)?;
                Ok(true)
            })?;
            if moved {
                migrated.push(record.key_id);
            }
        }
        if !migrated.is_empty() {
            self.engine.flush_now()?;
        }
        Ok(migrated)
    }
}
