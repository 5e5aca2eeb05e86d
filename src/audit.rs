//! The tamper-evident audit log: every key creation, grant, signature, denial, revocation,
//! approval and offer is an entry in an append-only Merkle tree (RFC 6962 hashing), and the
//! token's checkpoint key signs the tree head as a C2SP checkpoint.
//!
//! - [`merkle`]: hashing, proofs, verification (used by the client too);
//! - [`note`]: checkpoints as signed notes;
//! - [`log`]: storage and the group-committing writer.
//!
//! Fail-closed: [`AuditLog::append`] returns only once the entry is durable, and callers sign
//! only after it returns. A crash can leave an entry whose signature was never made, never a
//! signature without its entry. Checkpoints are signed on a cadence and on request, never per
//! entry (one per tree size at most), so the signing path costs no extra token call. At start-up the whole log is
//! recomputed from its entries and checked against the stored hashes and the latest signed
//! checkpoint: an entry edited, deleted or reordered in the database is caught there.

pub mod log;
pub mod merkle;
pub mod note;
pub mod words;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::log::{Head, LogTree, Sink, Writer};
use self::merkle::{Frontier, Hash, Nodes as _};
use self::note::Checkpoint;
pub use self::words::{Action, Outcome};
use crate::hsm::Token;
use crate::provision::ApplianceKey;
use crate::store::flusher::Flusher;

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    #[error("audit storage: {0}")]
    Storage(String),
    #[error("audit log corrupt: {0}")]
    Corrupt(String),
    #[error("the audit log does not match its signed checkpoint: {0}")]
    Tampered(String),
    #[error(transparent)]
    Proof(merkle::ProofError),
    #[error(transparent)]
    Note(#[from] note::NoteError),
    #[error("signing a checkpoint: {0}")]
    Token(#[from] crate::hsm::Error),
    #[error("no checkpoint covers size {0}")]
    NoCheckpoint(u64),
}

/// One thing that happened. Entries hold ids, hashes and rule names, never secrets, metadata
/// values or documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub time: i64,
    /// What happened.
    pub action: Action,
    /// How it ended.
    pub result: Outcome,
    /// The user who acted.
    pub actor: String,
    /// The SSH key they acted with.
    pub actor_key: String,
    /// Users who may read this entry (the actor, the key's owner, principals, parties).
    pub readers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_id: Option<String>,
    /// A signature request (`pnd_…`); entries before this version also put approval
    /// requests here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_id: Option<String>,
    /// An approval request (`apr_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// An API key (`apk_…`) made, revoked or used; entries before this version put it in
    /// `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiation_id: Option<String>,
    /// For offers: the round and the offer's hash, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// SHA-512 of the signed payload, hex (what SSHSIG signs over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_sha512: Option<String>,
    /// SHA-256 of the request's metadata as canonical JSON, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_sha256: Option<String>,
    /// Checks made, as `authorization:check=pass|fail`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// The rule that decided a denial, or what failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Soft rules that did not hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For an approval with a drawn signature: `sha256:<hex>` of its evidence envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_sha256: Option<String>,
}

impl AuditEntry {
    /// Names the request this entry is about, in the field of its kind (`pending_id` for a
    /// signature request, `request_id` for an approval).
    pub fn about_request(&mut self, id: &str) {
        match crate::request::RequestId::parse(id).map(|r| r.kind()) {
            Some(crate::request::RequestKind::Approval) => self.request_id = Some(id.to_owned()),
            _ => self.pending_id = Some(id.to_owned()),
        }
    }

    /// The bytes hashed into the tree. An entry that cannot be written (none can today: it is
    /// strings and integers) is an error, never an empty leaf.
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|e| Error::Unavailable(format!("encoding an entry: {e}")))
    }
}

/// How checkpoints are named and signed.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    token: Token,
    key: ApplianceKey,
    origin: String,
}

impl CheckpointSigner {
    pub fn new(token: Token, key: ApplianceKey, origin: String) -> Self {
        CheckpointSigner { token, key, origin }
    }

    /// `origin+keyhash+key`: what verifiers pin.
    pub fn verifier_key(&self) -> String {
        note::verifier_key(&self.origin, &self.key.key.public_key)
    }

    async fn sign(&self, head: Head) -> Result<String, Error> {
        let body = Checkpoint {
            origin: self.origin.clone(),
            size: head.size,
            root: head.root,
        }
        .body();
        let id = self.key.key.object_id.clone();
        let message = body.clone().into_bytes();
        let signature = self.token.call(move |hsm| hsm.sign(&id, &message)).await?;
        Ok(note::signed_note(
            &body,
            &self.origin,
            &self.key.key.public_key,
            &signature,
        ))
    }
}

