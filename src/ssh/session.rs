//! `ssh <appliance> session`: many requests over one channel, many in flight.
//!
//! Each SSH command costs a channel: an open, an exec, an EOF, a close, each a round trip or a
//! message both ends handle. A client that sends many small requests (an agent, the MCP server,
//! a pipeline) opens one channel with `session` and writes newline-delimited JSON requests:
//!
//! ```text
//! {"id": 7, "command": "sign --type git --key-id ak_…", "stdin": "<base64>"}
//! {"id": "b", "args": ["keys"]}
//! ```
//!
//! and reads one line per request, in the order they finish, each with its request's `id`:
//!
//! ```text
//! {"id": 7, "exit_status": 0, "reply": {…the one-shot reply…}}
//! ```
//!
//! The first line the appliance writes is a greeting with the protocol's name and its limits.
//! Requests run as the one-shot commands do ([`channel::run_command`]): the same grammar,
//! authorization, audit entries and replies; the identity is checked again for each (an
//! unlinked key stops at once). At most [`MAX_IN_FLIGHT`] run at once; the rest wait in order,
//! so a busy token slows the session rather than failing it. A client that writes far more than
//! it reads (over [`MAX_QUEUED`] bytes not yet taken) has its session ended with a reason. EOF
//! from the client ends the session once every request under way is answered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;
use russh::ChannelId;
use russh::server::Handle;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::channel::{self, Identity};
use super::grammar::{self, Command};
use super::reply::{self, Reply};
use crate::appliance::{Appliance, MAX_PAYLOAD};

/// The protocol the greeting names; a client checks it before it writes.
pub const PROTOCOL: &str = "sshsign-session-1";
/// Requests one session runs at once; the greeting says so, and a client that keeps within it
/// never waits on the appliance's side.
pub const MAX_IN_FLIGHT: usize = 64;
/// The longest request line: a whole payload in base64, and room for the command.
pub const MAX_LINE: usize = MAX_PAYLOAD.div_ceil(3) * 4 + 64 * 1024;
/// Bytes a client may have written that the session has not yet taken; past them the session
/// ends (the client ignored the greeting's window and every reply).
pub const MAX_QUEUED: usize = 4 * MAX_LINE;
/// The longest request `id`, as JSON.
const MAX_ID: usize = 128;

enum Chunk {
    Data(Vec<u8>),
    Eof,
}

/// The connection's end of a session: where the client's bytes go, never waiting.
pub struct Feed {
    tx: mpsc::UnboundedSender<Chunk>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

/// The session's end.
pub struct Intake {
    rx: mpsc::UnboundedReceiver<Chunk>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
}

impl Feed {
    pub fn new() -> (Feed, Intake) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let overflowed = Arc::new(AtomicBool::new(false));
        let intake = Intake {
            rx,
            queued: Arc::clone(&queued),
            overflowed: Arc::clone(&overflowed),
        };
        (
            Feed {
                tx,
                queued,
                overflowed,
            },
            intake,
        )
    }

    /// Passes the client's bytes on; `false` when the session has more than [`MAX_QUEUED`]
    /// bytes not yet taken (it then ends: drop the feed).
    pub fn push(&self, data: &[u8]) -> bool {
        let queued = self.queued.fetch_add(data.len(), Ordering::AcqRel) + data.len();
        if queued > MAX_QUEUED {
            self.overflowed.store(true, Ordering::Release);
            return false;
        }
        self.tx.send(Chunk::Data(data.to_vec())).is_ok()
    }

    /// The client sent EOF.
    pub fn eof(&self) {
        let _ = self.tx.send(Chunk::Eof);
    }
}

/// One request line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    id: Value,
    /// A command line, as after `ssh <appliance>`.
    command: Option<String>,
    /// Or its words.
    args: Option<Vec<String>>,
    /// The command's input (`sign`, `verify`), base64.
    stdin: Option<String>,
}

/// A request ready to run, or the reply that answers it at once.
pub(crate) type Parsed = Result<(Command, Vec<u8>), Reply>;

