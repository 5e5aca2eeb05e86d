//! The tamper-evident audit log: every key creation, grant, signature, denial, revocation,
//! approval and offer is an entry in an append-only Merkle tree (RFC 6962 hashing), and the
//! token's checkpoint key signs the tree head as a C2SP checkpoint.
//!
//! - [`merkle`]: hashing, proofs, verification (used by the client too);
//! - [`note`]: checkpoints as signed notes;
//! - [`tiles`]: storage, as C2SP tlog-tiles on disk; [`checkpoints`]: the signed heads;
//! - [`shared`]: the log several appliances share in PostgreSQL, with one sequencer;
//! - [`storage`]: either of the two, as the log reads it;
//! - [`log`]: the group-committing writer;
//! - [`legacy`]: the log as sled kept it before the tiles, read once to move it.
//!
//! Fail-closed: [`AuditLog::append`] returns only once the entry is durable, and callers sign
//! only after it returns. A crash can leave an entry whose signature was never made, never a
//! signature without its entry. Checkpoints are signed on a cadence and on request, never per
//! entry (one per tree size at most), so the signing path costs no extra token call.
//!
//! Start-up reads the head and the tiles' right edge and checks that the edge hashes to the
//! head, and that the tree at the latest signed checkpoint's size hashes to its root: O(log n)
//! reads. Checking every entry against the tiles ([`AuditLog::verify_full`]) is a separate,
//! O(n) pass.

pub mod checkpoints;
pub mod legacy;
pub mod log;
pub mod merkle;
pub mod note;
pub mod shared;
pub mod storage;
pub mod tiles;
pub mod words;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::checkpoints::Checkpoints;
use self::legacy::LogTree;
use self::log::{Head, Sink, Writer};
use self::merkle::{Frontier, Hash};
use self::note::Checkpoint;
use self::shared::SharedLog;
use self::storage::LogStore;
use self::tiles::TileStore;
pub use self::words::{Action, Outcome};
use crate::hsm::{Token, TokenKey};
use crate::provision::ApplianceKey;

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

impl From<merkle::ProofError> for Error {
    fn from(e: merkle::ProofError) -> Self {
        Error::Proof(e)
    }
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
    /// The SSH key (SHA-256 fingerprint) linked to or unlinked from the actor's identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_key: Option<String>,
    /// For the approval of a legal agreement: the electronic-signature disclosure the approver
    /// was shown, `esign-1:sha256:<hex of its text>` ([`crate::approval::disclosure::tag`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
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

/// What a stranger may see of an entry: its leaf hash (hex), which anyone can check against
/// the level-0 tile, and what kind of thing happened; as JSON with sorted keys. Never the
/// actor, readers, keys, requests, hashes of payloads or metadata: those are for the entry's
/// readers, over SSH.
pub fn public_entry(entry: &[u8]) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    struct Public<'a> {
        action: &'a str,
        leaf_hash: String,
    }
    #[derive(Deserialize)]
    struct Kind {
        action: Action,
    }
    let action = serde_json::from_slice::<Kind>(entry)
        .map(|k| k.action)
        .unwrap_or_default();
    let public = Public {
        action: action.as_str(),
        leaf_hash: crate::hex::encode(&merkle::leaf_hash(entry)),
    };
    serde_json::to_vec(&public).map_err(|e| Error::Storage(format!("a public entry: {e}")))
}

/// How checkpoints are named and signed: by the active checkpoint key, under the origin the
/// first one fixed; a stored checkpoint verifies under any generation of the key.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    token: Token,
    key: ApplianceKey,
    origin: String,
    /// The verifier keys of every generation, the active one first.
    verifiers: Vec<String>,
    /// The notes handing the log from each generation to the next, oldest first.
    handovers: Vec<String>,
}

