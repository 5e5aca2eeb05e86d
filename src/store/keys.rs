//! Users, their SSH keys, signing keys and authorizations.

use sled::Transactional as _;
use sled::Tree;
use sled::transaction::ConflictableTransactionError;

use super::records::SigningKeyRecordV1;
use super::{
    AuthorizationRecord, Envelope, Error, Record, Result, SigningKeyRecord, SshKeyRecord, Store,
    UserRecord, index_key, settle,
};
use crate::policy::Terms;

impl Store {
    pub fn user(&self, user_id: &str) -> Result<Option<UserRecord>> {
        self.get(&self.users, user_id)
    }

    pub fn ssh_key(&self, fingerprint: &str) -> Result<Option<SshKeyRecord>> {
        self.get(&self.ssh_keys, fingerprint)
    }

    /// Registers `ssh_key` for a new user `user`, unless the key is already registered, in which
    /// case the existing owner is returned and nothing is written (two first connections racing
    /// end with one user).
    pub fn register(&self, user: UserRecord, ssh_key: SshKeyRecord) -> Result<UserRecord> {
        let user_bytes = self.encode(&user.user_id, &user)?;
        let key_bytes = self.encode(&ssh_key.fingerprint, &ssh_key)?;
        let outcome = (&self.users, &self.ssh_keys).transaction(|(users, ssh_keys)| {
            if let Some(existing) = ssh_keys.get(ssh_key.fingerprint.as_bytes())? {
                return Ok(Err(existing));
            }
            users.insert(user.user_id.as_bytes(), user_bytes.clone())?;
            ssh_keys.insert(ssh_key.fingerprint.as_bytes(), key_bytes.clone())?;
            Ok(Ok(()))
        });
        match settle(outcome)? {
            Ok(()) => Ok(user),
            Err(existing) => {
                let existing: SshKeyRecord =
                    self.decode(ssh_key.fingerprint.as_bytes(), &existing)?;
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
        let user_id = ssh_key.user_id.clone();
        let outcome = (&self.users, &self.ssh_keys).transaction(|(users, ssh_keys)| {
            if ssh_keys.get(ssh_key.fingerprint.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(Error::Exists {
                    kind: SshKeyRecord::KIND,
                    key: ssh_key.fingerprint.clone(),
                }));
            }
            let Some(bytes) = users.get(user_id.as_bytes())? else {
                return Err(ConflictableTransactionError::Abort(Error::Missing {
                    kind: UserRecord::KIND,
                    key: user_id.clone(),
                }));
            };
            let mut user: UserRecord = self
                .decode(user_id.as_bytes(), &bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            user.ssh_keys.push(ssh_key.fingerprint.clone());
            let user_bytes = self
                .encode(&user_id, &user)
                .map_err(ConflictableTransactionError::Abort)?;
            users.insert(user_id.as_bytes(), user_bytes)?;
            ssh_keys.insert(ssh_key.fingerprint.as_bytes(), key_bytes.clone())?;
            Ok(user)
        });
        settle(outcome)
    }

    /// Removes `fingerprint` from `user_id`'s keys, in one transaction; never the last one
    /// (`Ok(None)` then, and when the key is not theirs). The removed key's record is returned.
    pub fn unlink_ssh_key(&self, user_id: &str, fingerprint: &str) -> Result<Option<SshKeyRecord>> {
        let outcome = (&self.users, &self.ssh_keys).transaction(|(users, ssh_keys)| {
            let (Some(user_bytes), Some(key_bytes)) = (
                users.get(user_id.as_bytes())?,
                ssh_keys.get(fingerprint.as_bytes())?,
            ) else {
                return Ok(None);
            };
            let mut user: UserRecord = self
                .decode(user_id.as_bytes(), &user_bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            let key: SshKeyRecord = self
                .decode(fingerprint.as_bytes(), &key_bytes)
                .map_err(ConflictableTransactionError::Abort)?;
            if key.user_id != user_id || user.ssh_keys.len() < 2 {
                return Ok(None);
            }
            user.ssh_keys.retain(|k| k != fingerprint);
            let user_bytes = self
                .encode(user_id, &user)
                .map_err(ConflictableTransactionError::Abort)?;
            users.insert(user_id.as_bytes(), user_bytes)?;
            ssh_keys.remove(fingerprint.as_bytes())?;
            Ok(Some(key))
        });
        settle(outcome)
    }

    /// Identities registered (a scan: for start-up).
    pub fn count_users(&self) -> usize {
        self.users.len()
    }

    /// Signing keys not revoked, across all owners (a scan: for start-up).
    pub fn count_live_signing_keys(&self) -> Result<usize> {
        let mut live = 0;
        for item in self.signing_keys.iter() {
            let (key, bytes) = item?;
            let record: SigningKeyRecord = self.decode(&key, &bytes)?;
            live += usize::from(record.revoked_at.is_none());
        }
        Ok(live)
    }

    pub fn signing_key(&self, key_id: &str) -> Result<Option<SigningKeyRecord>> {
        self.get(&self.signing_keys, key_id)
    }

    /// The signing key with this public key, if the appliance made it.
    pub fn signing_key_by_public(&self, public_key: &[u8; 32]) -> Result<Option<SigningKeyRecord>> {
        match self.keys_by_public.get(public_key)? {
            Some(key_id) => self.signing_key(&String::from_utf8_lossy(&key_id)),
            None => Ok(None),
        }
    }

    /// Every signing key `owner` holds, in the order they were created.
    pub fn signing_keys_of(&self, owner: &str) -> Result<Vec<SigningKeyRecord>> {
        self.indexed(&self.keys_by_owner, &self.signing_keys, owner)
    }

    /// One page of [`Store::signing_keys_of`], and how many `owner` holds in all.
    pub fn signing_keys_page(
        &self,
        owner: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<SigningKeyRecord>, Option<usize>)> {
        self.indexed_page(&self.keys_by_owner, &self.signing_keys, owner, from, limit)
    }

    pub fn signing_keys_count(&self, owner: &str) -> usize {
        self.index_len(&self.keys_by_owner, owner)
    }

    /// The trees a signing key and its first authorization are written to together.
    fn key_trees(&self) -> (&Tree, &Tree, &Tree, &Tree, &Tree, &Tree) {
        (
            &self.signing_keys,
            &self.keys_by_owner,
            &self.keys_by_public,
            &self.authorizations,
            &self.authorizations_by_key,
            &self.authorizations_by_grantee,
        )
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
        let (key_seq, auth_seq) = (self.db.generate_id()?, self.db.generate_id()?);
        let trees = self.key_trees();
        let outcome =
            trees.transaction(|(keys, by_owner, by_public, auths, by_key, by_grantee)| {
                if keys.get(record.key_id.as_bytes())?.is_some() {
                    return Err(ConflictableTransactionError::Abort(Error::Exists {
                        kind: SigningKeyRecord::KIND,
                        key: record.key_id.clone(),
                    }));
                }
                keys.insert(record.key_id.as_bytes(), key_bytes.clone())?;
                by_owner.insert(index_key(&record.owner, key_seq), record.key_id.as_bytes())?;
                by_public.insert(&public[..], record.key_id.as_bytes())?;
                let az = authorization.authorization_id.as_bytes();
                auths.insert(az, auth_bytes.clone())?;
                by_key.insert(index_key(&record.key_id, auth_seq), az)?;
                by_grantee.insert(index_key(&authorization.grantee, auth_seq), az)?;
                Ok(())
            });
        settle(outcome)
    }

    /// Notes that `key_id`'s token object may need destroying, until [`Store::drop_token_chore`].
    pub fn put_token_chore(&self, key_id: &str) -> Result<()> {
        self.token_chores.insert(key_id.as_bytes(), &[])?;
        Ok(())
    }

    pub fn drop_token_chore(&self, key_id: &str) -> Result<()> {
        self.token_chores.remove(key_id.as_bytes())?;
        Ok(())
    }

    /// The key ids whose token objects may need destroying.
    pub fn token_chores(&self) -> Result<Vec<String>> {
        self.token_chores
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
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
        // The index entry under `owner` that names `value`.
        let entry_naming = |tree: &sled::Tree, owner: &str, value: &[u8]| -> Result<_> {
            let prefix = [owner.as_bytes(), &[0]].concat();
            for item in tree.scan_prefix(prefix) {
                let (key, named) = item?;
                if named == value {
                    return Ok(Some(key));
                }
            }
            Ok(None)
        };
        let by_owner = entry_naming(&self.keys_by_owner, &record.owner, key_id)?;
        let by_key = entry_naming(&self.authorizations_by_key, &record.key_id, az)?;
        let by_grantee = entry_naming(&self.authorizations_by_grantee, &authorization.grantee, az)?;
        let trees = self.key_trees();
        let public = record.public_key_bytes().unwrap_or_default();
        let outcome = trees.transaction(|(keys, owners, publics, auths, by_keys, grantees)| {
            keys.remove(key_id)?;
            publics.remove(&public[..])?;
            auths.remove(az)?;
            for (tree, entry) in [
                (owners, &by_owner),
                (by_keys, &by_key),
                (grantees, &by_grantee),
            ] {
                if let Some(entry) = entry {
                    tree.remove(entry)?;
                }
            }
            Ok(())
        });
        settle(outcome)
    }

    /// Revokes a key; refuses with `already` if it was revoked before.
    pub fn revoke_signing_key<E: From<Error>>(
        &self,
        key_id: &str,
        at: i64,
        already: impl Fn() -> E,
    ) -> Result<SigningKeyRecord, E> {
        self.modify(&self.signing_keys, key_id, |mut key: SigningKeyRecord| {
            if key.revoked_at.is_some() {
                return Err(already());
            }
            key.revoked_at = Some(at);
            Ok(key)
        })
    }

    pub fn authorization(&self, authorization_id: &str) -> Result<Option<AuthorizationRecord>> {
        self.get(&self.authorizations, authorization_id)
    }

    /// Every authorization of a key, in the order granted.
    pub fn authorizations_of_key(&self, key_id: &str) -> Result<Vec<AuthorizationRecord>> {
        self.indexed(&self.authorizations_by_key, &self.authorizations, key_id)
    }

    /// Every authorization granted to a user, in the order granted.
    /// One page of [`Store::authorizations_of_grantee`].
    pub fn authorizations_of_grantee_page(
        &self,
        user_id: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<AuthorizationRecord>, Option<usize>)> {
        self.indexed_page(
            &self.authorizations_by_grantee,
            &self.authorizations,
            user_id,
            from,
            limit,
        )
    }

    pub fn authorizations_of_grantee(&self, user_id: &str) -> Result<Vec<AuthorizationRecord>> {
        self.indexed(
            &self.authorizations_by_grantee,
            &self.authorizations,
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
            &self.authorizations,
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
        for item in self.signing_keys.iter() {
            let (key, raw) = item?;
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
            let sequence = self.db.generate_id()?;
            let trees = (
                &self.signing_keys,
                &self.authorizations,
                &self.authorizations_by_key,
                &self.authorizations_by_grantee,
            );
            let outcome = trees.transaction(|(keys, auths, by_key, by_grantee)| {
                if keys.get(&key)?.as_ref() != Some(&raw) {
                    return Ok(false);
                }
                let az = authorization.authorization_id.as_bytes();
                keys.insert(&key, key_bytes.clone())?;
                auths.insert(az, auth_bytes.clone())?;
                by_key.insert(index_key(&record.key_id, sequence), az)?;
                by_grantee.insert(index_key(&authorization.grantee, sequence), az)?;
                Ok(true)
            });
            if settle(outcome)? {
                migrated.push(record.key_id);
            }
        }
        if !migrated.is_empty() {
            self.db.flush()?;
        }
        Ok(migrated)
    }
}
