//! Signed decisions: the SignedApproval seed's payload, written as RFC 8785 canonical JSON and
//! signed by the token's decision key, so anyone holding the appliance's JWKS can check, offline,
//! who decided what and how.
//!
//! ```json
//! {"action":"9f2c…","approver":"1b0e…","decision":"approved","did":"dec_…","exp":1709086400,
//!  "method":"passkey","nonce":"…32 hex…","rid":"apr_…","ts":1709000000,"v":1}
//! ```
//!
//! `approver` and `action` are the first 16 hex digits of the SHA-256 of the user id and of the
//! action text: a verifier who knows them can match them, nobody else learns them.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::canonical;

/// How the approver proved themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Passkey,
    Totp,
    Ssh,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Passkey => "passkey",
            Method::Totp => "totp",
            Method::Ssh => "ssh",
        }
    }
}

/// What was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// The signed payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionPayload {
    pub v: u32,
    pub rid: String,
    pub did: String,
    pub approver: String,
    pub action: String,
    pub decision: Verdict,
    pub method: Method,
    pub ts: i64,
    pub exp: i64,
    pub nonce: String,
}

/// The first 16 hex digits of SHA-256: how the payload names the approver and the action.
pub fn short_hash(text: &str) -> String {
    crate::hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

impl DecisionPayload {
    /// The bytes that are signed.
    pub fn canonical(&self) -> Vec<u8> {
        // The payload holds strings and integers only, so it always has a canonical form.
        serde_json::to_value(self)
            .ok()
            .and_then(|v| canonical::to_vec(&v).ok())
            .unwrap_or_default()
    }
}

/// A decision as published: the canonical payload, its signature and the key that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDecision {
    /// Base64 of the canonical JSON.
    pub signed_payload: String,
    /// Base64 of the Ed25519 signature.
    pub signature: String,
    /// The `kid` of the decision key in the JWKS.
    pub key_id: String,
}

/// What a verifier found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub payload: DecisionPayload,
    pub key_id: String,
}

/// Why a decision does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("the signed payload is not base64")]
    PayloadEncoding,
    #[error("the signed payload is not a decision: {0}")]
    Payload(String),
    #[error("the signed payload is not in canonical form (RFC 8785)")]
    NotCanonical,
    #[error("the signature is not a base64 Ed25519 signature")]
    SignatureEncoding,
    #[error("no key with kid {0:?} in the key set")]
    UnknownKey(String),
    #[error("the key set is not a JWKS of Ed25519 keys: {0}")]
    KeySet(String),
    #[error("the signature does not verify under key {0}")]
    BadSignature(String),
}

/// A JWK for an Ed25519 public key.
pub fn jwk(kid: &str, public_key: &[u8; 32]) -> Value {
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public_key),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
    })
}

/// The Ed25519 keys of a JWKS document, by `kid`.
pub fn jwks_keys(jwks: &Value) -> Result<Vec<(String, [u8; 32])>, DecisionError> {
    let keys = jwks["keys"]
        .as_array()
        .ok_or_else(|| DecisionError::KeySet("no \"keys\" array".into()))?;
    keys.iter()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .map(|k| {
            let kid = k["kid"].as_str().unwrap_or_default().to_owned();
            let x = URL_SAFE_NO_PAD
                .decode(k["x"].as_str().unwrap_or_default())
                .ok()
                .and_then(|x| <[u8; 32]>::try_from(x).ok())
                .ok_or_else(|| DecisionError::KeySet(format!("key {kid:?} has no 32-byte x")))?;
            Ok((kid, x))
        })
        .collect()
}

