//! Checkpoints as C2SP signed notes (`tlog-checkpoint`, `signed-note`).
//!
//! ```text
//! example.com/sshsign-audit
//! 1234
//! 2x1ZgsqkNrKmpBxE5cq3Q9Xs2fj0FqC9Ik8I+8c/qQ8=
//!
//! — example.com/sshsign-audit Az3grnLS0sbWV...
//! ```
//!
//! The body is origin, tree size and base64 root hash, one per line. A signature line is an em
//! dash, the key name, and base64 of the 4-byte key hash followed by the Ed25519 signature of the
//! body. The key hash is the first four bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`; a
//! verifier key is written `name+hex(key hash)+base64(0x01 ‖ public key)`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use super::merkle::Hash;

const ED25519_ALGORITHM: u8 = 0x01;
/// A cosigner's Ed25519 key, in key hashes and verifier keys (C2SP `tlog-cosignature`).
const COSIGNATURE_ALGORITHM: u8 = 0x04;
const DASH: &str = "\u{2014} ";

/// Note failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("malformed verifier key")]
    VerifierKey,
    #[error("the checkpoint is for origin {found:?}, not {expected:?}")]
    Origin { expected: String, found: String },
    #[error("the checkpoint carries no signature by {0}")]
    Unsigned(String),
    #[error("the checkpoint's signature does not verify")]
    BadSignature,
    #[error("the checkpoint carries no cosignature by {0}")]
    NotCosigned(String),
    #[error("{0}'s cosignature on the checkpoint does not verify")]
    BadCosignature(String),
}

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note body that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::Malformed("no origin"))?;
        let size = lines
            .next()
            .and_then(|l| (l.bytes().all(|b| b.is_ascii_digit()) && !l.is_empty()).then_some(l))
            .and_then(|l| l.parse().ok())
            .ok_or(NoteError::Malformed("bad size"))?;
        let root = lines
            .next()
            .and_then(|l| BASE64.decode(l).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Malformed("bad root hash"))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The key hash of a named Ed25519 key.
pub fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    typed_key_hash(name, ED25519_ALGORITHM, public_key)
}

/// The first four bytes of `SHA-256(name ‖ "\n" ‖ algorithm ‖ public key)`.
fn typed_key_hash(name: &str, algorithm: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([algorithm]);
    h.update(public_key);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// `name+hex(key hash)+base64(0x01 ‖ public key)`.
pub fn verifier_key(name: &str, public_key: &[u8; 32]) -> String {
    typed_verifier_key(name, ED25519_ALGORITHM, public_key)
}

fn typed_verifier_key(name: &str, algorithm: u8, public_key: &[u8; 32]) -> String {
    let mut key = vec![algorithm];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        crate::hex::encode(&typed_key_hash(name, algorithm, public_key)),
        BASE64.encode(key)
    )
}

/// Parses a verifier key into its name and public key, checking its key hash.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, [u8; 32]), NoteError> {
    parse_typed_verifier_key(vkey, ED25519_ALGORITHM)
}

/// Parses a verifier key of `algorithm` into its name and public key, checking its key hash.
fn parse_typed_verifier_key(vkey: &str, wanted: u8) -> Result<(String, [u8; 32]), NoteError> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::VerifierKey);
    };
    let key = BASE64.decode(key).map_err(|_| NoteError::VerifierKey)?;
    let Some((&algorithm, public)) = key.split_first() else {
        return Err(NoteError::VerifierKey);
    };
    let public: [u8; 32] = public.try_into().map_err(|_| NoteError::VerifierKey)?;
    if algorithm != wanted
        || !valid_key_name(name)
        || crate::hex::decode(hash).as_deref() != Some(&typed_key_hash(name, wanted, &public)[..])
    {
        return Err(NoteError::VerifierKey);
    }
    Ok((name.to_owned(), public))
}

/// Assembles a signed note from a body and one signature by `name`'s key.
pub fn signed_note(body: &str, name: &str, public_key: &[u8; 32], signature: &[u8; 64]) -> String {
    let mut blob = key_hash(name, public_key).to_vec();
    blob.extend_from_slice(signature);
    format!("{body}\n{DASH}{name} {}\n", BASE64.encode(blob))
}