pub(crate) fn parse(line: &[u8]) -> (Value, Parsed) {
    let request: Request = match serde_json::from_slice(line) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("a request is one JSON object per line: {e}");
            return (Value::Null, Err(usage(message)));
        }
    };
    let id = request.id;
    let id_fits = match &id {
        Value::Null | Value::Number(_) => true,
        Value::String(s) => s.len() <= MAX_ID,
        _ => false,
    };
    if !id_fits {
        let message = format!("id is a number or a string of at most {MAX_ID} bytes");
        return (Value::Null, Err(usage(message)));
    }
    let words = match (request.command, request.args) {
        (Some(line), None) => match grammar::split(line.as_bytes()) {
            Ok(words) => words,
            Err(e) => return (id, Err(Reply::from_split(&e))),
        },
        (None, Some(words)) => words,
        _ => return (id, Err(usage("give either command or args".into()))),
    };
    let command = match grammar::parse(words) {
        Ok((Command::Session, _)) => {
            return (id, Err(usage("a session cannot start another".into())));
        }
        Ok((command, _)) => command,
        Err(e) => return (id, Err(Reply::from_clap(&e))),
    };
    let stdin = match request.stdin {
        None => Vec::new(),
        Some(text) => match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(bytes) if bytes.len() <= MAX_PAYLOAD => bytes,
            Ok(_) => {
                let error = crate::appliance::Error::PayloadTooLarge { limit: MAX_PAYLOAD };
                return (id, Err(Reply::from_error(&error)));
            }
            Err(e) => return (id, Err(usage(format!("stdin is not base64: {e}")))),
        },
    };
    (id, Ok((command, stdin)))
}

fn usage(message: String) -> Reply {
    Reply::error(reply::USAGE, "invalid_usage", message)
}

