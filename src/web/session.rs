//! Login sessions for the approval pages: a random cookie (HttpOnly, SameSite=Strict, Secure over
//! HTTPS) naming a user for an hour. The store keeps only the cookie's SHA-256, so a person who
//! logs in on one appliance is logged in on every appliance sharing the store, and a restart
//! logs nobody out. Expired sessions are removed by the appliance's sweep.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

use crate::store::{LoginSession, Store};

/// The cookie's name.
pub const COOKIE: &str = "sshsign_session";
/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The sessions in the store.
#[derive(Debug, Clone)]
pub struct Sessions {
    store: Store,
}

fn digest(secret: &SecretString) -> String {
    crate::hex::encode(&Sha256::digest(secret.expose_secret().as_bytes()))
}

impl Sessions {
    pub fn new(store: Store) -> Self {
        Sessions { store }
    }

    /// Starts a session for `user_id` under `secret` (random, from the token), durably.
    pub async fn start(
        &self,
        secret: &SecretString,
        user_id: &str,
    ) -> Result<(), crate::store::Error> {
        let now = crate::time::now();
        let lifetime = i64::try_from(LIFETIME.as_secs()).unwrap_or(i64::MAX);
        self.store.create(&LoginSession {
            cookie_sha256: digest(secret),
            user_id: user_id.to_owned(),
            created_at: now,
            expires_at: now.saturating_add(lifetime),
        })?;
        self.store.flush().await
    }

    /// The live session the request's cookie names, if there is one. A store that cannot
    /// answer means no session.
    fn session(&self, headers: &HeaderMap) -> Option<LoginSession> {
        let secret = cookie(headers)?;
        match self.store.read::<LoginSession>(&digest(&secret)) {
            Ok(session) => session.filter(|s| s.expires_at > crate::time::now()),
            Err(error) => {
                tracing::error!(%error, "reading a login session");
                None
            }
        }
    }

    /// The user of the session the request's cookie names, if it is live.
    pub fn user(&self, headers: &HeaderMap) -> Option<String> {
        self.session(headers).map(|s| s.user_id)
    }

    /// Ends the session the request's cookie names.
    pub fn end(&self, headers: &HeaderMap) -> Result<(), crate::store::Error> {
        match self.session(headers) {
            Some(session) => self.store.remove_login_session(&session),
            None => Ok(()),
        }
    }
}

/// The session cookie's value, if the request carries one.
fn cookie(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| SecretString::from(value.to_owned()))
}

/// `Set-Cookie` for a new session (or, with `None`, one that clears it).
pub fn set_cookie(secret: Option<&SecretString>, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    let text = match secret {
        Some(secret) => format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            secret.expose_secret(),
            LIFETIME.as_secs()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_is_found_by_its_cookie_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sessions = Sessions::new(store.clone());
        let secret = SecretString::from("s3cret".to_owned());
        sessions.start(&secret, "usr_a").await.unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; sshsign_session=s3cret"),
        );
        assert_eq!(sessions.user(&headers).as_deref(), Some("usr_a"));
        // Another handle on the same store (another appliance) knows it too.
        assert_eq!(
            Sessions::new(store.clone()).user(&headers).as_deref(),
            Some("usr_a")
        );
        let mut other = HeaderMap::new();
        other.insert(
            header::COOKIE,
            HeaderValue::from_static("sshsign_session=guess"),
        );
        assert_eq!(sessions.user(&other), None);
        sessions.end(&headers).unwrap();
        assert_eq!(sessions.user(&headers), None);
        let set = set_cookie(Some(&secret), true);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
    }

    #[tokio::test]
    async fn expired_sessions_count_for_nothing_and_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let sessions = Sessions::new(store.clone());
        let now = crate::time::now();
        store
            .create(&LoginSession {
                cookie_sha256: digest(&SecretString::from("old".to_owned())),
                user_id: "usr_a".into(),
                created_at: now - 7200,
                expires_at: now - 3600,
            })
            .unwrap();
        sessions
            .start(&SecretString::from("new".to_owned()), "usr_b")
            .await
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("sshsign_session=old"),
        );
        assert_eq!(sessions.user(&headers), None);
        assert_eq!(store.remove_expired_login_sessions(now, 100).unwrap(), 1);
        assert_eq!(store.remove_expired_login_sessions(now, 100).unwrap(), 0);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("sshsign_session=new"),
        );
        assert_eq!(sessions.user(&headers).as_deref(), Some("usr_b"));
    }
}