/// Verifies a decision against trusted keys: the payload must be canonical, the signature must
/// be by the named key, and the key must be one of `keys`.
pub fn verify(
    decision: &SignedDecision,
    keys: &[(String, [u8; 32])],
) -> Result<Checked, DecisionError> {
    let bytes = BASE64
        .decode(&decision.signed_payload)
        .map_err(|_| DecisionError::PayloadEncoding)?;
    let payload: DecisionPayload =
        serde_json::from_slice(&bytes).map_err(|e| DecisionError::Payload(e.to_string()))?;
    if payload.canonical() != bytes {
        return Err(DecisionError::NotCanonical);
    }
    let signature = BASE64
        .decode(&decision.signature)
        .map_err(|_| DecisionError::SignatureEncoding)?;
    let (_, public_key) = keys
        .iter()
        .find(|(kid, _)| *kid == decision.key_id)
        .ok_or_else(|| DecisionError::UnknownKey(decision.key_id.clone()))?;
    crate::sshsig::verify_ed25519(public_key, &bytes, &signature)
        .map_err(|_| DecisionError::BadSignature(decision.key_id.clone()))?;
    Ok(Checked {
        payload,
        key_id: decision.key_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn payload() -> DecisionPayload {
        DecisionPayload {
            v: 1,
            rid: "apr_1".into(),
            did: "dec_1".into(),
            approver: short_hash("usr_alice"),
            action: short_hash("Deploy v2.1.0 to production"),
            decision: Verdict::Approved,
            method: Method::Passkey,
            ts: 1_709_000_000,
            exp: 1_709_086_400,
            nonce: "00112233445566778899aabbccddeeff".into(),
        }
    }

    fn signed(key: &SigningKey, payload: &DecisionPayload) -> SignedDecision {
        let bytes = payload.canonical();
        SignedDecision {
            signed_payload: BASE64.encode(&bytes),
            signature: BASE64.encode(key.sign(&bytes).to_bytes()),
            key_id: "k1".into(),
        }
    }

    #[test]
    fn the_payload_is_canonical_with_the_seed_fields() {
        let text = String::from_utf8(payload().canonical()).unwrap();
        assert!(text.starts_with(r#"{"action":""#), "{text}");
        assert!(text.contains(
            r#""decision":"approved","did":"dec_1","exp":1709086400,"method":"passkey""#
        ));
        assert!(text.ends_with(r#""ts":1709000000,"v":1}"#), "{text}");
        assert_eq!(short_hash("usr_alice").len(), 16);
    }

    #[test]
    fn verification_catches_any_change() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let keys = vec![("k1".to_owned(), key.verifying_key().to_bytes())];
        let decision = signed(&key, &payload());
        let checked = verify(&decision, &keys).unwrap();
        assert_eq!(checked.payload, payload());

        // Every single character of the payload matters.
        let bytes = BASE64.decode(&decision.signed_payload).unwrap();
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            let forged = SignedDecision {
                signed_payload: BASE64.encode(changed),
                ..decision.clone()
            };
            assert!(verify(&forged, &keys).is_err(), "byte {i}");
        }
        let other = SigningKey::from_bytes(&[8; 32]);
        let by_other = signed(&other, &payload());
        assert!(matches!(
            verify(&by_other, &keys),
            Err(DecisionError::BadSignature(_))
        ));
        let unknown = SignedDecision {
            key_id: "k2".into(),
            ..decision.clone()
        };
        assert!(matches!(
            verify(&unknown, &keys),
            Err(DecisionError::UnknownKey(_))
        ));
        // Re-encoded with spaces: same content, not canonical, refused.
        let spaced = serde_json::to_vec_pretty(&payload()).unwrap();
        let spaced = SignedDecision {
            signed_payload: BASE64.encode(&spaced),
            signature: BASE64.encode(key.sign(&spaced).to_bytes()),
            key_id: "k1".into(),
        };
        assert_eq!(verify(&spaced, &keys), Err(DecisionError::NotCanonical));
    }

    #[test]
    fn jwks_round_trip() {
        let jwks = serde_json::json!({"keys": [jwk("k1", &[7; 32])]});
        assert_eq!(jwks_keys(&jwks).unwrap(), vec![("k1".to_owned(), [7; 32])]);
        assert!(
            jwks_keys(&serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}))
                .is_err()
        );
    }
}
