//! The client's end of `ssh <appliance> session` (see [`crate::ssh::session`]): one channel,
//! requests written as JSON lines with ids, replies matched to them as they come, as many in
//! flight as the appliance's greeting allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use russh::ChannelMsg;
use russh::client::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot};

use super::{Connection, Error, Output, ssh_error};
use crate::ssh::session::PROTOCOL;

/// The longest reply line this client reads.
const MAX_REPLY_LINE: usize = 64 * 1024 * 1024;

/// The requests waiting for their replies; `None` once the session ended.
type Waiting = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Output>>>>>;

/// A session on one channel; [`Session::run`] may be called from many tasks at once.
pub struct Session {
    writer: tokio::sync::Mutex<ChannelWriteHalf<Msg>>,
    waiting: Waiting,
    next_id: AtomicU64,
    /// The appliance's window: requests unanswered at most.
    window: Arc<Semaphore>,
    max_in_flight: usize,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Opens a session on `connection`.
    pub async fn open(connection: &Connection) -> Result<Session, Error> {
        let handle = connection.handle_for_command().await?;
        let channel = handle.channel_open_session().await.map_err(ssh_error)?;
        channel.exec(true, "session").await.map_err(ssh_error)?;
        let (mut read, writer) = channel.split();
        let mut buffer = Vec::new();
        let greeting = next_line(&mut read, &mut buffer)
            .await
            .ok_or_else(|| Error::Ssh("the appliance ended the session at once".into()))?;
        let greeting: Value = serde_json::from_slice(&greeting)
            .map_err(|e| Error::Ssh(format!("the session's greeting is not JSON: {e}")))?;
        if greeting["session"]["protocol"] != PROTOCOL {
            let said = greeting.get("error").unwrap_or(&greeting);
            return Err(Error::Ssh(format!(
                "the appliance did not open a {PROTOCOL} session: {said}"
            )));
        }
        let max_in_flight = greeting["session"]["max_in_flight"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
            .clamp(1, 4096);
        let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_replies(read, buffer, Arc::clone(&waiting)));
        Ok(Session {
            writer: tokio::sync::Mutex::new(writer),
            waiting,
            next_id: AtomicU64::new(0),
            window: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            reader,
        })
    }

    /// How many requests the appliance runs at once on this session.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Whether the session has ended (the appliance or the connection went); requests then
    /// fail and a new session is needed.
    pub fn is_closed(&self) -> bool {
        self.reader.is_finished()
    }

    /// Runs one command line with `stdin` as its input; the reply is what the one-shot form
    /// prints (as compact JSON).
    pub async fn run(&self, words: &[String], stdin: &[u8]) -> Result<Output, Error> {
        let _turn = self
            .window
            .acquire()
            .await
            .map_err(|_| Error::Ssh("the session is closed".into()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = json!({"id": id, "args": words});
        if !stdin.is_empty() {
            request["stdin"] = base64::engine::general_purpose::STANDARD
                .encode(stdin)
                .into();
        }
        let mut line = serde_json::to_vec(&request).map_err(ssh_error)?;
        line.push(b'\n');
        let (tx, rx) = oneshot::channel();
        match lock(&self.waiting).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            None => return Err(Error::Ssh("the session is closed".into())),
        };
        let sent = self.writer.lock().await.data_bytes(line).await;
        if let Err(e) = sent {
            if let Some(waiting) = lock(&self.waiting).as_mut() {
                waiting.remove(&id);
            }
            return Err(ssh_error(e));
        }
        rx.await
            .map_err(|_| Error::Ssh("the session ended before its reply".into()))
    }

    /// Ends the session: EOF, then the replies still due.
    pub async fn close(self) {
        let _ = self.writer.lock().await.eof().await;
        let _ = self.reader.await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The next line the appliance wrote, without its newline; `None` when the channel ended (or a
/// line outgrew [`MAX_REPLY_LINE`]).
async fn next_line(read: &mut ChannelReadHalf, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = buffer.drain(..=end).collect();
            line.pop();
            return Some(line);
        }
        if buffer.len() > MAX_REPLY_LINE {
            return None;
        }
        match read.wait().await? {
            ChannelMsg::Data { data } => buffer.extend_from_slice(&data),
            ChannelMsg::Eof | ChannelMsg::Close => return None,
            _ => {}
        }
    }
}

/// Hands each reply to the request waiting for it; when the session ends, the requests still
/// waiting fail.
async fn read_replies(mut read: ChannelReadHalf, mut buffer: Vec<u8>, waiting: Waiting) {
    while let Some(line) = next_line(&mut read, &mut buffer).await {
        let Ok(reply) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        let Some(id) = reply["id"].as_u64() else {
            // A reply to no request of ours: the session's own error (an overrun); it ends.
            tracing::warn!(reply = %reply, "the appliance ended the session");
            continue;
        };
        let Some(tx) = lock(&waiting).as_mut().and_then(|w| w.remove(&id)) else {
            continue;
        };
        let exit_status = reply["exit_status"]
            .as_u64()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(crate::ssh::reply::FAILED);
        let stdout = serde_json::to_vec(&reply["reply"]).unwrap_or_default();
        let _ = tx.send(Output {
            exit_status,
            stdout,
        });
    }
    // The requests still waiting fail (their senders go), and no new one waits.
    lock(&waiting).take();
}
