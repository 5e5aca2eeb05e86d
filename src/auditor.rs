//! Checking the appliance's audit log from the outside, with nothing but its audit public key:
//! checkpoint signatures, inclusion proofs and consistency proofs, as the SSH `audit-*` commands
//! return them or as [`tiles`] builds them from the log's served tiles. [`Memory`] keeps the last checkpoint seen per log, so a log that was rolled back
//! (shrank) or forked (a later checkpoint that does not extend the earlier one) is caught.

pub mod tiles;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::merkle::{self, ProofError};
use crate::audit::note::{self, Checkpoint, NoteError};
use crate::audit::{AuditEntry, ConsistencyProof, InclusionProof};

/// What is wrong with what the appliance sent.
#[derive(Debug, thiserror::Error)]
pub enum AuditorError {
    #[error("checkpoint: {0}")]
    Note(#[from] NoteError),
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    #[error("the reply is not a {0}")]
    Shape(&'static str),
    #[error(
        "the audit log was ROLLED BACK: it now signs {now} entries, but a checkpoint of {seen} was \
         seen before"
    )]
    RolledBack { seen: u64, now: u64 },
    #[error(
        "the audit log FORKED: the checkpoint of {size} entries does not extend the one seen before ({reason})"
    )]
    Forked { size: u64, reason: String },
    #[error(
        "the verifier key changed from {pinned} to {offered}; if that is intended, remove {path}"
    )]
    KeyChanged {
        pinned: String,
        offered: String,
        path: String,
    },
    #[error("{path}: {reason}")]
    State { path: String, reason: String },
    #[error("tiles: {0}")]
    Tiles(String),
    #[error(
        "no verifier key for the log {origin:?}: pass it with --key (`sshsign-server provision \
         show` prints it), or run `sshsign audit check` over SSH once to pin it"
    )]
    NoKey { origin: String },
}

fn proof_hashes(proof: &[String]) -> Vec<Vec<u8>> {
    proof
        .iter()
        .map(|p| BASE64.decode(p).unwrap_or_default())
        .collect()
}

/// Verifies a checkpoint's signature under `vkey`.
pub fn check_checkpoint(note: &str, vkey: &str) -> Result<Checkpoint, AuditorError> {
    Ok(note::verify(note, vkey)?)
}

/// Verifies an `audit-proof` reply: the checkpoint's signature, then the entry's inclusion.
pub fn check_inclusion(
    reply: &Value,
    vkey: &str,
) -> Result<(Checkpoint, AuditEntry), AuditorError> {
    let proof: InclusionProof = serde_json::from_value(reply.clone())
        .map_err(|_| AuditorError::Shape("inclusion proof"))?;
    let checkpoint = check_checkpoint(&proof.checkpoint, vkey)?;
    if proof.size != checkpoint.size {
        return Err(AuditorError::Shape("proof against its own checkpoint"));
    }
    let leaf = merkle::leaf_hash(proof.entry.as_bytes());
    merkle::verify_inclusion(
        proof.index,
        checkpoint.size,
        &leaf,
        &proof_hashes(&proof.proof),
        &checkpoint.root,
    )?;
    let entry =
        serde_json::from_str(&proof.entry).map_err(|_| AuditorError::Shape("audit entry"))?;
    Ok((checkpoint, entry))
}

/// Verifies an `audit-consistency` reply against an older checkpoint the caller trusts.
pub fn check_consistency(
    reply: &Value,
    old: &Checkpoint,
    vkey: &str,
) -> Result<Checkpoint, AuditorError> {
    let proof: ConsistencyProof = serde_json::from_value(reply.clone())
        .map_err(|_| AuditorError::Shape("consistency proof"))?;
    let new = check_checkpoint(&proof.checkpoint, vkey)?;
    if proof.from != old.size || proof.to != new.size {
        return Err(AuditorError::Shape(
            "consistency proof between the checkpoints named",
        ));
    }
    merkle::verify_consistency(
        old.size,
        new.size,
        &proof_hashes(&proof.proof),
        &old.root,
        &new.root,
    )
    .map_err(|e| AuditorError::Forked {
        size: new.size,
        reason: e.to_string(),
    })?;
    Ok(new)
}

