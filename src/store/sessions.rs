//! Login sessions of the approval pages (declared in [`super::table`]).

use super::engine::{Span, TreeName};
use super::records::LoginSession;
use super::{Result, Store, expiry_key};

impl Store {
    /// Ends a session: its record and its place on the expiry watch.
    pub fn remove_login_session(&self, session: &LoginSession) -> Result<()> {
        let trees = [TreeName::LoginSessions, TreeName::LoginSessionsExpiring];
        self.engine.transaction(&trees, |tx| {
            tx.remove(TreeName::LoginSessions, session.cookie_sha256.as_bytes())?;
            tx.remove(
                TreeName::LoginSessionsExpiring,
                &expiry_key(session.expires_at, &session.cookie_sha256),
            )
        })
    }

    /// Removes up to `limit` sessions whose time is up by `now`; says how many.
    pub fn remove_expired_login_sessions(&self, now: i64, limit: usize) -> Result<usize> {
        let due = Span::below((now + 1).to_be_bytes().to_vec());
        let entries = self
            .engine
            .scan(TreeName::LoginSessionsExpiring, &due, 0, limit)?;
        for (at, digest) in &entries {
            self.engine.remove(TreeName::LoginSessions, digest)?;
            self.engine.remove(TreeName::LoginSessionsExpiring, at)?;
        }
        Ok(entries.len())
    }
}