impl CheckpointSigner {
    /// The signer for the checkpoint keys among `keys`; `None` without an active one.
    pub fn new(token: Token, keys: &[ApplianceKey]) -> Option<Self> {
        let key = crate::provision::active(keys, crate::provision::KeyRole::Checkpoint)?.clone();
        let origin = crate::provision::audit_origin(keys)?;
        let mut verifiers = vec![note::verifier_key(&origin, &key.key.public_key)];
        verifiers.extend(
            keys.iter()
                .filter(|k| {
                    k.role == crate::provision::KeyRole::Checkpoint && k.object_id != key.object_id
                })
                .map(|k| note::verifier_key(&origin, &k.key.public_key)),
        );
        Some(CheckpointSigner {
            token,
            key,
            origin,
            verifiers,
            handovers: Vec::new(),
        })
    }

    /// With the notes that hand the log from one generation of the key to the next
    /// ([`crate::provision::handovers`]), which clients follow from the key they pinned.
    pub fn with_handovers(self, handovers: Vec<String>) -> Self {
        CheckpointSigner { handovers, ..self }
    }

    /// The handover notes, oldest first.
    pub fn handovers(&self) -> &[String] {
        &self.handovers
    }

    /// `origin+keyhash+key` of the active key: what verifiers pin.
    pub fn verifier_key(&self) -> String {
        self.verifiers[0].clone()
    }

    /// Every generation's verifier key, the active one first.
    pub fn verifier_keys(&self) -> &[String] {
        &self.verifiers
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

/// An appliance's own cosigner, where several share the log: its key (in its token alone,
/// never in a backup) cosigns each checkpoint it has checked against the tree and against
/// every checkpoint it saw before (C2SP `tlog-cosignature`). A client that requires the
/// cosignatures of two appliances holds a checkpoint to more than the checkpoint key, which
/// every token of the group holds.
#[derive(Debug, Clone)]
struct Cosigner {
    key: TokenKey,
    /// `ORIGIN/cosigner/APPLIANCE`.
    name: String,
}

impl Cosigner {
    /// `name+keyhash+key`: what a client requires with `sshsign audit check --cosigner`.
    fn verifier_key(&self) -> String {
        note::cosigner_key(&self.name, &self.key.public_key)
    }

    /// The cosignature line over `note`'s body, made now.
    async fn line(&self, token: &Token, note: &str) -> Result<String, Error> {
        let time = u64::try_from(crate::time::now()).unwrap_or_default();
        let message = note::cosigned_message(&note::body_of(note)?, time);
        let id = self.key.object_id.clone();
        let signature = token.call(move |hsm| hsm.sign(&id, &message)).await?;
        Ok(note::cosignature_line(
            &self.name,
            &self.key.public_key,
            time,
            &signature,
        ))
    }
}

/// How far the full check of the stored log got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Not begun.
    Pending,
    Checking,
    /// Every entry matched the tiles, the head and the latest checkpoint.
    Verified,
    /// Something did not match: nothing more is signed or logged.
    Tampered,
}

/// Where the full check of the stored log stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = AuditCheck)]
pub struct Integrity {
    pub state: CheckState,
    /// Entries read back and hashed so far.
    pub checked: u64,
    /// Entries the check covers (the log's size when it began).
    pub of: u64,
    /// What did not match, once it is `tampered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The audit log.
pub struct AuditLog {
    integrity: Arc<std::sync::Mutex<Integrity>>,
    store: Arc<LogStore>,
    writer: Writer,
    signer: CheckpointSigner,
    cosigner: Option<Cosigner>,
    sign_lock: tokio::sync::Mutex<()>,
}

impl Drop for AuditLog {
    /// Ends the writer thread, so that nothing holds the tiles once the log is gone.
    fn drop(&mut self) {
        let writer = std::mem::replace(&mut self.writer, Writer::closed());
        writer.stop();
    }
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
    /// Opens the log in `root` (moving a log that `legacy`, the sled store if there is one,
    /// still holds into it first),
    /// checks it against its latest signed checkpoint, and starts the writer. At most
    /// `cache_bytes` of tiles stay in memory.
    pub fn open(
        root: &Path,
        legacy: Option<&sled::Db>,
        signer: CheckpointSigner,
        cache_bytes: usize,
    ) -> Result<Self, Error> {
        let tiles = Arc::new(TileStore::open(root, cache_bytes)?);
        let store = LogStore::files(root, tiles)?;
        Self::open_with_sink(legacy, store.sink(), store, signer)
    }

