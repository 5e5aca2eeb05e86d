//! The log's writer.
//!
//! One writer thread owns this appliance's appends. Callers queue entries and wait; the writer
//! takes everything queued, hands it to the [`Sink`] (the tiles on disk,
//! [`super::tiles::TileStore`], or the log several appliances share in PostgreSQL,
//! [`super::shared::SharedLog`]) as one commit that is durable when it returns (group commit),
//! then answers every caller. The sink gives the batch its indexes. A caller is answered only
//! once its entry is durable; if the commit fails, every caller in the batch is told so and the
//! head stays what is durable.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use tokio::sync::oneshot;

use super::Error;
use super::merkle::Hash;

/// The most entries one batch takes.
const MAX_BATCH: usize = 4096;

/// Where the log is written: the tiles on disk or in PostgreSQL; a failing stand-in in tests.
/// A sink publishes each durable head to its readers itself.
pub trait Sink: Send + Sync + 'static {
    /// Appends `entries` as the next leaves and makes them durable with the new head; returns
    /// the first one's index and that head.
    fn append(&self, entries: &[Vec<u8>]) -> Result<(u64, Head), String>;
}

impl Sink for super::tiles::TileStore {
    fn append(&self, entries: &[Vec<u8>]) -> Result<(u64, Head), String> {
        let first = self.head().size;
        super::tiles::TileStore::append(self, first, entries)
            .map(|head| (first, head))
            .map_err(|e| e.to_string())
    }
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
    /// The thread, joined by [`Writer::stop`].
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Writer {
    /// Starts the writer thread over `sink`.
    pub fn start(sink: Arc<dyn Sink>) -> Result<Self, Error> {
        let (jobs, queue) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("audit-writer".to_owned())
            .spawn(move || write_loop(sink.as_ref(), &queue))
            .map_err(|e| Error::Storage(format!("starting the audit writer: {e}")))?;
        Ok(Writer {
            jobs,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        })
    }

    /// A writer with no thread behind it, refusing every entry (what a stopped one is
    /// replaced by).
    pub(super) fn closed() -> Self {
        let (jobs, _) = std::sync::mpsc::channel();
        Writer {
            jobs,
            thread: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Stops taking entries and waits for the thread to end, having answered every entry
    /// queued (and let go of the sink, so that the log can be opened again).
    pub fn stop(self) {
        let Writer { jobs, thread } = self;
        drop(jobs);
        let handle = thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
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

fn write_loop(sink: &dyn Sink, queue: &Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let entries: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|job| std::mem::take(&mut job.entry))
            .collect();
        match sink.append(&entries) {
            Ok((start, _)) => {
                for (offset, job) in batch.into_iter().enumerate() {
                    let _ = job.reply.send(Ok(start + offset as u64));
                }
            }
            Err(reason) => {
                tracing::error!(%reason, entries = batch.len(), "audit log write failed");
                for job in batch {
                    let _ = job.reply.send(Err(Error::Unavailable(reason.clone())));
                }
            }
        }
    }
}
