//! Authenticators (passkeys, TOTP) and the one-time links that enroll them.

use super::engine::TreeName;
use super::records::{AuthenticatorKind, AuthenticatorRecord, EnrollmentRecord};
use super::{Error, Result, Store};

impl Store {
    /// The enrollment whose token hashes to `sha256` (hex).
    pub fn enrollment(&self, sha256: &str) -> Result<Option<EnrollmentRecord>> {
        self.get(TreeName::Enrollments, sha256)
    }

    /// Changes an enrollment atomically (marking it used).
    pub fn update_enrollment<E: From<Error>>(
        &self,
        sha256: &str,
        change: impl FnMut(EnrollmentRecord) -> Result<EnrollmentRecord, E>,
    ) -> Result<EnrollmentRecord, E> {
        self.modify(TreeName::Enrollments, sha256, change)
    }

    pub fn authenticator(&self, id: &str) -> Result<Option<AuthenticatorRecord>> {
        self.get(TreeName::Authenticators, id)
    }

    /// The passkey registered with credential id `credential` (base64url).
    pub fn passkey_by_credential(&self, credential: &str) -> Result<Option<AuthenticatorRecord>> {
        match self
            .engine
            .get(TreeName::PasskeysByCredential, credential.as_bytes())?
        {
            Some(id) => self.authenticator(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Every authenticator of `user_id`, oldest first.
    pub fn authenticators_of(&self, user_id: &str) -> Result<Vec<AuthenticatorRecord>> {
        self.indexed(
            TreeName::AuthenticatorsByUser,
            TreeName::Authenticators,
            user_id,
        )
    }

    /// Changes an authenticator atomically (counters, last use, TOTP steps).
    pub fn update_authenticator<E: From<Error>>(
        &self,
        id: &str,
        change: impl FnMut(AuthenticatorRecord) -> Result<AuthenticatorRecord, E>,
    ) -> Result<AuthenticatorRecord, E> {
        self.modify(TreeName::Authenticators, id, change)
    }

    /// Removes an authenticator and its index entries.
    pub fn remove_authenticator(&self, record: &AuthenticatorRecord) -> Result<()> {
        let index_entry = self.entry_naming(
            TreeName::AuthenticatorsByUser,
            &record.user_id,
            record.id.as_bytes(),
        )?;
        let trees = [
            TreeName::Authenticators,
            TreeName::AuthenticatorsByUser,
            TreeName::PasskeysByCredential,
        ];
        self.engine.transaction(&trees, |tx| {
            tx.remove(TreeName::Authenticators, record.id.as_bytes())?;
            if let Some(key) = &index_entry {
                tx.remove(TreeName::AuthenticatorsByUser, key)?;
            }
            if let AuthenticatorKind::Passkey { credential_id, .. } = &record.kind {
                tx.remove(TreeName::PasskeysByCredential, credential_id.as_bytes())?;
            }
            Ok(())
        })
    }
}
