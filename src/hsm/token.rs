//! [`Token`]: the async face of an [`Hsm`]. Calls run on a small pool of dedicated OS threads, one
//! per token session, never on tokio's workers.
//!
//! Dedicated threads rather than tokio's blocking pool: a PKCS#11 module keeps per-thread state
//! (SoftHSM decodes each private key through OpenSSL, whose caches and allocator arenas are per
//! thread), and a call that lands on whichever blocking thread is free runs markedly slower than
//! one on a thread that signs all day. With as many threads as sessions, each thread also finds
//! a session free when it takes a job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{Error, Hsm, Result};

type Job = Box<dyn FnOnce(&dyn Hsm) + Send>;

/// What a token thread is sent: a call, or word to finish.
enum Message {
    Call(Job),
    Stop,
}

/// A shared handle to the token and its worker threads; the threads stop at [`Token::stop`],
/// or when the last handle is dropped (which waits for them).
#[derive(Clone)]
pub struct Token {
    hsm: Arc<dyn Hsm>,
    jobs: Sender<Message>,
    usage: Arc<Usage>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// How much the token has been asked to do: calls, and time spent in them (summed over its
/// threads), since start.
#[derive(Debug, Default)]
struct Usage {
    calls: AtomicU64,
    busy_nanos: AtomicU64,
}

impl Usage {
    fn record(&self, busy: Duration) {
        let nanos = u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl Drop for Token {
    /// The last handle stops the threads, so none is left inside the module afterwards.
    fn drop(&mut self) {
        if Arc::strong_count(&self.threads) == 1 {
            self.stop();
        }
    }
}

/// A reading of [`Token::usage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUsage {
    pub calls: u64,
    pub busy: Duration,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("hsm", &self.hsm).finish()
    }
}

impl Token {
    /// Starts one worker thread per token session.
    pub fn new(hsm: Arc<dyn Hsm>) -> Result<Self> {
        let (jobs, queue) = channel::<Message>();
        let queue = Arc::new(Mutex::new(queue));
        let usage = Arc::new(Usage::default());
        let mut threads = Vec::new();
        for n in 0..hsm.describe().sessions.max(1) {
            let (hsm, queue) = (Arc::clone(&hsm), Arc::clone(&queue));
            let thread = std::thread::Builder::new()
                .name(format!("token-{n}"))
                .spawn(move || work(hsm.as_ref(), &queue))
                .map_err(|e| Error::Worker(format!("starting a token thread: {e}")))?;
            threads.push(thread);
        }
        Ok(Token {
            hsm,
            jobs,
            usage,
            threads: Arc::new(Mutex::new(threads)),
        })
    }

    /// Lets the token threads finish the calls already queued, then waits for them to end;
    /// later calls fail. Blocking: for shutdown, so no thread is inside the module while the
    /// process exits (a PKCS#11 module's own teardown at exit may not wait for them).
    pub fn stop(&self) {
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for _ in &threads {
            let _ = self.jobs.send(Message::Stop);
        }
        let me = std::thread::current().id();
        for thread in threads {
            // A token thread never waits for itself (it may drop the last handle in a call).
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
    }

    /// Runs `f` against the token on a token thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&dyn Hsm) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let usage = Arc::clone(&self.usage);
        let job: Job = Box::new(move |hsm| {
            let started = Instant::now();
            let result = f(hsm);
            // Counted before the caller hears back, so a reading taken after a call covers it.
            usage.record(started.elapsed());
            let _ = reply.send(result);
        });
        self.jobs
            .send(Message::Call(job))
            .map_err(|_| Error::Worker("the token threads have stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| Error::Worker("a token thread dropped a call".to_owned()))?
    }

    /// Calls made so far and the time the token threads spent in them.
    pub fn usage(&self) -> TokenUsage {
        TokenUsage {
            calls: self.usage.calls.load(Ordering::Relaxed),
            busy: Duration::from_nanos(self.usage.busy_nanos.load(Ordering::Relaxed)),
        }
    }

    /// The blocking token, for code that already runs off the async workers.
    pub fn blocking(&self) -> &dyn Hsm {
        self.hsm.as_ref()
    }

    /// Random bytes from the token.
    pub async fn random<const N: usize>(&self) -> Result<[u8; N]> {
        self.call(|hsm| {
            let mut out = [0u8; N];
            hsm.random(&mut out)?;
            Ok(out)
        })
        .await
    }
}

fn work(hsm: &dyn Hsm, queue: &Mutex<Receiver<Message>>) {
    loop {
        let job = {
            let queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.recv()
        };
        match job {
            Ok(Message::Call(job)) => job(hsm),
            Ok(Message::Stop) | Err(_) => return,
        }
    }
}