/// The last checkpoint seen of one log, and the key it is pinned to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seen {
    pub verifier_key: String,
    pub checkpoint: String,
}

/// Where the client keeps what it has seen: one JSON file per log origin.
#[derive(Debug, Clone)]
pub struct Memory {
    dir: PathBuf,
}

impl Memory {
    /// `$XDG_STATE_HOME/sshsign/audit`, or `~/.local/state/sshsign/audit`.
    pub fn default_location() -> Option<Self> {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))?;
        Some(Memory {
            dir: base.join("sshsign/audit"),
        })
    }

    fn path(&self, origin: &str) -> PathBuf {
        let safe: String = origin
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// What was seen of `origin`, if anything.
    pub fn seen(&self, origin: &str) -> Result<Option<Seen>, AuditorError> {
        let path = self.path(origin);
        let state = |reason: String| AuditorError::State {
            path: path.display().to_string(),
            reason,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(
                serde_json::from_str(&text).map_err(|e| state(e.to_string()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state(e.to_string())),
        }
    }

    /// Remembers a checkpoint as the latest seen.
    pub fn remember(&self, origin: &str, seen: &Seen) -> Result<(), AuditorError> {
        let path = self.path(origin);
        let state = |reason: String| AuditorError::State {
            path: path.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| state(e.to_string()))?;
        let temp = path.with_extension("json.new");
        std::fs::write(&temp, serde_json::to_vec_pretty(seen).unwrap_or_default())
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|e| state(e.to_string()))
    }

    /// The key a log is pinned to, or `offered` pinned now on first use. A pinned key that
    /// `handovers` lead from to `offered` (each signed by the key before) is still the pinned
    /// one: the caller follows them.
    pub fn pinned_key(
        &self,
        origin: &str,
        offered: &str,
        handovers: &[String],
    ) -> Result<String, AuditorError> {
        match self.seen(origin)? {
            Some(seen)
                if seen.verifier_key != offered
                    && note::follow_handovers(&seen.verifier_key, handovers) != offered =>
            {
                Err(AuditorError::KeyChanged {
                    pinned: seen.verifier_key,
                    offered: offered.to_owned(),
                    path: self.path(origin).display().to_string(),
                })
            }
            Some(seen) => Ok(seen.verifier_key),
            None => Ok(offered.to_owned()),
        }
    }
}

/// Decides whether `new` may follow what was seen: same or larger size, and consistent. `prove`
/// fetches a consistency proof from the seen size to `new`'s.
pub fn advance(
    seen: Option<&Seen>,
    new_note: &str,
    vkey: &str,
    prove: impl FnOnce(u64) -> Result<Value, AuditorError>,
) -> Result<Checkpoint, AuditorError> {
    let new = check_checkpoint(new_note, vkey)?;
    let Some(seen) = seen else {
        return Ok(new);
    };
    // The checkpoint seen before, under the key it was seen with (an earlier generation, if
    // the key was handed over since).
    let old = check_checkpoint(&seen.checkpoint, &seen.verifier_key)?;
    if new.size < old.size {
        return Err(AuditorError::RolledBack {
            seen: old.size,
            now: new.size,
        });
    }
    if new.size == old.size {
        return if new.root == old.root {
            Ok(new)
        } else {
            Err(AuditorError::Forked {
                size: new.size,
                reason: "same size, another root".to_owned(),
            })
        };
    }
    if old.size == 0 {
        return Ok(new);
    }
    let proof = prove(old.size)?;
    let proven = check_consistency(&proof, &old, vkey)?;
    if proven != new {
        return Err(AuditorError::Forked {
            size: new.size,
            reason: "the consistency proof ends at another checkpoint".to_owned(),
        });
    }
    Ok(new)
}

/// What checking a saved reply found (`sshsign audit verify`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "verified", rename_all = "lowercase")]
pub enum SavedReport {
    /// An `audit-proof` reply: the entry is in the log the checkpoint signs.
    Inclusion {
        size: u64,
        index: Value,
        entry: Box<AuditEntry>,
    },
    /// An `audit-consistency` reply: the older checkpoint is a prefix of the newer.
    Consistency { from: u64, to: u64 },
    /// An `audit-checkpoint` reply: the checkpoint's signature holds.
    Checkpoint { origin: String, size: u64 },
}

/// Why a saved reply could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    #[error(transparent)]
    Audit(#[from] AuditorError),
    /// A consistency proof is checked from the older checkpoint it starts at.
    #[error("a consistency proof is checked from its older checkpoint")]
    NeedsOld,
}

/// Checks a saved `audit-checkpoint`, `audit-proof` or `audit-consistency` reply under `vkey`;
/// a consistency proof needs the saved reply of its older checkpoint, `old`.
pub fn check_saved(
    reply: &Value,
    old: Option<&Value>,
    vkey: &str,
) -> Result<SavedReport, SavedError> {
    let note = |reply: &Value| reply["checkpoint"].as_str().unwrap_or_default().to_owned();
    if reply.get("entry").is_some() {
        let (checkpoint, entry) = check_inclusion(reply, vkey)?;
        return Ok(SavedReport::Inclusion {
            size: checkpoint.size,
            index: reply["index"].clone(),
            entry: Box::new(entry),
        });
    }
    if reply.get("from").is_some() {
        let old = check_checkpoint(&note(old.ok_or(SavedError::NeedsOld)?), vkey)?;
        let new = check_consistency(reply, &old, vkey)?;
        return Ok(SavedReport::Consistency {
            from: old.size,
            to: new.size,
        });
    }
    let checkpoint = check_checkpoint(&note(reply), vkey)?;
    Ok(SavedReport::Checkpoint {
        origin: checkpoint.origin,
        size: checkpoint.size,
    })
}

/// The most handover notes a reply is read for (a rotation a day for decades is fewer).
pub(crate) const MAX_HANDOVERS: usize = 10_000;

/// What checking the live log found (`sshsign audit check`, `audit prove`).
#[derive(Debug, Clone, Serialize)]
pub struct OnlineReport {
    pub verified: bool,
    pub origin: String,
    pub size: u64,
    /// The size of the checkpoint seen before, which this one extends (0: none).
    pub previously_seen: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<AuditEntry>,
    /// From tiles: what is public of the entry (its action and leaf hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_entry: Option<Value>,
    /// The cosigners required (`--cosigner`), each with when it cosigned the checkpoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cosigned_by: Vec<Cosigned>,
}

/// A required cosigner's cosignature on the checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Cosigned {
    /// The cosigner's key name.
    pub name: String,
    /// When it cosigned, Unix seconds.
    pub time: u64,
}

