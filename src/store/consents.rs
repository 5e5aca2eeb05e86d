//! Whom each user accepts requests and grants from.

use super::records::ConsentRecord;
use super::{Result, Store};

/// `user ‖ 0 ‖ from`: a user's consents, listed by prefix.
fn consent_key(user: &str, from: &str) -> String {
    format!("{user}\0{from}")
}

impl Store {
    /// Records (or renews) a consent.
    pub fn put_consent(&self, consent: &ConsentRecord) -> Result<()> {
        let key = consent_key(&consent.user_id, &consent.from);
        let bytes = self.encode(&key, consent)?;
        self.consents.insert(key.as_bytes(), bytes)?;
        Ok(())
    }

    /// Whether `user` accepts requests and grants from `from`.
    pub fn consent(&self, user: &str, from: &str) -> Result<Option<ConsentRecord>> {
        self.get(&self.consents, &consent_key(user, from))
    }

    /// Everyone `user` accepts requests and grants from.
    pub fn consents_of(&self, user: &str) -> Result<Vec<ConsentRecord>> {
        let prefix = consent_key(user, "");
        self.consents
            .scan_prefix(prefix.as_bytes())
            .map(|item| {
                let (key, bytes) = item?;
                self.decode(&key, &bytes)
            })
            .collect()
    }

    /// Withdraws a consent; says whether there was one.
    pub fn remove_consent(&self, user: &str, from: &str) -> Result<bool> {
        Ok(self
            .consents
            .remove(consent_key(user, from).as_bytes())?
            .is_some())
    }
}