/// Adds a signature line by `name`'s key to a signed note.
pub fn add_signature(
    note: &str,
    name: &str,
    public_key: &[u8; 32],
    signature: &[u8; 64],
) -> String {
    let mut blob = key_hash(name, public_key).to_vec();
    blob.extend_from_slice(signature);
    format!("{note}{DASH}{name} {}\n", BASE64.encode(blob))
}

/// Whether `name` can name a key: not empty, no white space, no `+` (C2SP `signed-note`).
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// `name+hex(key hash)+base64(0x04 ‖ public key)`: how a cosigner's key is written.
pub fn cosigner_key(name: &str, public_key: &[u8; 32]) -> String {
    typed_verifier_key(name, COSIGNATURE_ALGORITHM, public_key)
}

/// Parses a cosigner's verifier key into its name and public key, checking its key hash.
pub fn parse_cosigner_key(vkey: &str) -> Result<(String, [u8; 32]), NoteError> {
    parse_typed_verifier_key(vkey, COSIGNATURE_ALGORITHM)
}

/// What a cosigner signs over a checkpoint `body` at `time` (Unix seconds): the line
/// `cosignature/v1`, the line `time T`, then the body (C2SP `tlog-cosignature`).
pub fn cosigned_message(body: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{body}").into_bytes()
}

/// The body of a signed note: what comes before its blank line, with the final newline.
pub fn body_of(note: &str) -> Result<String, NoteError> {
    note.split_once("\n\n")
        .map(|(body, _)| format!("{body}\n"))
        .ok_or(NoteError::Malformed("no signature block"))
}

/// The cosignature line of `name`'s key, made at `time` over a note's body, to add after the
/// note's other signature lines.
pub fn cosignature_line(
    name: &str,
    public_key: &[u8; 32],
    time: u64,
    signature: &[u8; 64],
) -> String {
    let mut blob = typed_key_hash(name, COSIGNATURE_ALGORITHM, public_key).to_vec();
    blob.extend_from_slice(&time.to_be_bytes());
    blob.extend_from_slice(signature);
    format!("{DASH}{name} {}\n", BASE64.encode(blob))
}

/// The signature lines of a note, as `(key name, decoded blob)`.
fn signature_lines(note: &str) -> Result<Vec<(&str, Vec<u8>)>, NoteError> {
    let (_, signatures) = note
        .split_once("\n\n")
        .ok_or(NoteError::Malformed("no signature block"))?;
    signatures
        .lines()
        .map(|line| {
            let line = line
                .strip_prefix(DASH)
                .ok_or(NoteError::Malformed("bad signature line"))?;
            let (signer, blob) = line
                .split_once(' ')
                .ok_or(NoteError::Malformed("bad signature line"))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::Malformed("bad signature encoding"))?;
            Ok((signer, blob))
        })
        .collect()
}

/// Whether `note` carries a cosignature line by the cosigner `vkey` names (not checked).
pub fn has_cosignature(note: &str, vkey: &str) -> Result<bool, NoteError> {
    let (name, public) = parse_cosigner_key(vkey)?;
    let wanted = typed_key_hash(&name, COSIGNATURE_ALGORITHM, &public);
    Ok(signature_lines(note)?
        .iter()
        .any(|(signer, blob)| *signer == name && blob.len() == 76 && blob[..4] == wanted))
}

/// Verifies the cosignature of the cosigner `vkey` names on `note`; returns when it was made
/// (Unix seconds). A note without one is [`NoteError::NotCosigned`].
pub fn verify_cosignature(note: &str, vkey: &str) -> Result<u64, NoteError> {
    let (name, public) = parse_cosigner_key(vkey)?;
    let body = body_of(note)?;
    let wanted = typed_key_hash(&name, COSIGNATURE_ALGORITHM, &public);
    let mut made = None;
    for (signer, blob) in signature_lines(note)? {
        if signer != name || blob.len() != 76 || blob[..4] != wanted {
            continue;
        }
        let time = u64::from_be_bytes(blob[4..12].try_into().unwrap_or_default());
        if time > i64::MAX as u64 {
            return Err(NoteError::BadCosignature(name));
        }
        crate::sshsig::verify_ed25519(&public, &cosigned_message(&body, time), &blob[12..])
            .map_err(|_| NoteError::BadCosignature(name.clone()))?;
        made = Some(made.map_or(time, |t: u64| t.max(time)));
    }
    made.ok_or(NoteError::NotCosigned(name))
}