    /// Opens the log several appliances share in `db`, keeping the checkpoints this appliance
    /// sees under `local` (in `witnessed/`); checks it against the latest signed checkpoint, and against the
    /// latest this appliance saw (a database restored to an older state is refused).
    pub fn open_shared(
        db: crate::store::postgres::Postgres,
        local: &Path,
        signer: CheckpointSigner,
        cache_bytes: usize,
    ) -> Result<Self, Error> {
        if local.join("head").is_file() {
            tracing::warn!(
                path = %local.display(),
                "a log in files is here from before the store moved to the database; it is \
                 not moved, and what it signed still verifies against its own tiles"
            );
        }
        let witnessed = local.join("witnessed");
        let store = LogStore::Shared(Arc::new(SharedLog::open(
            db,
            Some(&witnessed),
            cache_bytes,
        )?));
        Self::open_with_sink(None, store.sink(), store, signer)
    }

    /// Opens the log in `store`, writing through `sink` (tests of the failure paths put a
    /// failing one in front of the store's own).
    pub fn open_with_sink(
        legacy: Option<&sled::Db>,
        sink: Arc<dyn Sink>,
        store: LogStore,
        signer: CheckpointSigner,
    ) -> Result<Self, Error> {
        if let (Some(legacy), LogStore::Files { tiles, checkpoints }) = (legacy, &store) {
            migrate(legacy, tiles, checkpoints)?;
        }
        check_against_checkpoint(&store, signer.verifier_keys())?;
        let writer = Writer::start(sink)?;
        Ok(AuditLog {
            integrity: Arc::new(std::sync::Mutex::new(Integrity {
                state: CheckState::Pending,
                checked: 0,
                of: 0,
                problem: None,
            })),
            store: Arc::new(store),
            writer,
            signer,
            cosigner: None,
            sign_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Reads every entry back and checks that it hashes to the tiles, the head and the latest
    /// signed checkpoint; `progress` hears how many entries are done. O(n): for `sshsign-server
    /// audit verify --full` and the background check.
    pub fn verify_full(&self, progress: impl FnMut(u64)) -> Result<Frontier, Error> {
        verify_full(&self.store, self.signer.verifier_keys(), progress)
    }

    /// Starts the full check on a thread of its own. Until it ends the log serves as usual;
    /// if it finds a mismatch, every append and checkpoint is refused from then on, so nothing
    /// more is signed over a log that is not what was signed.
    pub fn check_in_background(self: &Arc<Self>) -> std::io::Result<()> {
        let log = Arc::clone(self);
        std::thread::Builder::new()
            .name("audit-check".to_owned())
            .spawn(move || {
                let of = log.head().size;
                log.set_integrity(CheckState::Checking, 0, of, None);
                let outcome = log.verify_full(|checked| {
                    log.set_integrity(CheckState::Checking, checked.min(of), of, None);
                });
                match outcome {
                    Ok(frontier) => {
                        tracing::info!(entries = frontier.size(), "audit log checked in full");
                        log.set_integrity(
                            CheckState::Verified,
                            frontier.size(),
                            frontier.size(),
                            None,
                        );
                    }
                    Err(error) => {
                        tracing::error!(%error, "the audit log's full check failed: signing stops");
                        let checked = log.integrity().checked;
                        log.set_integrity(
                            CheckState::Tampered,
                            checked,
                            of,
                            Some(error.to_string()),
                        );
                    }
                }
            })
            .map(|_| ())
    }

    fn set_integrity(&self, state: CheckState, checked: u64, of: u64, problem: Option<String>) {
        *self.integrity.lock().unwrap_or_else(|p| p.into_inner()) = Integrity {
            state,
            checked,
            of,
            problem,
        };
    }

    /// Where the full check stands.
    pub fn integrity(&self) -> Integrity {
        let mut integrity = self
            .integrity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // A mismatch found while appending stops the log as the full check's does.
        if integrity.state != CheckState::Tampered
            && let Some(problem) = self.store.tampered()
        {
            integrity.state = CheckState::Tampered;
            integrity.problem = Some(problem);
        }
        integrity
    }

    /// Refuses when the full check found a mismatch.
    fn check_intact(&self) -> Result<(), Error> {
        let integrity = self.integrity();
        match integrity.problem {
            Some(problem) if integrity.state == CheckState::Tampered => {
                Err(Error::Tampered(problem))
            }
            _ => Ok(()),
        }
    }

    /// Where the log is kept.
    pub fn store(&self) -> &LogStore {
        &self.store
    }

    /// Tile `path` (as the specification names it) as anyone may see it: hash tiles as stored;
    /// an entry bundle with each entry replaced by its [`public_entry`], since entries name
    /// users, keys and requests that only their readers see. `None` for a path the
    /// specification does not name or the log does not hold yet.
    pub fn served_tile(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(tile) = tiles::Tile::parse(path) else {
            return Ok(None);
        };
        let Some(bytes) = self.store.read(tile)? else {
            return Ok(None);
        };
        Ok(Some(match tile {
            tiles::Tile::Hashes { .. } => bytes.to_vec(),
            tiles::Tile::Entries { .. } => {
                let public = tiles::bundle_entries(&bytes)?
                    .into_iter()
                    .map(public_entry)
                    .collect::<Result<Vec<_>, _>>()?;
                tiles::bundle_bytes(public.iter().map(Vec::as_slice))
            }
        }))
    }

    /// The latest checkpoint as stored (the specification's `checkpoint`).
    pub fn latest_note(&self) -> Result<Option<String>, Error> {
        self.store.latest_note()
    }

    /// The durable head, as this appliance last saw it (cheap: for health and logs).
    pub fn head(&self) -> Head {
        self.store.head()
    }

    /// The durable head, read again where other appliances append too.
    pub fn latest_head(&self) -> Result<Head, Error> {
        self.store.refresh()
    }

    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// With `key` (in this appliance's token) cosigning the checkpoints of a log several
    /// appliances share, as the appliance named `appliance`.
    pub fn with_cosigner(mut self, key: TokenKey, appliance: &str) -> Self {
        let name = format!("{}/cosigner/{appliance}", self.signer.origin);
        self.cosigner = Some(Cosigner { key, name });
        self
    }

    /// This appliance's cosigner key, `name+keyhash+key`, where it cosigns checkpoints.
    pub fn cosigner_key(&self) -> Option<String> {
        self.cosigner.as_ref().map(Cosigner::verifier_key)
    }

    /// The notes that hand the log from each checkpoint key to the next, oldest first.
    pub fn handovers(&self) -> &[String] {
        self.signer.handovers()
    }

    /// Whether the latest checkpoint was signed by an earlier generation of the key: the log
    /// then takes an entry saying so, and the next checkpoint is the active key's.
    pub fn key_was_handed_over(&self) -> Result<bool, Error> {
        Ok(self
            .latest_checkpoint()?
            .is_some_and(|note| note::verify(&note, &self.signer.verifier_key()).is_err()))
    }

    /// Appends an entry and returns its index once it is durable.
    pub async fn append(&self, entry: &AuditEntry) -> Result<u64, Error> {
        self.check_intact()?;
        self.writer.append(entry.to_bytes()?).await
    }

    /// The stored entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Option<AuditEntry>, Error> {
        self.store
            .entry(index)?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Corrupt(format!("entry {index}: {e}")))
            })
            .transpose()
    }

