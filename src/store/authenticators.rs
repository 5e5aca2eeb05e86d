//! Authenticators (passkeys, TOTP) and the one-time links that enroll them.

use sled::Transactional as _;

use super::records::{AuthenticatorKind, AuthenticatorRecord, EnrollmentRecord};
use super::{Error, Result, Store, settle};

impl Store {
    /// The enrollment whose token hashes to `sha256` (hex).
    pub fn enrollment(&self, sha256: &str) -> Result<Option<EnrollmentRecord>> {
        self.get(&self.enrollments, sha256)
    }

    /// Changes an enrollment atomically (marking it used).
    pub fn update_enrollment<E: From<Error>>(
        &self,
        sha256: &str,
        change: impl FnMut(EnrollmentRecord) -> Result<EnrollmentRecord, E>,
    ) -> Result<EnrollmentRecord, E> {
        self.modify(&self.enrollments, sha256, change)
    }

    pub fn authenticator(&self, id: &str) -> Result<Option<AuthenticatorRecord>> {
        self.get(&self.authenticators, id)
    }

    /// The passkey registered with credential id `credential` (base64url).
    pub fn passkey_by_credential(&self, credential: &str) -> Result<Option<AuthenticatorRecord>> {
        match self.passkeys_by_credential.get(credential)? {
            Some(id) => self.authenticator(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Every authenticator of `user_id`, oldest first.
    pub fn authenticators_of(&self, user_id: &str) -> Result<Vec<AuthenticatorRecord>> {
        self.indexed(&self.authenticators_by_user, &self.authenticators, user_id)
    }

    /// Changes an authenticator atomically (counters, last use, TOTP steps).
    pub fn update_authenticator<E: From<Error>>(
        &self,
        id: &str,
        change: impl FnMut(AuthenticatorRecord) -> Result<AuthenticatorRecord, E>,
    ) -> Result<AuthenticatorRecord, E> {
        self.modify(&self.authenticators, id, change)
    }

    /// Removes an authenticator and its index entries.
    pub fn remove_authenticator(&self, record: &AuthenticatorRecord) -> Result<()> {
        let mut prefix = record.user_id.as_bytes().to_vec();
        prefix.push(0);
        let index_entry = self
            .authenticators_by_user
            .scan_prefix(&prefix)
            .find_map(|item| match item {
                Ok((key, id)) if id == record.id.as_bytes() => Some(Ok(key)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .transpose()?;
        let trees = (
            &self.authenticators,
            &self.authenticators_by_user,
            &self.passkeys_by_credential,
        );
        let outcome = trees.transaction(|(records, by_user, by_credential)| {
            records.remove(record.id.as_bytes())?;
            if let Some(key) = &index_entry {
                by_user.remove(key)?;
            }
            if let AuthenticatorKind::Passkey { credential_id, .. } = &record.kind {
                by_credential.remove(credential_id.as_bytes())?;
            }
            Ok(())
        });
        settle(outcome)
    }
}
