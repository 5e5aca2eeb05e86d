//! Offline checks anyone can run with nothing but the appliance's published keys: a signed
//! approval decision, and a co-signed request's evidence envelope with its SSHSIG. They trust
//! nothing the appliance says beyond what its keys signed, and each returns a typed report of
//! what it checked, or why it refused; the `sshsign` client only reads files and prints.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::approval::decision::{
    self, DecisionPayload, Method, SignedDecision, Verdict, full_hash, metadata_sha256, short_hash,
};
use crate::approval::envelope::{self, Signer};

/// Why a check refused what it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// The appliance keys a verifier trusts.
#[derive(Debug, Clone)]
pub enum TrustedKeys {
    /// The appliance's `/.well-known/jwks.json`: its keys by `kid`.
    Jwks(Vec<(String, [u8; 32])>),
    /// One decision key, whatever `kid` a document names.
    One([u8; 32]),
}

impl TrustedKeys {
    pub fn from_jwks(jwks: &Value) -> Result<Self, Refusal> {
        decision::jwks_keys(jwks)
            .map(TrustedKeys::Jwks)
            .map_err(|e| Refusal(e.to_string()))
    }

    /// An `ssh-ed25519 AAAA...` line, or base64 of the 32 bytes.
    pub fn from_public_key(text: &str) -> Result<Self, Refusal> {
        crate::pubkey::parse_ed25519(text)
            .or_else(|| BASE64.decode(text).ok().and_then(|b| b.try_into().ok()))
            .map(TrustedKeys::One)
            .ok_or_else(|| {
                Refusal("the public key is an ssh-ed25519 line or base64 of 32 bytes".into())
            })
    }

    /// The keys to check a signature naming `kid` against.
    fn for_kid(&self, kid: &str) -> Vec<(String, [u8; 32])> {
        match self {
            TrustedKeys::Jwks(keys) => keys.clone(),
            TrustedKeys::One(key) => vec![(kid.to_owned(), *key)],
        }
    }
}

/// What a decision must be bound to. A check names the request, or the action with its
/// metadata (or both); the approver and the method when it cares.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub request_id: Option<String>,
    /// The action text and the metadata the approver was shown.
    pub action: Option<(String, Map<String, Value>)>,
    pub approver: Option<String>,
    pub method: Option<Method>,
}

/// A decision that passed, and each check it passed.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalReport {
    pub verified: bool,
    pub checked: Vec<String>,
    pub payload: DecisionPayload,
}

/// The signed decision in a saved document: a `/verify` reply (the document itself), a status
/// reply (its `decision`), or a webhook body (`data.decision`).
fn signed_decision(document: &Value) -> Option<SignedDecision> {
    [
        document,
        &document["decision"],
        &document["data"]["decision"],
    ]
    .into_iter()
    .find(|d| d.get("signed_payload").is_some())
    .and_then(|d| serde_json::from_value(d.clone()).ok())
}

/// Checks a signed decision. It passes only for an approval by a trusted key, made before the
/// request expired, bound to what `expected` names.
pub fn approval(
    document: &Value,
    keys: &TrustedKeys,
    expected: &Expected,
) -> Result<ApprovalReport, Refusal> {
    let refuse = |why: String| Refusal(format!("decision refused: {why}"));
    if expected.request_id.is_none() && expected.action.is_none() {
        return Err(refuse(
            "name the request, or the action and its metadata, it must be bound to".into(),
        ));
    }
    let Some(signed) = signed_decision(document) else {
        // A status reply for a request that never got a decision says why.
        return Err(match document["status"].as_str() {
            Some(status @ ("pending" | "expired")) => {
                refuse(format!("the request is {status}; it has no decision"))
            }
            _ => Refusal("the document holds no signed decision".into()),
        });
    };
    let checked = decision::verify(&signed, &keys.for_kid(&signed.key_id))
        .map_err(|e| refuse(e.to_string()))?;
    let payload = checked.payload;
    let mut checks = vec![
        "the payload is canonical JSON (RFC 8785)".to_owned(),
        format!(
            "the Ed25519 signature verifies under key {}",
            checked.key_id
        ),
    ];
    if payload.decision != Verdict::Approved {
        return Err(refuse("the decision is rejected, not an approval".into()));
    }
    checks.push("it is an approval".into());
    if payload.ts > payload.exp {
        return Err(refuse("it was made after the request expired".into()));
    }
    checks.push("it was made before the request expired".into());
    if let Some(id) = &expected.request_id {
        if &payload.rid != id {
            return Err(refuse(format!(
                "it is for request {}, not {id}",
                payload.rid
            )));
        }
        checks.push(format!("it is for request {id}"));
    }
    if let Some((action, metadata)) = &expected.action {
        let (Some(action_sha256), Some(bound_metadata)) =
            (&payload.action_sha256, &payload.metadata_sha256)
        else {
            return Err(refuse(
                "it is a version 1 decision, which binds only 64 bits of the action; check it \
                 by its request id"
                    .into(),
            ));
        };
        if *action_sha256 != full_hash(action) {
            return Err(refuse("it is for another action".into()));
        }
        checks.push("the action matches (SHA-256)".into());
        if *bound_metadata != metadata_sha256(metadata) {
            return Err(refuse("it is for other metadata".into()));
        }
        checks.push("the metadata matches (SHA-256 of canonical JSON)".into());
    }
    if let Some(method) = expected.method {
        if payload.method != method {
            return Err(refuse(format!(
                "it was made by {}, not {}",
                payload.method.as_str(),
                method.as_str()
            )));
        }
        checks.push(format!(
            "the approver proved themselves by {}",
            method.as_str()
        ));
    }
    if let Some(approver) = &expected.approver {
        let same = match &payload.approver_sha256 {
            Some(full) => *full == full_hash(approver),
            None => payload.approver == short_hash(approver),
        };
        if !same {
            return Err(refuse("another approver made it".into()));
        }
        checks.push(format!("{approver} made it"));
    }
    Ok(ApprovalReport {
        verified: true,
        checked: checks,
        payload,
    })
}

