//! How the audit log is shown: checkpoints, proofs (with the key that verifies them), entries.

use serde::Serialize;

use crate::audit::AuditEntry;

/// `audit-checkpoint`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// The tree's root hash, base64.
    pub root: String,
    /// The signed note.
    pub checkpoint: String,
    pub verifier_key: String,
    /// Notes handing the log from each checkpoint key to the next, oldest first: a client that
    /// pinned an earlier key follows them to `verifier_key`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<String>,
    /// Where several appliances share the log: the key with which the one that answered
    /// cosigns checkpoints, for `sshsign audit check --cosigner`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosigner_key: Option<String>,
}

/// A proof, with the key that verifies the checkpoint it is against.
#[derive(Debug, Clone, Serialize)]
pub struct ProofView<P> {
    #[serde(flatten)]
    pub proof: P,
    pub verifier_key: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handovers: Vec<String>,
}

/// One entry and its index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexedEntry {
    pub index: u64,
    pub entry: AuditEntry,
}

/// `audit-entries`: the caller's entries, and where to continue.
#[derive(Debug, Clone, Serialize)]
pub struct EntryList {
    pub entries: Vec<IndexedEntry>,
    pub next: Option<u64>,
}