/// The audit log.
pub struct AuditLog {
    tree: LogTree,
    checkpoints: sled::Tree,
    /// Makes stored checkpoints durable (entries are flushed by the writer thread).
    flusher: Flusher,
    head: Arc<RwLock<Head>>,
    writer: Writer,
    signer: CheckpointSigner,
    sign_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("head", &self.head())
            .finish()
    }
}

/// A proof that an entry is in the log, against a signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub entry: String,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

/// A proof that an older tree is a prefix of a signed one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
    pub checkpoint: String,
}

fn b64(hash: &Hash) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(hash)
}

impl AuditLog {
    /// Opens the log in `db`, checks it end to end against its latest signed checkpoint, and
    /// starts the writer.
    pub fn open(db: &sled::Db, signer: CheckpointSigner) -> Result<Self, Error> {
        let tree = LogTree::open(db)?;
        Self::open_with_sink(db, tree.clone(), Arc::new(tree), signer)
    }

    /// [`Self::open`], writing through `sink` (tests of the failure paths).
    pub fn open_with_sink(
        db: &sled::Db,
        tree: LogTree,
        sink: Arc<dyn Sink>,
        signer: CheckpointSigner,
    ) -> Result<Self, Error> {
        let checkpoints = db
            .open_tree("audit_checkpoints")
            .map_err(|e| Error::Storage(e.to_string()))?;
        let frontier = verify_stored(&tree, &checkpoints, &signer.verifier_key())?;
        let head = Arc::new(RwLock::new(Head {
            size: frontier.size(),
            root: frontier.root(),
        }));
        let reload_from = tree.clone();
        let writer = Writer::start(
            sink,
            Arc::new(move || Frontier::load(&reload_from, reload_from.size()?)),
            frontier,
            Arc::clone(&head),
        )?;
        Ok(AuditLog {
            tree,
            flusher: Flusher::start(db.clone()).map_err(|e| Error::Storage(e.to_string()))?,
            checkpoints,
            head,
            writer,
            signer,
            sign_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Checks the stored log end to end (see [`verify_stored`]).
    pub fn verify(&self) -> Result<Frontier, Error> {
        verify_stored(&self.tree, &self.checkpoints, &self.signer.verifier_key())
    }

    /// The durable head.
    pub fn head(&self) -> Head {
        *self.head.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Appends an entry and returns its index once it is durable.
    pub async fn append(&self, entry: &AuditEntry) -> Result<u64, Error> {
        self.writer.append(entry.to_bytes()?).await
    }

    /// The stored entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Option<AuditEntry>, Error> {
        self.tree
            .entry(index)?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt(format!("entry {index}: {e}")))
            })
            .transpose()
    }

    /// Entries from `from` on, at most `limit`.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, AuditEntry)>, Error> {
        self.tree
            .entries(from, limit)?
            .into_iter()
            .map(|(index, bytes)| {
                let entry = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt(format!("entry {index}: {e}")))?;
                Ok((index, entry))
            })
            .collect()
    }

    fn latest_checkpoint(&self) -> Result<Option<String>, Error> {
        latest_in(&self.checkpoints)
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<String>, Error> {
        Ok(self
            .checkpoints
            .get(size.to_be_bytes())
            .map_err(|e| Error::Storage(e.to_string()))?
            .map(|note| String::from_utf8_lossy(&note).into_owned()))
    }

    /// The latest checkpoint, signing and storing one of the current head first if the log grew
    /// since. Concurrent callers share one signature: at most one checkpoint per tree size.
    pub async fn checkpoint(&self) -> Result<(Checkpoint, String), Error> {
        let _one_at_a_time = self.sign_lock.lock().await;
        let vkey = self.signer.verifier_key();
        let head = self.head();
        if let Some(note) = self.latest_checkpoint()? {
            let checkpoint = note::verify(&note, &vkey)?;
            if checkpoint.size == head.size {
                return Ok((checkpoint, note));
            }
        }
        let note = self.signer.sign(head).await?;
        self.checkpoints
            .insert(head.size.to_be_bytes(), note.as_bytes())
            .map_err(|e| Error::Storage(e.to_string()))?;
        self.flusher
            .flush()
            .await
            .map_err(|e| Error::Storage(e.to_string()))?;
        Ok((note::verify(&note, &vkey)?, note))
    }

    /// The signed checkpoint at `size`, or the latest (signing one if the log grew).
    async fn signed(&self, size: Option<u64>) -> Result<(Checkpoint, String), Error> {
        match size {
            None => self.checkpoint().await,
            Some(size) => {
                let note = self.checkpoint_at(size)?.ok_or(Error::NoCheckpoint(size))?;
                Ok((note::verify(&note, &self.signer.verifier_key())?, note))
            }
        }
    }

    /// Proves entry `index` against the checkpoint at `size` (default: the latest, which is
    /// signed now if it does not yet cover the entry).
    pub async fn inclusion(&self, index: u64, size: Option<u64>) -> Result<InclusionProof, Error> {
        let (checkpoint, note) = self.signed(size).await?;
        let entry = self
            .tree
            .entry(index)?
            .ok_or(merkle::ProofError::IndexOutOfRange {
                index,
                size: checkpoint.size,
            })?;
        let proof = merkle::inclusion_proof(&self.tree, index, checkpoint.size)?;
        Ok(InclusionProof {
            index,
            size: checkpoint.size,
            entry: String::from_utf8_lossy(&entry).into_owned(),
            proof: proof.iter().map(b64).collect(),
            checkpoint: note,
        })
    }

    /// Proves that the tree of `from` entries is a prefix of the checkpoint at `to` (default:
    /// the latest).
    pub async fn consistency(&self, from: u64, to: Option<u64>) -> Result<ConsistencyProof, Error> {
        let (checkpoint, note) = self.signed(to).await?;
        let proof = merkle::consistency_proof(&self.tree, from, checkpoint.size)?;
        Ok(ConsistencyProof {
            from,
            to: checkpoint.size,
            proof: proof.iter().map(b64).collect(),
            checkpoint: note,
        })
    }

    /// Signs a checkpoint every `interval` while the log grows, until `stop` resolves.
    pub async fn checkpoint_every(
        self: Arc<Self>,
        interval: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(interval) => {
                    if let Err(error) = self.checkpoint().await {
                        tracing::error!(%error, "signing an audit checkpoint");
                    }
                }
            }
        }
        if let Err(error) = self.checkpoint().await {
            tracing::error!(%error, "signing the final audit checkpoint");
        }
    }
}