/// A reply line.
pub(crate) fn line(id: &Value, reply: &Reply, notice: &str) -> Vec<u8> {
    let mut body = json!({"id": id, "exit_status": reply.exit_status, "reply": reply.body});
    if !notice.is_empty() {
        body["notice"] = Value::String(notice.to_owned());
    }
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Serves a session on `channel` until the client's EOF (or its close), then sends the exit
/// status and EOF.
pub async fn serve(
    handle: Handle,
    channel: ChannelId,
    appliance: Arc<Appliance>,
    identity: Identity,
    mut intake: Intake,
) {
    // A new key registers here, once, as at any first command.
    let caller = match channel::caller_for(identity, Command::Session, &appliance).await {
        Ok((caller, _)) => caller,
        Err(error) => {
            let reply = Reply::from_error(&error);
            let _ = handle.data(channel, reply.to_bytes()).await;
            let _ = handle.exit_status_request(channel, reply.exit_status).await;
            let _ = handle.eof(channel).await;
            return;
        }
    };
    // One writer, so that lines never interleave; it waits for the client's window.
    let (lines, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = {
        let handle = handle.clone();
        tokio::spawn(async move {
            while let Some(bytes) = to_write.recv().await {
                if handle.data(channel, bytes).await.is_err() {
                    break;
                }
            }
        })
    };
    let greeting = json!({"session": {
        "protocol": PROTOCOL,
        "max_in_flight": MAX_IN_FLIGHT,
        "max_line_bytes": MAX_LINE,
    }});
    let mut hello = serde_json::to_vec(&greeting).unwrap_or_default();
    hello.push(b'\n');
    let _ = lines.send(hello);

    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buffer: Vec<u8> = Vec::new();
    // After a line too long: skip to its end.
    let mut skipping = false;
    let mut status = 0;
    loop {
        let data = match intake.rx.recv().await {
            Some(Chunk::Data(data)) => data,
            Some(Chunk::Eof) => break,
            None => {
                if intake.overflowed.load(Ordering::Acquire) {
                    let reply = Reply::error(
                        reply::FAILED,
                        "session_overrun",
                        format!(
                            "more than {MAX_QUEUED} bytes of requests were waiting: keep at \
                             most {MAX_IN_FLIGHT} requests unanswered"
                        ),
                    );
                    let _ = lines.send(line(&Value::Null, &reply, ""));
                    status = reply::FAILED;
                }
                break;
            }
        };
        intake.queued.fetch_sub(data.len(), Ordering::AcqRel);
        buffer.extend_from_slice(&data);
        let mut start = 0;
        while let Some(end) = buffer[start..].iter().position(|&b| b == b'\n') {
            let request = &buffer[start..start + end];
            start += end + 1;
            if std::mem::take(&mut skipping) || request.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let (id, parsed) = parse(request);
            let (command, stdin) = match parsed {
                Ok(ready) => ready,
                Err(reply) => {
                    let _ = lines.send(line(&id, &reply, ""));
                    continue;
                }
            };
            // Waits while MAX_IN_FLIGHT run: the client's further lines wait in the queue.
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let (appliance, caller, lines) =
                (Arc::clone(&appliance), caller.clone(), lines.clone());
            tokio::spawn(async move {
                let (reply, notice) =
                    channel::run_command(appliance, Identity::Known(caller), command, stdin).await;
                let _ = lines.send(line(&id, &reply, &notice));
                drop(permit);
            });
        }
        buffer.drain(..start);
        if buffer.len() > MAX_LINE {
            let reply = usage(format!("a request line is at most {MAX_LINE} bytes"));
            let _ = lines.send(line(&Value::Null, &reply, ""));
            buffer.clear();
            skipping = true;
        }
    }
    // Every request under way is answered before the end.
    let _ = permits.acquire_many(MAX_IN_FLIGHT as u32).await;
    drop(lines);
    let _ = writer.await;
    let _ = handle.exit_status_request(channel, status).await;
    let _ = handle.eof(channel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_a_command_line_or_words() {
        let (id, parsed) = parse(br#"{"id": 3, "command": "keys --limit 5"}"#);
        assert_eq!(id, json!(3));
        assert!(matches!(parsed, Ok((Command::Keys(_), _))));
        let (id, parsed) =
            parse(br#"{"id": "x", "args": ["sign", "--key-id", "ak_1"], "stdin": "aGk="}"#);
        assert_eq!(id, json!("x"));
        match parsed {
            Ok((Command::Sign(_), stdin)) => assert_eq!(stdin, b"hi"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_requests_get_a_usage_reply_with_their_id() {
        for (request, id, code) in [
            (&br#"not json"#[..], Value::Null, "invalid_usage"),
            (br#"{"id": 1}"#, json!(1), "invalid_usage"),
            (
                br#"{"id": 1, "command": "keys", "args": []}"#,
                json!(1),
                "invalid_usage",
            ),
            (
                br#"{"id": 2, "command": "nope"}"#,
                json!(2),
                "unknown_command",
            ),
            (
                br#"{"id": 2, "command": "session"}"#,
                json!(2),
                "invalid_usage",
            ),
            (
                br#"{"id": 4, "command": "sign 'open"}"#,
                json!(4),
                "invalid_usage",
            ),
            (
                br#"{"id": [1], "command": "keys"}"#,
                Value::Null,
                "invalid_usage",
            ),
            (
                br#"{"id": 5, "command": "keys", "extra": 1}"#,
                Value::Null,
                "invalid_usage",
            ),
            (
                br#"{"id": 6, "command": "sign", "stdin": "!!"}"#,
                json!(6),
                "invalid_usage",
            ),
        ] {
            let (got, parsed) = parse(request);
            assert_eq!(got, id, "{}", String::from_utf8_lossy(request));
            let reply = parsed.expect_err("refused");
            assert_eq!(reply.body["error"]["code"], code, "{reply:?}");
        }
        let long = format!(
            r#"{{"id": "{}", "command": "keys"}}"#,
            "x".repeat(MAX_ID + 1)
        );
        assert!(parse(long.as_bytes()).1.is_err());
    }
}