/// What a checkpoint key hands over to its successor: the log `origin` is signed from now on by
/// the key of generation `generation`, whose verifier key is `next`. The outgoing key signs it
/// (so a client that trusts it may trust the next), and so does the incoming one (so it is
/// known to be held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub origin: String,
    pub generation: u32,
    pub next: String,
}

const HANDOVER: &str = "sshsign checkpoint key handover";

impl Handover {
    /// The note body that is signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{HANDOVER}\n{}\n{}\n",
            self.origin, self.generation, self.next
        )
    }

    fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.lines();
        let mut line = || lines.next().ok_or(NoteError::Malformed("short handover"));
        let origin = line()?.to_owned();
        if line()? != HANDOVER {
            return Err(NoteError::Malformed("not a handover"));
        }
        let generation = line()?
            .parse()
            .map_err(|_| NoteError::Malformed("bad generation"))?;
        let next = line()?.to_owned();
        parse_verifier_key(&next)?;
        Ok(Handover {
            origin,
            generation,
            next,
        })
    }
}

/// Verifies a handover note under the outgoing key `vkey`, and that the incoming key it names
/// signed it too; returns what it says.
pub fn verify_handover(note: &str, vkey: &str) -> Result<Handover, NoteError> {
    let body = verify_body(note, vkey)?;
    let handover = Handover::parse_body(&body)?;
    verify_body(note, &handover.next)?;
    let (name, _) = parse_verifier_key(vkey)?;
    if handover.origin != name || parse_verifier_key(&handover.next)?.0 != name {
        return Err(NoteError::Origin {
            expected: name,
            found: handover.origin,
        });
    }
    Ok(handover)
}

/// Follows `handovers` from the trusted verifier key `vkey`: each note the key trusted so far
/// signed hands the trust on to the key it names. Returns the last key reached.
pub fn follow_handovers(vkey: &str, handovers: &[String]) -> String {
    let mut trusted = vkey.to_owned();
    for note in handovers {
        if let Ok(handover) = verify_handover(note, &trusted) {
            trusted = handover.next;
        }
    }
    trusted
}