/// Recomputes the tree from every entry; checks it against the stored subtree hashes and
/// against the latest checkpoint, whose signature must verify under `vkey`. Returns the right
/// edge.
/// Verifies the latest stored checkpoint under `vkey`; one that the same key signed under the
/// origin an earlier version derived from the HTTP domain is accepted too (the key is the trust
/// anchor), and the checkpoints signed from now on carry the fixed origin.
fn verify_latest(note: &str, vkey: &str) -> Result<note::Checkpoint, Error> {
    match note::verify(note, vkey) {
        Err(note::NoteError::Unsigned(_)) => {
            let (_, public_key) = note::parse_verifier_key(vkey)?;
            let earlier = note
                .lines()
                .next()
                .ok_or(note::NoteError::Malformed("no origin"))?;
            let checkpoint = note::verify(note, &note::verifier_key(earlier, &public_key))?;
            tracing::warn!(
                earlier,
                "the latest checkpoint was signed under an earlier origin by the same key; new \
                 checkpoints use the fixed origin"
            );
            Ok(checkpoint)
        }
        other => Ok(other?),
    }
}

pub fn verify_stored(
    tree: &LogTree,
    checkpoints: &sled::Tree,
    vkey: &str,
) -> Result<Frontier, Error> {
    let size = tree.size()?;
    let latest = latest_in(checkpoints)?;
    let signed = latest
        .as_deref()
        .map(|note| verify_latest(note, vkey))
        .transpose()?;
    let mut frontier = Frontier::default();
    let mut mismatch = None;
    let mut next = 0;
    while next < size {
        let batch = tree.entries(next, 10_000)?;
        if batch.is_empty() {
            break;
        }
        for (index, entry) in batch {
            if index != frontier.size() {
                return Err(Error::Tampered(format!(
                    "entry {} is missing",
                    frontier.size()
                )));
            }
            frontier.push(merkle::leaf_hash(&entry), |level, node, hash| {
                if mismatch.is_none() && tree.node(level, node).ok() != Some(hash) {
                    mismatch = Some((level, node));
                }
            });
            if let Some(checkpoint) = signed
                .as_ref()
                .filter(|c| c.size == frontier.size() && c.root != frontier.root())
            {
                return Err(Error::Tampered(format!(
                    "the entries do not hash to the root signed at size {}",
                    checkpoint.size
                )));
            }
            next = index + 1;
        }
    }
    if let Some(checkpoint) = signed.as_ref().filter(|c| c.size > frontier.size()) {
        return Err(Error::Tampered(format!(
            "the log holds {} entries but a checkpoint signed {}",
            frontier.size(),
            checkpoint.size
        )));
    }
    if let Some((level, node)) = mismatch {
        return Err(Error::Tampered(format!(
            "stored subtree hash ({level}, {node}) does not match the entries"
        )));
    }
    Ok(frontier)
}

fn latest_in(checkpoints: &sled::Tree) -> Result<Option<String>, Error> {
    let last = checkpoints
        .iter()
        .next_back()
        .transpose()
        .map_err(|e| Error::Storage(e.to_string()))?;
    Ok(last.map(|(_, note)| String::from_utf8_lossy(&note).into_owned()))
}

#[cfg(test)]
mod tests;
