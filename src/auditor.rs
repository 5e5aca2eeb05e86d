//! Checking the appliance's audit log from the outside, with nothing but its audit public key:
//! checkpoint signatures, inclusion proofs and consistency proofs, as the SSH `audit-*` commands
//! return them. [`Memory`] keeps the last checkpoint seen per log, so a log that was rolled back
//! (shrank) or forked (a later checkpoint that does not extend the earlier one) is caught.

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

    /// The key a log is pinned to, or `offered` pinned now on first use.
    pub fn pinned_key(&self, origin: &str, offered: &str) -> Result<String, AuditorError> {
        match self.seen(origin)? {
            Some(seen) if seen.verifier_key != offered => Err(AuditorError::KeyChanged {
                pinned: seen.verifier_key,
                offered: offered.to_owned(),
                path: self.path(origin).display().to_string(),
            }),
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
    let old = check_checkpoint(&seen.checkpoint, vkey)?;
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