/// Checks that each of `cosigners` (cosigner verifier keys) cosigned `note`.
pub fn check_cosigners(note: &str, cosigners: &[String]) -> Result<Vec<Cosigned>, AuditorError> {
    cosigners
        .iter()
        .map(|vkey| {
            let time = note::verify_cosignature(note, vkey)?;
            let (name, _) = note::parse_cosigner_key(vkey)?;
            Ok(Cosigned { name, time })
        })
        .collect()
}

/// The size of the checkpoint seen before (0: none), under the key it was seen with.
fn seen_size(seen: Option<&Seen>) -> Result<u64, AuditorError> {
    match seen {
        Some(seen) => Ok(check_checkpoint(&seen.checkpoint, &seen.verifier_key)?.size),
        None => Ok(0),
    }
}

/// Takes `note` as the log's latest checkpoint if each of `cosigners` cosigned it and it may
/// follow what was `seen` ([`advance`], with `consistency` the proof from the seen size when it
/// grew), remembers it in `memory`, and reports it.
fn accept(
    memory: &Memory,
    seen: Option<&Seen>,
    (note, vkey): (String, String),
    cosigners: &[String],
    consistency: Option<Value>,
) -> Result<OnlineReport, AuditorError> {
    let cosigned_by = check_cosigners(&note, cosigners)?;
    let previously_seen = seen_size(seen)?;
    let checkpoint = advance(seen, &note, &vkey, |_| {
        consistency.ok_or(AuditorError::Shape("consistency proof"))
    })?;
    memory.remember(
        &checkpoint.origin,
        &Seen {
            verifier_key: vkey,
            checkpoint: note,
        },
    )?;
    Ok(OnlineReport {
        verified: true,
        origin: checkpoint.origin,
        size: checkpoint.size,
        previously_seen,
        index: None,
        entry: None,
        public_entry: None,
        cosigned_by,
    })
}

