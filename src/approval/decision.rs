//! Signed decisions: the SignedApproval seed's payload, written as RFC 8785 canonical JSON and
//! signed by the token's decision key, so anyone holding the appliance's JWKS can check, offline,
//! who decided what and how.
//!
//! ```json
//! {"action":"9f2c…","action_sha256":"9f2c…64 hex","approver":"1b0e…",
//!  "approver_sha256":"1b0e…64 hex","decision":"approved","did":"dec_…","exp":1709086400,
//!  "metadata_sha256":"…64 hex","method":"passkey","nonce":"…32 hex…","request_sha256":"…64 hex",
//!  "rid":"apr_…","ts":1709000000,"v":2}
//! ```
//!
//! Version 2 keeps the seed's version 1 fields, so a SignedApproval-style verifier still reads
//! them, and adds what they lack. `approver` and `action` are the first 16 hex digits (64 bits)
//! of the SHA-256 of the user id and of the action text; 64 bits are not collision resistant (a
//! pair of actions sharing them takes minutes on a laptop, so a requester could have one approved
//! and claim the other). Version 2 binds the full SHA-256 of the action, of the metadata (as RFC
//! 8785 canonical JSON, numbers exact), of the approver's user id, and of the whole request as
//! the approver saw it ([`request_document`]): action, metadata, requester, approvers,
//! threshold, methods and times. A verifier who knows the action can match it; nobody else
//! learns it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::canonical;

/// How the approver proved themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// The payload version this build signs.
pub const VERSION: u32 = 2;

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
    /// Version 2: the full SHA-256 of the whole request as the approver saw it, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// Version 2: the full SHA-256 of the action text, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_sha256: Option<String>,
    /// Version 2: the full SHA-256 of the metadata as canonical JSON, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_sha256: Option<String>,
    /// Version 2: the full SHA-256 of the approver's user id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver_sha256: Option<String>,
}

/// The first 16 hex digits of SHA-256: how version 1 names the approver and the action.
pub fn short_hash(text: &str) -> String {
    crate::hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The whole SHA-256 of `text`, hex: how version 2 binds it.
pub fn full_hash(text: &str) -> String {
    crate::hex::encode(&Sha256::digest(text.as_bytes()))
}

/// The SHA-256 of a metadata object as RFC 8785 canonical JSON, every number exact, hex.
pub fn metadata_sha256(metadata: &serde_json::Map<String, Value>) -> String {
    // With every number canonical JSON cannot hold written as text, writing it cannot fail.
    let exact = canonical::with_exact_numbers(&Value::Object(metadata.clone()));
    crate::hex::encode(&Sha256::digest(
        canonical::to_vec(&exact).unwrap_or_default(),
    ))
}

/// What an approver is shown of a request, as version 2 binds it: everything that decides what
/// the approval means.
#[derive(Debug, Clone, Serialize)]
pub struct RequestDocument<'a> {
    pub id: &'a str,
    pub action: &'a str,
    pub metadata: &'a serde_json::Map<String, Value>,
    /// The user who asked, and the credential they asked with: an API key's id, or the
    /// fingerprint (`SHA256:…`) of the SSH key a request made over SSH came from.
    pub requester: &'a str,
    pub api_key: &'a str,
    pub approvers: &'a [String],
    pub threshold: u32,
    pub methods: &'a [Method],
    pub created_at: i64,
    pub expires_at: i64,
}

/// The canonical JSON of a request document.
pub fn request_document(request: &RequestDocument<'_>) -> Vec<u8> {
    // Strings, integers and exact-number metadata: serialising and writing cannot fail.
    let value = serde_json::to_value(request).unwrap_or_default();
    canonical::to_vec(&canonical::with_exact_numbers(&value)).unwrap_or_default()
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
    #[error("payload version {0} has the wrong fields for its version")]
    Version(u32),
}

/// A JWK for an Ed25519 public key.
pub fn jwk(kid: &str, public_key: &[u8; 32]) -> Jwk {
    Jwk {
        kty: Kty::Okp,
        crv: Crv::Ed25519,
        x: URL_SAFE_NO_PAD.encode(public_key),
        kid: kid.to_owned(),
        key_use: KeyUse::Sig,
        alg: Alg::EdDsa,
    }
}

/// An Ed25519 public key as a JWK (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: Kty,
    pub crv: Crv,
    /// The public key, base64url.
    pub x: String,
    /// The key's id, as decisions name it.
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: KeyUse,
    pub alg: Alg,
}

/// The JWK fields that have one value here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Kty {
    #[serde(rename = "OKP")]
    Okp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Crv {
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum KeyUse {
    #[serde(rename = "sig")]
    Sig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Alg {
    #[serde(rename = "EdDSA")]
    EdDsa,
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
    let bindings = [
        &payload.request_sha256,
        &payload.action_sha256,
        &payload.metadata_sha256,
        &payload.approver_sha256,
    ];
    let well_formed = match payload.v {
        1 => bindings.iter().all(|b| b.is_none()),
        2 => bindings
            .iter()
            .all(|b| b.as_ref().is_some_and(|h| h.len() == 64)),
        _ => false,
    };
    if !well_formed {
        return Err(DecisionError::Version(payload.v));
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
            request_sha256: None,
            action_sha256: None,
            metadata_sha256: None,
            approver_sha256: None,
        }
    }

    fn payload_v2() -> DecisionPayload {
        DecisionPayload {
            v: 2,
            request_sha256: Some(full_hash("the request")),
            action_sha256: Some(full_hash("Deploy v2.1.0 to production")),
            metadata_sha256: Some(metadata_sha256(&serde_json::Map::new())),
            approver_sha256: Some(full_hash("usr_alice")),
            ..payload()
        }
    }

    #[test]
    fn version_2_keeps_the_seed_fields_and_binds_full_hashes() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let keys = vec![("k1".to_owned(), key.verifying_key().to_bytes())];
        let checked = verify(&signed(&key, &payload_v2()), &keys).unwrap();
        assert_eq!(
            checked.payload.action,
            short_hash("Deploy v2.1.0 to production")
        );
        assert_eq!(checked.payload.action_sha256.unwrap().len(), 64);
        // A version that does not match its fields is refused, signed or not.
        let half = DecisionPayload {
            request_sha256: None,
            ..payload_v2()
        };
        assert_eq!(
            verify(&signed(&key, &half), &keys),
            Err(DecisionError::Version(2))
        );
        let v1_with_more = DecisionPayload {
            v: 1,
            ..payload_v2()
        };
        assert_eq!(
            verify(&signed(&key, &v1_with_more), &keys),
            Err(DecisionError::Version(1))
        );
        // Metadata hashes are of canonical JSON with exact numbers: order and spacing do not
        // matter, a digit does.
        let a: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"b": 0.150000000000000001, "a": 1}"#).unwrap();
        let b: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"a":1,"b":0.150000000000000001}"#).unwrap();
        let c: serde_json::Map<String, Value> =
            serde_json::from_str(r#"{"a":1,"b":0.15}"#).unwrap();
        assert_eq!(metadata_sha256(&a), metadata_sha256(&b));
        assert_ne!(metadata_sha256(&a), metadata_sha256(&c));
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
