//! Durable flushes on one thread of ours, shared by every caller waiting at the same time.
//!
//! sled's `flush_async` runs each flush on sled's own I/O thread pool, where it waits for a log
//! buffer that another job on that same pool has to write. Once any transaction has run, a flush
//! holds sled's global concurrency lock for reading while it waits, and a transaction waiting for
//! that lock for writing stops every new reader. Under load (16 clients creating approval
//! requests at once) every pool thread ended up in a flush waiting behind the transaction, the
//! buffer write queued behind them never ran, and the appliance stopped answering. Flushing here,
//! on a thread outside the pool, leaves the pool to the buffer writes; callers that arrive while
//! a flush runs share the next one (group commit), so the cost stays one fsync per batch.

use std::sync::mpsc;

use sled::Db;
use tokio::sync::oneshot;

type Waiter = oneshot::Sender<Result<(), sled::Error>>;

/// A handle on the flushing thread; the thread ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Flusher {
    requests: mpsc::Sender<Waiter>,
}

impl Flusher {
    pub fn start(db: Db) -> std::io::Result<Self> {
        let (requests, incoming) = mpsc::channel::<Waiter>();
        std::thread::Builder::new()
            .name("store-flusher".to_owned())
            .spawn(move || {
                while let Ok(first) = incoming.recv() {
                    // Every write a waiter made came before its request, so one flush started
                    // after taking the requests covers them all.
                    let waiting: Vec<Waiter> =
                        std::iter::once(first).chain(incoming.try_iter()).collect();
                    let outcome = db.flush().map(|_| ());
                    for waiter in waiting {
                        let _ = waiter.send(outcome.clone());
                    }
                }
            })?;
        Ok(Flusher { requests })
    }

    /// Returns once every write made before the call is on disk.
    pub async fn flush(&self) -> Result<(), sled::Error> {
        let stopped = || sled::Error::ReportableBug("the store's flushing thread stopped".into());
        let (waiter, done) = oneshot::channel();
        self.requests.send(waiter).map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }
}