    /// Entries from `from` on, at most `limit`.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, AuditEntry)>, Error> {
        self.store
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
        Ok(self.store.latest_checkpoint()?.map(|(_, note)| note))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<String>, Error> {
        self.store.checkpoint_at(size)
    }

    /// The latest checkpoint, signing and storing one of the current head first if the log grew
    /// since, and cosigned by this appliance where several share the log. Concurrent callers
    /// share one signature: at most one checkpoint per tree size.
    pub async fn checkpoint(&self) -> Result<(Checkpoint, String), Error> {
        let _one_at_a_time = self.sign_lock.lock().await;
        let (checkpoint, note) = self.latest_or_signed().await?;
        let note = self.cosigned(&checkpoint, note).await?;
        Ok((checkpoint, note))
    }

    /// The latest checkpoint, once the log extends what this appliance saw; a new one of the
    /// head if the log grew since.
    async fn latest_or_signed(&self) -> Result<(Checkpoint, String), Error> {
        self.check_intact()?;
        let store = Arc::clone(&self.store);
        let vkeys = self.signer.verifier_keys().to_vec();
        // Where other appliances append too: their entries count, and the tree must still
        // extend what this appliance saw before it signs over it.
        let (head, latest) = self
            .blocking(move || {
                let head = store.refresh()?;
                if let Some((_, seen)) = store.witnessed()? {
                    check_extends(&store, &seen, &vkeys, Extends::Witnessed)?;
                }
                Ok((head, store.latest_checkpoint()?))
            })
            .await?;
        if let Some((_, note)) = latest {
            let checkpoint = verify_latest(&note, self.signer.verifier_keys())?;
            // Another appliance may have signed a larger tree since this one read the head.
            if checkpoint.size >= head.size {
                let (store, size, seen) = (Arc::clone(&self.store), checkpoint.size, note.clone());
                self.blocking(move || store.witness(size, &seen)).await?;
                return Ok((checkpoint, note));
            }
            // The log grew past it. Cosigned first, it carries the cosignature of each
            // appliance that saw it before the next was signed.
            self.cosigned(&checkpoint, note).await?;
        }
        let note = self.signer.sign(head).await?;
        let store = Arc::clone(&self.store);
        let note = self
            .blocking(move || store.keep_checkpoint(head.size, &note))
            .await?;
        Ok((verify_latest(&note, self.signer.verifier_keys())?, note))
    }