/// Checks the live log: fetches its checkpoint (and, with `index`, that entry's inclusion
/// proof) through `fetch`, which runs an SSH command and returns its reply. The checkpoint must
/// verify under `pinned` (or the key remembered for its origin, or, the first time, the key
/// offered), carry the cosignature of each of `cosigners`, and extend the checkpoint `memory`
/// saw before, proven by a consistency proof; it is remembered only once all of that holds.
pub async fn check_online<E, F>(
    memory: &Memory,
    pinned: Option<String>,
    cosigners: &[String],
    index: Option<u64>,
    fetch: impl Fn(Vec<String>) -> F,
) -> Result<OnlineReport, E>
where
    E: From<AuditorError>,
    F: Future<Output = Result<Value, E>>,
{
    let words = |list: &[&str]| list.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let reply = match index {
        Some(index) => fetch(words(&["audit-proof", "--index", &index.to_string()])).await?,
        None => fetch(words(&["audit-checkpoint"])).await?,
    };
    let note = reply["checkpoint"].as_str().unwrap_or_default().to_owned();
    let offered = reply["verifier_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let handovers: Vec<String> = reply["handovers"]
        .as_array()
        .map(|notes| {
            notes
                .iter()
                .take(MAX_HANDOVERS)
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let origin = check_checkpoint(&note, &offered)?.origin;
    let pinned = match pinned {
        Some(key) => key,
        None => memory.pinned_key(&origin, &offered, &handovers)?,
    };
    // From the pinned key to the one that signs now, each handover signed by the key before.
    let vkey = note::follow_handovers(&pinned, &handovers);
    let seen = memory.seen(&origin)?;
    let old_size = seen_size(seen.as_ref())?;
    let new_size = check_checkpoint(&note, &vkey)?.size;
    let consistency = if old_size > 0 && new_size > old_size {
        let (from, to) = (old_size.to_string(), new_size.to_string());
        let command = words(&["audit-consistency", "--from", &from, "--to", &to]);
        Some(fetch(command).await?)
    } else {
        None
    };
    let mut report = accept(
        memory,
        seen.as_ref(),
        (note, vkey.clone()),
        cosigners,
        consistency,
    )?;
    if index.is_some() {
        let (_, entry) = check_inclusion(&reply, &vkey)?;
        report.index = Some(reply["index"].clone());
        report.entry = Some(entry);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    /// A checkpoint of an empty-rooted log of `size` entries, signed by `key`.
    fn checkpoint(size: u64, key: &SigningKey) -> String {
        let body = Checkpoint {
            origin: "log.example/audit".into(),
            size,
            root: [0; 32],
        }
        .body();
        let public = key.verifying_key().to_bytes();
        let signature = key.sign(body.as_bytes()).to_bytes();
        note::signed_note(&body, "log.example/audit", &public, &signature)
    }

    #[test]
    fn saved_checkpoints_are_checked_and_a_consistency_proof_needs_its_start() {
        let key = SigningKey::from_bytes(&[4; 32]);
        let vkey = note::verifier_key("log.example/audit", &key.verifying_key().to_bytes());
        let saved = serde_json::json!({ "checkpoint": checkpoint(7, &key) });
        let report = check_saved(&saved, None, &vkey).unwrap();
        let shown = serde_json::to_value(&report).unwrap();
        assert_eq!(shown["verified"], "checkpoint");
        assert_eq!(shown["size"], 7);
        // Under another key, refused.
        let other = SigningKey::from_bytes(&[5; 32]);
        let other = note::verifier_key("log.example/audit", &other.verifying_key().to_bytes());
        assert!(matches!(
            check_saved(&saved, None, &other),
            Err(SavedError::Audit(_))
        ));
        // A consistency proof without the checkpoint it starts from cannot be checked.
        let consistency = serde_json::json!({ "from": 3, "to": 7, "proof": [] });
        assert!(matches!(
            check_saved(&consistency, None, &vkey),
            Err(SavedError::NeedsOld)
        ));
    }
}
