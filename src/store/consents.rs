//! Whom each user accepts requests and grants from.

use super::engine::{Span, TreeName};
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
        self.engine
            .insert(TreeName::Consents, key.as_bytes(), &bytes)
    }

    /// Whether `user` accepts requests and grants from `from`.
    pub fn consent(&self, user: &str, from: &str) -> Result<Option<ConsentRecord>> {
        self.get(TreeName::Consents, &consent_key(user, from))
    }

    /// Everyone `user` accepts requests and grants from.
    pub fn consents_of(&self, user: &str) -> Result<Vec<ConsentRecord>> {
        let prefix = consent_key(user, "");
        self.every(TreeName::Consents, &Span::prefix(prefix.as_bytes()))
    }

    /// Withdraws a consent; says whether there was one.
    pub fn remove_consent(&self, user: &str, from: &str) -> Result<bool> {
        self.engine
            .remove(TreeName::Consents, consent_key(user, from).as_bytes())
    }
}