    /// `note`, cosigned by this appliance if it has a cosigner and has not cosigned it yet: only
    /// once the tree holds the checkpoint as a prefix, and only if this appliance saw no larger
    /// one (a cosignature says "the largest tree I have seen").
    async fn cosigned(&self, checkpoint: &Checkpoint, note: String) -> Result<String, Error> {
        let Some(cosigner) = &self.cosigner else {
            return Ok(note);
        };
        let vkey = cosigner.verifier_key();
        if note::has_cosignature(&note, &vkey)? {
            return Ok(note);
        }
        let (store, vkeys, checked) = (
            Arc::clone(&self.store),
            self.signer.verifier_keys().to_vec(),
            note.clone(),
        );
        let larger_seen = self
            .blocking(move || {
                check_extends(&store, &checked, &vkeys, Extends::Latest)?;
                Ok(store.witnessed()?.map(|(size, _)| size))
            })
            .await?
            .is_some_and(|seen| seen > checkpoint.size);
        if larger_seen {
            return Ok(note);
        }
        let line = cosigner.line(&self.signer.token, &note).await?;
        let (store, size) = (Arc::clone(&self.store), checkpoint.size);
        self.blocking(move || store.add_cosignature(size, &vkey, &line))
            .await
    }

    /// Runs `work` on a blocking thread; a mismatch it finds stops the log, as the full
    /// check's does.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let outcome = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Error::Storage(format!("reading the audit log: {e}")))?;
        if let Err(Error::Tampered(problem)) = &outcome {
            tracing::error!(%problem, "the audit log does not match what was signed: signing stops");
            let integrity = self.integrity();
            self.set_integrity(
                CheckState::Tampered,
                integrity.checked,
                integrity.of,
                Some(problem.clone()),
            );
        }
        outcome
    }