/// Verifies a signed checkpoint against a verifier key, and returns what it says.
pub fn verify(note: &str, vkey: &str) -> Result<Checkpoint, NoteError> {
    let body = verify_body(note, vkey)?;
    let (name, _) = parse_verifier_key(vkey)?;
    let checkpoint = Checkpoint::parse_body(&body)?;
    if checkpoint.origin != name {
        return Err(NoteError::Origin {
            expected: name,
            found: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

/// The body of a signed note, once `vkey`'s signature on it verifies.
fn verify_body(note: &str, vkey: &str) -> Result<String, NoteError> {
    let (name, public) = parse_verifier_key(vkey)?;
    let body = body_of(note)?;
    let wanted = key_hash(&name, &public);
    let mut found = false;
    for (signer, blob) in signature_lines(note)? {
        if signer != name || blob.len() != 68 || blob[..4] != wanted {
            continue;
        }
        found = true;
        crate::sshsig::verify_ed25519(&public, body.as_bytes(), &blob[4..])
            .map_err(|_| NoteError::BadSignature)?;
    }
    if !found {
        return Err(NoteError::Unsigned(name));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};

    fn signed(origin: &str, size: u64, key: &SigningKey) -> String {
        let body = Checkpoint {
            origin: origin.into(),
            size,
            root: [5; 32],
        }
        .body();
        let signature = key.sign(body.as_bytes()).to_bytes();
        signed_note(&body, origin, key.verifying_key().as_bytes(), &signature)
    }

    #[test]
    fn signed_checkpoints_verify_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = key.verifying_key().to_bytes();
        let vkey = verifier_key("log.example/audit", &public);
        assert_eq!(
            parse_verifier_key(&vkey).unwrap(),
            ("log.example/audit".into(), public)
        );

        let note = signed("log.example/audit", 42, &key);
        let checkpoint = verify(&note, &vkey).unwrap();
        assert_eq!((checkpoint.size, checkpoint.root), (42, [5; 32]));

        let tampered = note.replace("\n42\n", "\n43\n");
        assert_eq!(verify(&tampered, &vkey), Err(NoteError::BadSignature));
        let other = SigningKey::from_bytes(&[4; 32]);
        let foreign = verifier_key("log.example/audit", &other.verifying_key().to_bytes());
        assert_eq!(
            verify(&note, &foreign),
            Err(NoteError::Unsigned("log.example/audit".into()))
        );
        assert!(verify("log.example/audit\n42\n", &vkey).is_err());
        let mut bad_vkey = vkey.clone();
        bad_vkey.replace_range(
            vkey.find('+').unwrap() + 1..vkey.find('+').unwrap() + 3,
            "00",
        );
        assert_eq!(parse_verifier_key(&bad_vkey), Err(NoteError::VerifierKey));
    }

    #[test]
    fn the_note_layout_is_the_c2sp_one() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let note = signed("o", 1, &key);
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[..2], ["o", "1"]);
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} o "));
        assert!(note.ends_with('\n'));
    }

    #[test]
    fn cosignatures_are_c2sp_lines_that_verify_under_the_cosigners_key_only() {
        let log = SigningKey::from_bytes(&[3; 32]);
        let witness = SigningKey::from_bytes(&[9; 32]);
        let name = "log.example/audit/cosigner/a";
        let public = witness.verifying_key().to_bytes();
        let vkey = cosigner_key(name, &public);
        assert_eq!(parse_cosigner_key(&vkey).unwrap(), (name.into(), public));
        // A cosigner's key is not a log key, nor the other way round: the type byte differs.
        assert_eq!(parse_verifier_key(&vkey), Err(NoteError::VerifierKey));
        let log_vkey = verifier_key("log.example/audit", &log.verifying_key().to_bytes());
        assert_eq!(parse_cosigner_key(&log_vkey), Err(NoteError::VerifierKey));

        let note = signed("log.example/audit", 42, &log);
        let body = body_of(&note).unwrap();
        let message = cosigned_message(&body, 1_700_000_000);
        assert!(message.starts_with(b"cosignature/v1\ntime 1700000000\nlog.example/audit\n42\n"));
        let signature = witness.sign(&message).to_bytes();
        let cosigned = note.clone() + &cosignature_line(name, &public, 1_700_000_000, &signature);
        assert!(cosigned.starts_with(&note));
        let line = cosigned.lines().last().unwrap();
        let blob = BASE64.decode(line.rsplit_once(' ').unwrap().1).unwrap();
        assert_eq!(blob.len(), 4 + 8 + 64);
        assert_eq!(blob[4..12], 1_700_000_000u64.to_be_bytes());

        // The log's signature still verifies; the cosignature verifies under its key only.
        assert_eq!(verify(&cosigned, &log_vkey).unwrap().size, 42);
        assert!(has_cosignature(&cosigned, &vkey).unwrap());
        assert!(!has_cosignature(&note, &vkey).unwrap());
        assert_eq!(verify_cosignature(&cosigned, &vkey), Ok(1_700_000_000));
        assert_eq!(
            verify_cosignature(&note, &vkey),
            Err(NoteError::NotCosigned(name.into()))
        );
        let other = cosigner_key(
            name,
            &SigningKey::from_bytes(&[10; 32]).verifying_key().to_bytes(),
        );
        assert_eq!(
            verify_cosignature(&cosigned, &other),
            Err(NoteError::NotCosigned(name.into()))
        );
        // The time is signed: a line moved to another time does not verify.
        let moved = note.clone() + &cosignature_line(name, &public, 1_700_000_001, &signature);
        assert_eq!(
            verify_cosignature(&moved, &vkey),
            Err(NoteError::BadCosignature(name.into()))
        );
        // So is the body.
        let grown = cosigned.replace("\n42\n", "\n43\n");
        assert_eq!(
            verify_cosignature(&grown, &vkey),
            Err(NoteError::BadCosignature(name.into()))
        );
        assert!(!valid_key_name("two words") && !valid_key_name("a+b") && !valid_key_name(""));
    }

    #[test]
    fn a_cosignature_made_elsewhere_to_the_specification_verifies() {
        // fuzz/seeds/note/seed2 was written by Python's `cryptography` from C2SP's text alone:
        // a checkpoint of "fuzz-log" and the cosignature of seed [8; 32] at time 1700000000.
        let seed = include_str!("../../fuzz/seeds/note/seed2");
        let (note, vkey) = seed.split_once('\0').unwrap();
        assert_eq!(verify_cosignature(note, vkey), Ok(1_700_000_000));
        let key = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            vkey,
            cosigner_key("fuzz-log/cosigner/a", key.verifying_key().as_bytes())
        );
        let log = SigningKey::from_bytes(&[7; 32]);
        let log_vkey = verifier_key("fuzz-log", log.verifying_key().as_bytes());
        assert_eq!(verify(note, &log_vkey).unwrap().size, 300);
        // Ours, made over the same body at the same time, is the same line.
        let body = body_of(note).unwrap();
        let ours = cosignature_line(
            "fuzz-log/cosigner/a",
            key.verifying_key().as_bytes(),
            1_700_000_000,
            &key.sign(&cosigned_message(&body, 1_700_000_000)).to_bytes(),
        );
        assert!(note.ends_with(&ours), "{note}\n{ours}");
    }

    /// A handover from `from` to `to` under `origin`, signed by the keys given.
    fn handover(origin: &str, generation: u32, from: &SigningKey, to: &SigningKey) -> String {
        let body = Handover {
            origin: origin.into(),
            generation,
            next: verifier_key(origin, to.verifying_key().as_bytes()),
        }
        .body();
        let first = signed_note(
            &body,
            origin,
            from.verifying_key().as_bytes(),
            &from.sign(body.as_bytes()).to_bytes(),
        );
        add_signature(
            &first,
            origin,
            to.verifying_key().as_bytes(),
            &to.sign(body.as_bytes()).to_bytes(),
        )
    }

    #[test]
    fn handovers_are_followed_only_from_the_key_that_signed_them() {
        let keys: Vec<SigningKey> = (1..=3).map(|n| SigningKey::from_bytes(&[n; 32])).collect();
        let vkey = |k: &SigningKey| verifier_key("o", k.verifying_key().as_bytes());
        let one_two = handover("o", 2, &keys[0], &keys[1]);
        let two_three = handover("o", 3, &keys[1], &keys[2]);
        let checked = verify_handover(&one_two, &vkey(&keys[0])).unwrap();
        assert_eq!((checked.generation, checked.next), (2, vkey(&keys[1])));
        // A chain is followed link by link, from the pinned key on.
        let chain = [one_two.clone(), two_three.clone()];
        assert_eq!(follow_handovers(&vkey(&keys[0]), &chain), vkey(&keys[2]));
        assert_eq!(follow_handovers(&vkey(&keys[1]), &chain), vkey(&keys[2]));
        // A link the trusted key did not sign leads nowhere.
        assert_eq!(
            follow_handovers(&vkey(&keys[0]), std::slice::from_ref(&two_three)),
            vkey(&keys[0])
        );
        // A handover the incoming key did not sign, or another log's, is refused.
        let unsigned_by_next = one_two.lines().take(6).collect::<Vec<_>>().join("\n") + "\n";
        assert!(matches!(
            verify_handover(&unsigned_by_next, &vkey(&keys[0])),
            Err(NoteError::Unsigned(_))
        ));
        let other_log = handover("p", 2, &keys[0], &keys[1]);
        assert!(verify_handover(&other_log, &vkey(&keys[0])).is_err());
        // A checkpoint is not a handover, nor the other way round.
        let checkpoint = signed("o", 4, &keys[0]);
        assert!(verify_handover(&checkpoint, &vkey(&keys[0])).is_err());
        assert!(verify(&one_two, &vkey(&keys[0])).is_err());
        // Tampered: the named key changed after signing.
        let tampered = one_two.replacen(&vkey(&keys[1]), &vkey(&keys[2]), 1);
        assert!(verify_handover(&tampered, &vkey(&keys[0])).is_err());
    }
}
