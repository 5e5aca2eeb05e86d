//! Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing` by cargo-fuzz, and
//! by the unit test below that replays the seed corpora and every crash kept as a regression).
//!
//! Each takes arbitrary bytes, runs one parser of untrusted input as the appliance does, and
//! checks what must hold of its answer: a panic here is a finding, whether the parser panicked
//! or a property failed.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// The SSH command line: word splitting, the command grammar, and the flags' own parsers
/// (grant flags, JSON objects, expiries). Words the client quotes split back the same.
pub fn command_line(data: &[u8]) {
    let Ok(words) = crate::ssh::grammar::split(data) else {
        return;
    };
    let rejoined = crate::client::command_line(&words);
    if rejoined.len() <= crate::ssh::grammar::MAX_COMMAND_LINE {
        let again = crate::ssh::grammar::split(rejoined.as_bytes());
        assert_eq!(again.as_ref().ok(), Some(&words), "{rejoined:?}");
    }
    if let Ok((command, _)) = crate::ssh::grammar::parse(words) {
        crate::ssh::commands::exercise_flags(command);
    }
}

/// Constraints, hard rules and soft rules as `create-key` reads them, checked against metadata:
/// the input is `{"constraints": {...}, "hard": {...}, "soft": {...}, "metadata": {...}}`. What
/// parses writes back as JSON that parses to the same.
pub fn policy(data: &[u8]) {
    use crate::policy::constraint::{constraints_json, parse_constraints};
    use crate::policy::rules::{RuleKind, parse_rules, rules_json};
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let object = |name: &str| match input.get(name) {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let metadata = object("metadata");
    if let Ok(constraints) = parse_constraints(&object("constraints")) {
        let written = constraints_json(&constraints);
        let Value::Object(map) = &written else {
            panic!("constraints wrote {written}");
        };
        assert_eq!(parse_constraints(map).as_ref(), Ok(&constraints));
        for (field, constraint) in &constraints {
            let _ = constraint.check(metadata.get(field));
        }
    }
    for (name, kind) in [("hard", RuleKind::Hard), ("soft", RuleKind::Soft)] {
        if let Ok(rules) = parse_rules(&object(name), kind) {
            let written = rules_json(&rules);
            let Value::Object(map) = &written else {
                panic!("rules wrote {written}");
            };
            assert_eq!(parse_rules(map, kind).as_ref(), Ok(&rules));
            for (fact, test) in &rules {
                let _ = test.check(metadata.get(fact));
            }
        }
    }
}

/// Exact decimals: two numbers' texts separated by a space. Each that parses writes back as
/// a text that parses to the same number; their order is the order of the exact rationals
/// they denote (`reference` is an independent big-rational comparison).
pub fn decimals(data: &[u8], reference: impl Fn(&str, &str) -> Option<std::cmp::Ordering>) {
    use crate::policy::decimal::Decimal;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((a, b)) = text.split_once(' ') else {
        return;
    };
    let (Some(x), Some(y)) = (Decimal::parse(a), Decimal::parse(b)) else {
        return;
    };
    for (d, t) in [(&x, a), (&y, b)] {
        assert_eq!(Decimal::parse(&d.to_string()).as_ref(), Some(d), "{t}");
    }
    if let Some(expected) = reference(a, b) {
        assert_eq!(x.cmp(&y), expected, "{a} vs {b}");
    }
}

/// SSHSIG: armored text and bare blobs. What parses writes back byte for byte.
pub fn sshsig(data: &[u8]) {
    use crate::sshsig::SshSig;
    if let Ok(signature) = SshSig::from_blob(data) {
        assert_eq!(
            SshSig::from_blob(&signature.to_blob()).ok(),
            Some(signature.clone())
        );
        assert_eq!(
            SshSig::from_armored(&signature.to_armored()).ok(),
            Some(signature)
        );
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(signature) = SshSig::from_armored(text)
    {
        let _ = signature.verify("git", b"payload");
    }
}

/// Signed notes and checkpoints, verifier and cosigner keys: a note and a key separated by a NUL
/// byte.
/// A checkpoint that verifies is written back as the same note.
pub fn note(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (note, vkey) = text.split_once('\0').unwrap_or((text, ""));
    let _ = crate::audit::note::parse_verifier_key(vkey);
    if let Ok(checkpoint) = crate::auditor::check_checkpoint(note, vkey) {
        assert!(note.starts_with(&checkpoint.body()), "{note:?}");
    }
    // With the real key of a fixed seed, so notes signed by it get past the signature.
    let _ = crate::audit::note::verify(note, &fixed_vkey());
    // Cosignatures: by the key given, and by a fixed cosigner's.
    let _ = crate::auditor::check_cosigners(note, &[vkey.to_owned(), fixed_cosigner()]);
    let _ = crate::audit::note::has_cosignature(note, vkey);
}

fn fixed_cosigner() -> String {
    use ed25519_dalek::SigningKey;
    let key = SigningKey::from_bytes(&[8; 32]);
    crate::audit::note::cosigner_key("fuzz-log/cosigner/a", key.verifying_key().as_bytes())
}

fn fixed_vkey() -> String {
    use ed25519_dalek::SigningKey;
    let key = SigningKey::from_bytes(&[7; 32]);
    crate::audit::note::verifier_key("fuzz-log", key.verifying_key().as_bytes())
}

/// Inclusion and consistency proofs: sizes, indexes and hashes drawn from the bytes. No input
/// panics; a proof built from a real tree of the drawn size verifies.
pub fn proofs(data: &[u8]) {
    use crate::audit::merkle::{verify_consistency, verify_inclusion};
    if data.len() < 16 {
        return;
    }
    let word = |at: usize| u64::from_be_bytes(data[at..at + 8].try_into().unwrap_or_default());
    let (a, b) = (word(0), word(8));
    let hashes: Vec<Vec<u8>> = data[16..].chunks(32).map(<[u8]>::to_vec).collect();
    let first = hashes.first().cloned().unwrap_or_default();
    let rest = hashes.get(1..).unwrap_or_default();
    let _ = verify_inclusion(a, b, &first, rest, &first);
    let _ = verify_consistency(a, b, rest, &first, &first);
    // A small real tree: every inclusion and consistency proof in it verifies.
    let size = (a % 64) + 1;
    let tree = MemoryTree::new(size, data);
    let index = b % size;
    let proof = crate::audit::merkle::inclusion_proof(&tree, index, size)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let proof: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
    let root = tree.root(size);
    verify_inclusion(index, size, &tree.leaf(index), &proof, &root)
        .unwrap_or_else(|e| panic!("inclusion of {index} in {size}: {e:?}"));
    let old = (b % size) + 1;
    let proof = crate::audit::merkle::consistency_proof(&tree, old, size)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let proof: Vec<Vec<u8>> = proof.iter().map(|h| h.to_vec()).collect();
    verify_consistency(old, size, &proof, &tree.root(old), &root)
        .unwrap_or_else(|e| panic!("consistency of {old} with {size}: {e:?}"));
}

/// A tree held whole in memory, leaves drawn from the fuzz input.
struct MemoryTree {
    leaves: Vec<crate::audit::merkle::Hash>,
}

impl MemoryTree {
    fn new(size: u64, seed: &[u8]) -> Self {
        let leaves = (0..size)
            .map(|i| crate::audit::merkle::leaf_hash(&[seed, &i.to_be_bytes()].concat()))
            .collect();
        MemoryTree { leaves }
    }

    fn leaf(&self, index: u64) -> Vec<u8> {
        self.leaves[index as usize].to_vec()
    }

    fn root(&self, size: u64) -> Vec<u8> {
        crate::audit::merkle::subtree_hash(self, 0, size)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .to_vec()
    }
}

impl crate::audit::merkle::Nodes for MemoryTree {
    type Error = crate::audit::merkle::ProofError;

    fn node(&self, level: u32, index: u64) -> Result<crate::audit::merkle::Hash, Self::Error> {
        if level == 0 {
            return self.leaves.get(index as usize).copied().ok_or(
                crate::audit::merkle::ProofError::IndexOutOfRange {
                    index,
                    size: self.leaves.len() as u64,
                },
            );
        }
        Ok(crate::audit::merkle::node_hash(
            &self.node(level - 1, 2 * index)?,
            &self.node(level - 1, 2 * index + 1)?,
        ))
    }
}

/// Canonical JSON (RFC 8785): what it writes parses back, and writing that again gives the
/// same bytes.
pub fn canonical(data: &[u8]) {
    use crate::approval::canonical::to_vec;
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(bytes) = to_vec(&value) else {
        return;
    };
    let again: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("canonical JSON does not parse: {e}: {bytes:?}"));
    assert_eq!(to_vec(&again).ok(), Some(bytes));
}

/// `POST /api/v1/approvals/request` bodies, as the handler reads them.
pub fn rest_body(data: &[u8]) {
    let _ = crate::web::api::parse_request_body(data);
}

/// The drawn-signature PNG check: never a panic, and a decoded image passed the structure check.
pub fn png(data: &[u8]) {
    if crate::approval::envelope::check_image(data).is_ok() {
        assert!(crate::approval::envelope::check_image_structure(data).is_ok());
    }
}

/// TOTP codes, and otpauth URIs: a code accepted is the code of the step it names, after the
/// last one used; an URI written parses back to its secret.
pub fn totp(data: &[u8]) {
    use crate::approval::totp;
    if data.len() < 24 {
        return;
    }
    let (secret, rest) = data.split_at(20);
    let now = i64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
    let text = String::from_utf8_lossy(&rest[4..]);
    let last = u64::from(rest[0]);
    if let Some(step) = totp::check(secret, &text, now, last) {
        assert!(step > last);
        assert_eq!(format!("{:06}", totp::code(secret, step)), text.trim());
    }
    let uri = totp::otpauth_uri(&text, &text, secret);
    let parsed = url::Url::parse(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
    assert_eq!(parsed.scheme(), "otpauth");
    let secret_in_uri = parsed
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned());
    assert_eq!(secret_in_uri, Some(totp::base32(secret)), "{uri}");
}

/// Webhook URLs: no URL whose host is an internal address is let through by the default
/// policy, however it is written.
pub fn webhook_url(data: &[u8]) {
    use crate::webhook::client::Target;
    use crate::webhook::ssrf::{Policy, is_internal};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = Target::parse(text) else {
        return;
    };
    let Ok(ip) = target.host().parse::<IpAddr>() else {
        return;
    };
    let policy = Policy::default();
    if is_internal(ip) {
        assert!(!policy.permits(ip), "{text}");
        assert!(policy.refused(&[ip]).is_some(), "{text}");
    }
    // The WHATWG reading of the same text names the same host, or one as internal.
    if let Ok(url) = url::Url::parse(text)
        && let Some(url::Host::Ipv4(v4)) = url.host()
        && is_internal(IpAddr::V4(v4))
    {
        assert!(is_internal(ip), "{text}: {ip} vs {v4}");
    }
}

/// known_hosts lines: any text, judged for a fixed host and key, never panics; a line that
/// names the host with the key plainly is known unless a revocation says otherwise.
pub fn known_hosts(data: &[u8]) {
    use crate::client::known_hosts::{Verdict, judge};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[9; 32]));
    let public = key.public_key();
    let verdict = judge(text, "sign.example.com", 22, public);
    let line = public.to_openssh().unwrap_or_default();
    let with_ours = format!("{text}\nsign.example.com {line}\n");
    match judge(&with_ours, "sign.example.com", 22, public) {
        Verdict::Known => {}
        Verdict::Revoked { .. } => {
            assert!(text.to_ascii_lowercase().contains("@revoked"), "{text:?}");
        }
        other => panic!("a plain line for the key reads {other:?} after {text:?} ({verdict:?})"),
    }
}