/// An evidence envelope that passed, what it says, and each check it passed.
#[derive(Debug, Clone, Serialize)]
pub struct EnvelopeReport {
    pub verified: bool,
    pub checked: Vec<String>,
    pub pending_id: String,
    pub signer: Signer,
    pub signer_ip: String,
    pub captured_at: i64,
    pub decision: String,
    pub payload_hash: String,
    pub image_bytes: usize,
    /// The drawn signature, PNG.
    #[serde(skip)]
    pub image: Vec<u8>,
}

/// Checks a `get-envelope` reply for a request approved with a drawn signature: the envelope's
/// exact bytes against its SHA-256, the image against its hash, the token's seal against a
/// trusted key, and the document's SSHSIG against the envelope's payload hash (and, when given,
/// that `signer_key` made it).
pub fn envelope(
    reply: &Value,
    keys: &TrustedKeys,
    signer_key: Option<&[u8; 32]>,
) -> Result<EnvelopeReport, Refusal> {
    let refused = |why: String| Refusal(format!("envelope refused: {why}"));
    let evidence = &reply["evidence"];
    let text = |value: &Value, what: &str| -> Result<String, Refusal> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| refused(format!("the reply has no {what}")))
    };
    let bytes = BASE64
        .decode(text(&evidence["envelope"], "evidence.envelope")?)
        .map_err(|_| refused("evidence.envelope is not base64".into()))?;
    let seal = BASE64
        .decode(text(&evidence["seal"], "evidence.seal (not sealed yet?)")?)
        .map_err(|_| refused("evidence.seal is not base64".into()))?;
    let key_id = text(&evidence["key_id"], "evidence.key_id")?;
    let stated = text(&evidence["sha256"], "evidence.sha256")?;
    let (_, public_key) = keys
        .for_kid(&key_id)
        .into_iter()
        .find(|(kid, _)| *kid == key_id)
        .ok_or_else(|| refused(format!("no key with kid {key_id:?} in the key set")))?;
    let opened = envelope::verify(&bytes, &stated, &seal, &key_id, &public_key)
        .map_err(|e| refused(e.to_string()))?;
    let mut checks = vec![
        "the envelope is canonical JSON (RFC 8785) and its SHA-256 matches".to_owned(),
        "the signature image matches image_hash".to_owned(),
        format!("the token's seal verifies under key {key_id}"),
    ];
    if reply["pending_id"].as_str() != Some(opened.pending_id.as_str()) {
        return Err(refused("the envelope is for another request".into()));
    }
    // The document's signature, made from the same hash the envelope binds.
    let armored = text(&reply["signature"], "signature (the document's SSHSIG)")?;
    let sshsig = crate::sshsig::SshSig::from_armored(&armored)
        .map_err(|e| refused(format!("the SSHSIG: {e}")))?;
    let digest: [u8; 64] = opened
        .payload_hash
        .strip_prefix("sha512:")
        .and_then(crate::hex::decode)
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| refused("payload_hash is not sha512:<hex>".into()))?;
    let namespace = opened.scope["namespace"].as_str().unwrap_or_default();
    sshsig
        .verify_sha512_digest(namespace, &digest)
        .map_err(|e| refused(format!("the SSHSIG: {e}")))?;
    checks.push(format!(
        "the document's SSHSIG ({namespace}) verifies over payload_hash, by {}",
        crate::pubkey::fingerprint(sshsig.public_key())
    ));
    if let Some(expected) = signer_key {
        if expected != sshsig.public_key() {
            return Err(refused("the document was signed by another key".into()));
        }
        checks.push("the document's key is the expected one".into());
    }
    let image = opened.image().unwrap_or_default();
    Ok(EnvelopeReport {
        verified: true,
        checked: checks,
        image_bytes: image.len(),
        image,
        pending_id: opened.pending_id,
        signer: opened.signer,
        signer_ip: opened.signer_ip,
        captured_at: opened.captured_at,
        decision: opened.decision,
        payload_hash: opened.payload_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde_json::json;

    const ACTION: &str = "Deploy release to staging";

    fn payload(decision: Verdict, ts: i64) -> DecisionPayload {
        let metadata: Map<String, Value> = serde_json::from_str(r#"{"ticket": 7}"#).unwrap();
        DecisionPayload {
            v: 2,
            rid: "apr_one".into(),
            did: "dec_one".into(),
            approver: short_hash("usr_alice"),
            action: short_hash(ACTION),
            decision,
            method: Method::Passkey,
            ts,
            exp: 2_000,
            nonce: "00112233445566778899aabbccddeeff".into(),
            request_sha256: Some(full_hash("the request")),
            action_sha256: Some(full_hash(ACTION)),
            metadata_sha256: Some(metadata_sha256(&metadata)),
            approver_sha256: Some(full_hash("usr_alice")),
        }
    }

    /// A status reply holding `payload` signed by the key from `seed`.
    fn status_reply(seed: u8, payload: &DecisionPayload) -> Value {
        let bytes = payload.canonical();
        let key = SigningKey::from_bytes(&[seed; 32]);
        json!({"status": "approved", "decision": {
            "signed_payload": BASE64.encode(&bytes),
            "signature": BASE64.encode(key.sign(&bytes).to_bytes()),
            "key_id": "k1",
        }})
    }

    fn keys() -> TrustedKeys {
        TrustedKeys::One(SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes())
    }

    fn by_request(id: &str) -> Expected {
        Expected {
            request_id: Some(id.into()),
            ..Expected::default()
        }
    }

    #[test]
    fn an_unexpired_approval_bound_to_what_is_named_passes() {
        let reply = status_reply(9, &payload(Verdict::Approved, 1_000));
        let report = approval(&reply, &keys(), &by_request("apr_one")).unwrap();
        assert_eq!(report.checked.len(), 5, "{:?}", report.checked);
        let metadata = serde_json::from_str(r#"{ "ticket": 7 }"#).unwrap();
        let expected = Expected {
            action: Some((ACTION.into(), metadata)),
            approver: Some("usr_alice".into()),
            method: Some(Method::Passkey),
            ..Expected::default()
        };
        assert_eq!(
            approval(&reply, &keys(), &expected).unwrap().checked.len(),
            8
        );
    }

    #[test]
    fn what_is_not_an_approval_of_what_is_named_is_refused() {
        let refused =
            |reply: &Value, expected: &Expected| approval(reply, &keys(), expected).unwrap_err().0;
        let good = status_reply(9, &payload(Verdict::Approved, 1_000));
        let rejected = status_reply(9, &payload(Verdict::Rejected, 1_000));
        assert!(refused(&rejected, &by_request("apr_one")).contains("rejected"));
        let late = status_reply(9, &payload(Verdict::Approved, 3_000));
        assert!(refused(&late, &by_request("apr_one")).contains("expired"));
        assert!(refused(&good, &by_request("apr_two")).contains("not apr_two"));
        let other_key = status_reply(8, &payload(Verdict::Approved, 1_000));
        assert!(refused(&other_key, &by_request("apr_one")).contains("does not verify"));
        assert!(refused(&good, &Expected::default()).contains("name the request"));
        let other_action = Expected {
            action: Some(("Deploy release to production".into(), Map::new())),
            ..Expected::default()
        };
        assert!(refused(&good, &other_action).contains("another action"));
        let other_metadata = Expected {
            action: Some((ACTION.into(), Map::new())),
            ..Expected::default()
        };
        assert!(refused(&good, &other_metadata).contains("other metadata"));
        let expired = json!({"status": "expired", "decision": null});
        assert!(refused(&expired, &by_request("apr_one")).contains("is expired"));
        // A version 1 decision binds 64 bits of the action: only its request id is trusted.
        let v1 = DecisionPayload {
            v: 1,
            request_sha256: None,
            action_sha256: None,
            metadata_sha256: None,
            approver_sha256: None,
            ..payload(Verdict::Approved, 1_000)
        };
        let v1 = status_reply(9, &v1);
        assert!(approval(&v1, &keys(), &by_request("apr_one")).is_ok());
        let by_action = Expected {
            action: Some((ACTION.into(), Map::new())),
            ..Expected::default()
        };
        assert!(refused(&v1, &by_action).contains("version 1"));
    }
}
