//! Outgoing webhooks, in the Standard Webhooks style with its asymmetric scheme: each POST
//! carries `webhook-id`, `webhook-timestamp` and `webhook-signature: v1a,<base64 Ed25519
//! signature>` over `id.timestamp.body`, made by the token's decision key. Receivers check it
//! with the key published as `whpk_…` (the same key as the JWKS's decision key).
//!
//! - [`ssrf`]: which destinations are refused;
//! - [`client`]: one checked POST.
//!
//! Deliveries are stored (sealed) before the first attempt and retried with exponential
//! backoff across restarts: 2xx delivers, 410 Gone stops for good, anything else (3xx
//! included: redirects are not followed) tries again, up to [`MAX_ATTEMPTS`].

pub mod client;
pub mod ssrf;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 12;
/// The longest wait between attempts.
const MAX_DELAY: Duration = Duration::from_secs(6 * 60 * 60);

/// What Standard Webhooks signs: `id.timestamp.body`.
pub fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// The public key as Standard Webhooks writes an asymmetric one.
pub fn public_key_text(public_key: &[u8; 32]) -> String {
    format!("whpk_{}", BASE64.encode(public_key))
}

/// Checks a `webhook-signature` header (space-separated `version,signature` pairs; any `v1a`
/// one that verifies will do), as a receiver would.
pub fn verify(public_key: &[u8; 32], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let content = signed_content(id, timestamp, body);
    header
        .split_whitespace()
        .filter_map(|pair| pair.split_once(','))
        .filter(|(version, _)| *version == "v1a")
        .filter_map(|(_, signature)| BASE64.decode(signature).ok())
        .any(|signature| crate::sshsig::verify_ed25519(public_key, &content, &signature).is_ok())
}

/// How long to wait after `attempts` failed attempts (`base`, doubling, at most six hours);
/// `None` once they are used up.
pub fn next_delay(attempts: u32, base: Duration) -> Option<Duration> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    Some(base.saturating_mul(factor).min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    #[test]
    fn a_receiver_checks_the_signature_over_id_timestamp_and_body() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let public = key.verifying_key().to_bytes();
        let body = br#"{"type":"approval.decided"}"#;
        let signature = key.sign(&signed_content("msg_1", 1_700_000_000, body));
        let header = format!("v1,bogus v1a,{}", BASE64.encode(signature.to_bytes()));
        assert!(verify(&public, "msg_1", 1_700_000_000, body, &header));
        assert!(!verify(&public, "msg_2", 1_700_000_000, body, &header));
        assert!(!verify(&public, "msg_1", 1_700_000_001, body, &header));
        assert!(!verify(&public, "msg_1", 1_700_000_000, b"{}", &header));
        assert!(public_key_text(&public).starts_with("whpk_"));
    }

    #[test]
    fn retries_back_off_and_end() {
        let base = Duration::from_secs(10);
        assert_eq!(next_delay(1, base), Some(Duration::from_secs(10)));
        assert_eq!(next_delay(2, base), Some(Duration::from_secs(20)));
        assert_eq!(next_delay(5, base), Some(Duration::from_secs(160)));
        assert_eq!(next_delay(11, base), Some(Duration::from_secs(10_240)));
        assert_eq!(next_delay(11, Duration::from_secs(60)), Some(MAX_DELAY));
        assert_eq!(next_delay(MAX_ATTEMPTS, base), None);
    }
}