    /// The signed checkpoint at `size`, or the latest (signing one if the log grew).
    async fn signed(&self, size: Option<u64>) -> Result<(Checkpoint, String), Error> {
        match size {
            None => self.checkpoint().await,
            Some(size) => {
                let note = self.checkpoint_at(size)?.ok_or(Error::NoCheckpoint(size))?;
                Ok((verify_latest(&note, self.signer.verifier_keys())?, note))
            }
        }
    }

    /// Proves entry `index` against the checkpoint at `size` (default: the latest, which is
    /// signed now if it does not yet cover the entry).
    pub async fn inclusion(&self, index: u64, size: Option<u64>) -> Result<InclusionProof, Error> {
        let (checkpoint, note) = self.signed(size).await?;
        let entry = self
            .store
            .entry(index)?
            .ok_or(merkle::ProofError::IndexOutOfRange {
                index,
                size: checkpoint.size,
            })?;
        let proof = merkle::inclusion_proof(&*self.store, index, checkpoint.size)?;
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
        let proof = merkle::consistency_proof(&*self.store, from, checkpoint.size)?;
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

/// Verifies a stored checkpoint under the first of `vkeys` (every generation of the checkpoint
/// key) that signed it.
fn verify_latest(note: &str, vkeys: &[String]) -> Result<note::Checkpoint, Error> {
    let mut first_error = None;
    for vkey in vkeys {
        match verify_under(note, vkey) {
            Ok(checkpoint) => return Ok(checkpoint),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.unwrap_or(Error::Note(note::NoteError::Malformed("no verifier key"))))
}

/// Verifies a stored checkpoint under `vkey`; one that the same key signed under the origin an
/// earlier version derived from the HTTP domain is accepted too (the key is the trust anchor),
/// and the checkpoints signed from now on carry the fixed origin.
fn verify_under(note: &str, vkey: &str) -> Result<note::Checkpoint, Error> {
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

/// Which checkpoint the log is checked against.
#[derive(Debug, Clone, Copy)]
enum Extends {
    /// The latest the log keeps.
    Latest,
    /// The latest this appliance saw of a log others write too.
    Witnessed,
}

/// The tree at the latest signed checkpoint's size hashes to its root (O(log n) tile reads),
/// and the checkpoint is no larger than the log; for a shared log, the same against the latest
/// checkpoint this appliance saw.
fn check_against_checkpoint(store: &LogStore, vkeys: &[String]) -> Result<(), Error> {
    if let Some((_, note)) = store.latest_checkpoint()? {
        check_extends(store, &note, vkeys, Extends::Latest)?;
    }
    if let Some((_, note)) = store.witnessed()? {
        check_extends(store, &note, vkeys, Extends::Witnessed)?;
    }
    Ok(())
}

/// The log holds the tree `note` signs, as a prefix.
fn check_extends(
    store: &LogStore,
    note: &str,
    vkeys: &[String],
    against: Extends,
) -> Result<(), Error> {
    let signed = verify_latest(note, vkeys)?;
    let size = store.refresh()?.size;
    let (short, differs) = match against {
        Extends::Latest => (
            format!(
                "the log holds {size} entries but a checkpoint signed {}",
                signed.size
            ),
            format!(
                "the log does not hash to the root signed at size {}",
                signed.size
            ),
        ),
        Extends::Witnessed => (
            format!(
                "the log holds {size} entries but this appliance saw a checkpoint of {}: was \
                 the database restored from an older state?",
                signed.size
            ),
            format!(
                "the log does not hash to the root this appliance saw signed at size {}: was \
                 the database restored from an older state, or rewritten?",
                signed.size
            ),
        ),
    };
    if signed.size > size {
        return Err(Error::Tampered(short));
    }
    if store.root_at(signed.size)? != signed.root {
        return Err(Error::Tampered(differs));
    }
    Ok(())
}

/// Reads every entry, recomputes the tree, and checks each tile hash, the head's root and the
/// latest checkpoint's root against it.
fn verify_full(
    store: &LogStore,
    vkeys: &[String],
    mut progress: impl FnMut(u64),
) -> Result<Frontier, Error> {
    use self::merkle::Nodes as _;
    let head = store.refresh()?;
    let signed = store
        .latest_checkpoint()?
        .filter(|(size, _)| *size <= head.size)
        .map(|(_, note)| verify_latest(&note, vkeys))
        .transpose()?;
    let mut frontier = Frontier::default();
    let mut mismatch = None;
    while frontier.size() < head.size {
        // Only up to the head taken at the start: appends go on meanwhile.
        let left = usize::try_from(head.size - frontier.size()).unwrap_or(usize::MAX);
        let batch = store.entries(frontier.size(), left.min(tiles::path::WIDTH as usize))?;
        if batch.is_empty() {
            return Err(Error::Tampered(format!(
                "entry {} is missing",
                frontier.size()
            )));
        }
        for (_, entry) in batch {
            frontier.push(merkle::leaf_hash(&entry), |level, node, hash| {
                if mismatch.is_none()
                    && level % tiles::path::HEIGHT == 0
                    && store.node(level, node).ok() != Some(hash)
                {
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
        }
        progress(frontier.size());
    }
    if let Some((level, node)) = mismatch {
        return Err(Error::Tampered(format!(
            "the tile hash ({level}, {node}) does not match the entries"
        )));
    }
    if frontier.root() != head.root {
        return Err(Error::Tampered(
            "the entries do not hash to the head".into(),
        ));
    }
    Ok(frontier)
}

/// What checking a stopped log's every entry found (`sshsign-server audit verify --full`).
#[derive(Debug, Clone, Serialize)]
pub struct FullCheck {
    pub entries: u64,
    /// Base64, as checkpoints write it.
    pub root: String,
    /// The latest signed checkpoint's size, which the entries were checked against.
    pub checkpoint_size: Option<u64>,
}

/// Checks the log under `root` entry by entry against its tiles, its head and its latest
/// checkpoint, which must verify under `vkey`. It opens the log as start-up does (applying its
/// write-ahead file), so the appliance must be stopped: the log's lock refuses a second opener.
pub fn verify_directory(
    root: &Path,
    vkey: &str,
    progress: impl FnMut(u64),
) -> Result<FullCheck, Error> {
    let tiles = Arc::new(TileStore::open(root, 16 << 20)?);
    check_store(&LogStore::files(root, tiles)?, vkey, progress)
}

/// The start-up check, then every entry, of the log in `store`.
fn check_store(
    store: &LogStore,
    vkey: &str,
    progress: impl FnMut(u64),
) -> Result<FullCheck, Error> {
    let vkeys = [vkey.to_owned()];
    check_against_checkpoint(store, &vkeys)?;
    let frontier = verify_full(store, &vkeys, progress)?;
    Ok(FullCheck {
        entries: frontier.size(),
        root: b64(&frontier.root()),
        // In a shared log, one signed since the check began may be larger.
        checkpoint_size: store
            .latest_checkpoint()?
            .map(|(size, _)| size)
            .filter(|size| *size <= frontier.size()),
    })
}

/// Checks the log several appliances share in `db` entry by entry, as [`verify_directory`]
/// does a directory's; the appliances may go on appending meanwhile (the check covers the log
/// as it was when it began).
pub fn verify_database(
    db: crate::store::postgres::Postgres,
    vkey: &str,
    progress: impl FnMut(u64),
) -> Result<FullCheck, Error> {
    let store = LogStore::Shared(Arc::new(SharedLog::open(db, None, 16 << 20)?));
    check_store(&store, vkey, progress)
}

/// Copies the log several appliances share in `db`, up to its latest checkpoint (which must
/// verify under `vkey`), into a new tile directory `to`: what `sshsign audit check --tiles` and
/// [`verify_directory`] read, for an offline check or an archive. Every entry is hashed again on
/// the way, and the copy must hash to the checkpoint's root.
pub fn export_database(
    db: crate::store::postgres::Postgres,
    vkey: &str,
    to: &Path,
    mut progress: impl FnMut(u64),
) -> Result<FullCheck, Error> {
    let store = LogStore::Shared(Arc::new(SharedLog::open(db, None, 16 << 20)?));
    let vkeys = [vkey.to_owned()];
    let (size, note) = store.latest_checkpoint()?.ok_or(Error::NoCheckpoint(0))?;
    let signed = verify_latest(&note, &vkeys)?;
    if std::fs::read_dir(to).is_ok_and(|mut listing| listing.next().is_some()) {
        return Err(Error::Storage(format!(
            "{} is not empty: a copy goes in a new directory",
            to.display()
        )));
    }
    let tiles = TileStore::open(to, 16 << 20)?;
    copy_into(
        &tiles,
        size,
        |from, limit| store.entries(from, limit),
        &mut progress,
    )?;
    if tiles.head().root != signed.root {
        return Err(Error::Tampered(format!(
            "the entries do not hash to the root signed at size {size}"
        )));
    }
    tiles.sync_now()?;
    Checkpoints::open(to)?.append(size, &note)?;
    Ok(FullCheck {
        entries: size,
        root: b64(&signed.root),
        checkpoint_size: Some(size),
    })
}

/// Appends to `tiles` the entries from its head up to `size`, read in batches through
/// `read(from, limit)`; `progress` hears each size reached. A batch that does not begin where
/// the tiles end means an entry is missing.
fn copy_into(
    tiles: &TileStore,
    size: u64,
    mut read: impl FnMut(u64, usize) -> Result<Vec<(u64, Vec<u8>)>, Error>,
    mut progress: impl FnMut(u64),
) -> Result<(), Error> {
    while tiles.head().size < size {
        let next = tiles.head().size;
        let left = usize::try_from(size - next).unwrap_or(usize::MAX);
        let batch = read(next, left.min(4096))?;
        if batch.first().map(|(index, _)| *index) != Some(next) {
            return Err(Error::Tampered(format!("entry {next} is missing")));
        }
        let entries: Vec<Vec<u8>> = batch.into_iter().map(|(_, entry)| entry).collect();
        tiles.append(next, &entries)?;
        progress(tiles.head().size);
    }
    Ok(())
}

/// Moves a log that sled still holds (versions before the tiles) into the tiles, with the same
/// leaves, so every checkpoint signed and every proof saved still verifies; then drops it from
/// sled. A crash midway resumes where the tiles' head stands.
fn migrate(db: &sled::Db, tiles: &TileStore, checkpoints: &Checkpoints) -> Result<(), Error> {
    if !db.tree_names().iter().any(|name| name.as_ref() == b"audit") {
        return Ok(());
    }
    let old = LogTree::open(db)?;
    let size = old.size()?;
    let next = tiles.head().size;
    if next > size {
        return Err(Error::Corrupt(format!(
            "the tiles hold {next} entries, more than the {size} being moved into them"
        )));
    }
    let moved = size - next;
    copy_into(tiles, size, |from, limit| old.entries(from, limit), |_| {})?;
    let kept = checkpoints.latest()?.map(|(size, _)| size);
    let mut notes = 0;
    for (size, note) in old.checkpoints()? {
        if kept.is_none_or(|k| size > k) {
            checkpoints.append(size, &note)?;
            notes += 1;
        }
    }
    old.drop_trees()?;
    tracing::info!(
        entries = moved,
        checkpoints = notes,
        "moved the audit log from sled into tiles"
    );
    Ok(())
}

#[cfg(test)]
mod tests;
