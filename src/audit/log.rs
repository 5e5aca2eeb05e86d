//! The log's storage and its writer.
//!
//! Entries and the perfect-subtree hashes they complete live in one sled tree (`audit`):
//! `e ‖ index` → entry bytes, `n ‖ level ‖ index` → hash; each batch of appends is one atomic
//! sled batch, so entries and hashes never disagree after a crash. Signed checkpoints live in
//! `audit_checkpoints` by tree size.
//!
//! One writer thread owns appends. Callers queue entries and wait; the writer takes everything
//! queued, writes it as one batch, makes it durable with one flush (group commit), then answers
//! every caller. A caller is answered only once its entry is on disk; if the write or the flush
//! fails, every caller in the batch is told so and the writer reloads its state from disk.

use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, RwLock};

use sled::Tree;
use tokio::sync::oneshot;

use super::Error;
use super::merkle::{Frontier, Hash, Nodes, ProofError};

/// The most entries one batch takes.
const MAX_BATCH: usize = 4096;

fn entry_key(index: u64) -> [u8; 9] {
    let mut key = [b'e'; 9];
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn node_key(level: u32, index: u64) -> [u8; 10] {
    let mut key = [b'n'; 10];
    key[1] = u8::try_from(level).unwrap_or(u8::MAX);
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Where the log is written: sled in the appliance; a failing stand-in in tests of the writer.
pub trait Sink: Send + Sync + 'static {
    /// Writes entries from `first` on, and the subtree hashes they complete, atomically.
    fn write(
        &self,
        first: u64,
        entries: &[Vec<u8>],
        nodes: &[(u32, u64, Hash)],
    ) -> Result<(), String>;
    /// Makes what was written durable.
    fn sync(&self) -> Result<(), String>;
}

/// The sled tree holding entries and hashes.
#[derive(Debug, Clone)]
pub struct LogTree {
    pub(super) db: sled::Db,
    pub(super) tree: Tree,
}

impl LogTree {
    pub fn open(db: &sled::Db) -> Result<Self, Error> {
        Ok(LogTree {
            db: db.clone(),
            tree: db.open_tree("audit").map_err(storage)?,
        })
    }

    /// How many entries the log holds.
    pub fn size(&self) -> Result<u64, Error> {
        let last = self
            .tree
            .scan_prefix(b"e")
            .next_back()
            .transpose()
            .map_err(storage)?;
        Ok(match last {
            Some((key, _)) => {
                u64::from_be_bytes(key[1..9].try_into().map_err(|_| corrupt("entry key"))?) + 1
            }
            None => 0,
        })
    }

    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .tree
            .get(entry_key(index))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    /// Entries from `from` on, at most `limit`, with their indexes.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        self.tree
            .range(entry_key(from)..entry_key(u64::MAX))
            .take(limit)
            .map(|item| {
                let (key, value) = item.map_err(storage)?;
                let index =
                    u64::from_be_bytes(key[1..9].try_into().map_err(|_| corrupt("entry key"))?);
                Ok((index, value.to_vec()))
            })
            .collect()
    }
}

impl Nodes for LogTree {
    type Error = Error;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Error> {
        let value = self
            .tree
            .get(node_key(level, index))
            .map_err(storage)?
            .ok_or_else(|| corrupt("missing subtree hash"))?;
        value
            .as_ref()
            .try_into()
            .map_err(|_| corrupt("subtree hash"))
    }
}

impl From<ProofError> for Error {
    fn from(e: ProofError) -> Self {
        Error::Proof(e)
    }
}

impl Sink for LogTree {
    fn write(
        &self,
        first: u64,
        entries: &[Vec<u8>],
        nodes: &[(u32, u64, Hash)],
    ) -> Result<(), String> {
        let mut batch = sled::Batch::default();
        for (offset, entry) in entries.iter().enumerate() {
            batch.insert(&entry_key(first + offset as u64)[..], entry.as_slice());
        }
        for (level, index, hash) in nodes {
            batch.insert(&node_key(*level, *index)[..], &hash[..]);
        }
        self.tree.apply_batch(batch).map_err(|e| e.to_string())
    }

    fn sync(&self) -> Result<(), String> {
        self.db.flush().map(|_| ()).map_err(|e| e.to_string())
    }
}

fn storage(e: sled::Error) -> Error {
    Error::Storage(e.to_string())
}

fn corrupt(what: &'static str) -> Error {
    Error::Corrupt(what.to_owned())
}

/// The size and root every reader sees: what is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
}

struct Job {
    entry: Vec<u8>,
    reply: oneshot::Sender<Result<u64, Error>>,
}

/// Queues entries for the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: Sender<Job>,
}

impl Writer {
    /// Starts the writer thread over `sink`, continuing the tree whose right edge is `frontier`;
    /// it publishes each durable head to `head`.
    pub fn start(
        sink: Arc<dyn Sink>,
        reload: Arc<dyn Fn() -> Result<Frontier, Error> + Send + Sync>,
        frontier: Frontier,
        head: Arc<RwLock<Head>>,
    ) -> Result<Self, Error> {
        let (jobs, queue) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || write_loop(sink.as_ref(), reload.as_ref(), frontier, &head, &queue))
            .map_err(|e| Error::Storage(format!("starting the audit writer: {e}")))?;
        Ok(Writer { jobs })
    }

    /// Appends an entry; returns its index once it is durable.
    pub async fn append(&self, entry: Vec<u8>) -> Result<u64, Error> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { entry, reply })
            .map_err(|_| Error::Unavailable("the audit writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the audit writer dropped an entry".into()))?
    }
}

fn write_loop(
    sink: &dyn Sink,
    reload: &(dyn Fn() -> Result<Frontier, Error> + Send + Sync),
    mut frontier: Frontier,
    head: &RwLock<Head>,
    queue: &Receiver<Job>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let start = frontier.size();
        let mut grown = frontier.clone();
        let mut nodes = Vec::new();
        for job in &batch {
            grown.push(
                super::merkle::leaf_hash(&job.entry),
                |level, index, hash| {
                    nodes.push((level, index, hash));
                },
            );
        }
        let entries: Vec<Vec<u8>> = batch.iter().map(|job| job.entry.clone()).collect();
        let outcome = sink
            .write(start, &entries, &nodes)
            .and_then(|()| sink.sync());
        match outcome {
            Ok(()) => {
                frontier = grown;
                *head.write().unwrap_or_else(|p| p.into_inner()) = Head {
                    size: frontier.size(),
                    root: frontier.root(),
                };
                for (offset, job) in batch.into_iter().enumerate() {
                    let _ = job.reply.send(Ok(start + offset as u64));
                }
            }
            Err(reason) => {
                tracing::error!(%reason, entries = batch.len(), "audit log write failed");
                for job in batch {
                    let _ = job.reply.send(Err(Error::Unavailable(reason.clone())));
                }
                // Whatever reached the disk is the truth from here on.
                match reload() {
                    Ok(reloaded) => {
                        frontier = reloaded;
                        *head.write().unwrap_or_else(|p| p.into_inner()) = Head {
                            size: frontier.size(),
                            root: frontier.root(),
                        };
                    }
                    Err(error) => tracing::error!(%error, "audit log state could not be reloaded"),
                }
            }
        }
    }
}