/// A session's request line, as `ssh <appliance> session` reads it: any bytes get a request or
/// a reply, never a panic; a line answered at once gets an error with a usage or failure status,
/// or the help its `-h` asked for, and its reply line is one line of JSON.
pub fn session_line(data: &[u8]) {
    let (id, parsed) = crate::ssh::session::parse(data);
    if let Err(reply) = parsed {
        // Answered at once: an error (exit 1 or 2), or the help a `-h` asked for (exit 0).
        let error = reply.body["error"]["code"].is_string()
            && (reply.exit_status == 1 || reply.exit_status == 2);
        let help = reply.body["help"].is_string() && reply.exit_status == 0;
        assert!(error || help, "{reply:?}");
        let line = crate::ssh::session::line(&id, &reply, "");
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(serde_json::from_slice::<Value>(&line).is_ok());
    }
}

#[cfg(test)]
mod tests {
    /// A fuzz target's name and entry point.
    type Target = (&'static str, fn(&[u8]));

    /// Replays every file kept under `fuzz/seeds/<target>` and `fuzz/regressions/<target>`.
    #[test]
    fn the_kept_inputs_pass_every_target() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let targets: &[Target] = &[
            ("command_line", super::command_line),
            ("policy", super::policy),
            ("sshsig", super::sshsig),
            ("note", super::note),
            ("proofs", super::proofs),
            ("canonical", super::canonical),
            ("rest_body", super::rest_body),
            ("png", super::png),
            ("totp", super::totp),
            ("webhook_url", super::webhook_url),
            ("known_hosts", super::known_hosts),
            ("session_line", super::session_line),
            ("decimals", |d| super::decimals(d, |_, _| None)),
        ];
        let mut replayed = 0;
        for (name, target) in targets {
            for kind in ["seeds", "regressions"] {
                let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                    continue;
                };
                for entry in dir {
                    let path = entry.unwrap().path();
                    target(&std::fs::read(&path).unwrap());
                    replayed += 1;
                }
            }
        }
        assert!(replayed >= targets.len(), "only {replayed} inputs kept");
    }
}
