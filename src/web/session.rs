//! Login sessions for the approval pages: a random cookie (HttpOnly, SameSite=Strict, Secure over
//! HTTPS) naming a user for an hour. The server keeps only the cookie's SHA-256; sessions live in
//! memory, so a restart logs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};

/// The cookie's name.
pub const COOKIE: &str = "sshsign_session";
/// How long a session lasts.
pub const LIFETIME: Duration = Duration::from_secs(60 * 60);
/// Sessions held at once.
const MAX_SESSIONS: usize = 100_000;

#[derive(Debug)]
struct Session {
    user_id: String,
    expires: Instant,
}

#[derive(Debug, Default)]
pub struct Sessions {
    held: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Sessions {
    /// Starts a session for `user_id` under `secret` (random, from the token).
    pub fn start(&self, secret: &SecretString, user_id: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if held.len() >= MAX_SESSIONS {
            held.retain(|_, s| s.expires > now);
        }
        held.insert(
            digest(secret.expose_secret()),
            Session {
                user_id: user_id.to_owned(),
                expires: now + LIFETIME,
            },
        );
    }

    /// The user of the session the request's cookie names, if it is live.
    pub fn user(&self, headers: &HeaderMap) -> Option<String> {
        let secret = cookie(headers)?;
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&digest(secret.expose_secret()))
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.user_id.clone())
    }

    /// Ends the session the request's cookie names.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(secret) = cookie(headers) {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.remove(&digest(secret.expose_secret()));
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

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let sessions = Sessions::default();
        let secret = SecretString::from("s3cret".to_owned());
        sessions.start(&secret, "usr_a");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; sshsign_session=s3cret"),
        );
        assert_eq!(sessions.user(&headers).as_deref(), Some("usr_a"));
        let mut other = HeaderMap::new();
        other.insert(
            header::COOKIE,
            HeaderValue::from_static("sshsign_session=guess"),
        );
        assert_eq!(sessions.user(&other), None);
        sessions.end(&headers);
        assert_eq!(sessions.user(&headers), None);
        let set = set_cookie(Some(&secret), true);
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
    }
}
