//! One session channel: collect the exec request (and stdin, for commands that take a payload),
//! then run the command and send its JSON reply and exit status.
//!
//! [`ChannelState`] is driven by the connection's russh callbacks as messages arrive, so reading
//! a request costs no task switches; the command itself runs in its own task ([`perform`]) so
//! that a slow token call never holds up the connection's other channels. Commands that read no
//! payload run as soon as the exec request arrives, as they would under sshd, so `ssh host keys`
//! typed at a terminal does not wait for end of input.

use std::collections::HashMap;
use std::sync::Arc;

use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::oneshot;

use super::commands::{self, Context};
use super::grammar::{self, Command};
use super::reply::Reply;
use super::text::{self, Format, Terminal};
use crate::appliance::{Appliance, Caller, Error, MAX_PAYLOAD};

/// What to do once a request is complete, and the reply format the command line asked for.
#[derive(Debug)]
pub enum Action {
    Run(Command, Vec<u8>, Option<Format>),
    Answer(Reply, Option<Format>),
    /// A session with no command: the terminal UI with a terminal, the help without.
    Shell,
}

/// Where a channel's request stands.
#[derive(Debug, Default)]
pub enum ChannelState {
    /// No exec request yet; input that arrives early is kept.
    #[default]
    AwaitingCommand,
    /// A command that reads stdin, waiting for its end.
    ReadingInput {
        command: Box<Command>,
        stdin: Vec<u8>,
        format: Option<Format>,
    },
    /// The request went to [`perform`]; anything more is ignored.
    Answered,
}

impl ChannelState {
    /// An exec request arrived.
    pub fn on_exec(&mut self, line: &[u8]) -> Option<Action> {
        if !matches!(self, ChannelState::AwaitingCommand) {
            return None;
        }
        match parse(line) {
            Err(reply) => self.answer(Action::Answer(reply, asked_format(line))),
            Ok((command, format)) if !command.reads_stdin() => {
                self.answer(Action::Run(command, Vec::new(), format))
            }
            Ok((command, format)) => {
                *self = ChannelState::ReadingInput {
                    command: Box::new(command),
                    stdin: Vec::new(),
                    format,
                };
                None
            }
        }
    }

    /// A shell was asked for: the terminal UI on a terminal, the help otherwise.
    pub fn on_shell(&mut self) -> Option<Action> {
        if !matches!(self, ChannelState::AwaitingCommand) {
            return None;
        }
        self.answer(Action::Shell)
    }

    /// Input arrived.
    pub fn on_data(&mut self, data: &[u8]) -> Option<Action> {
        let ChannelState::ReadingInput { stdin, format, .. } = self else {
            return None;
        };
        if stdin.len() + data.len() > MAX_PAYLOAD {
            let error = Error::PayloadTooLarge { limit: MAX_PAYLOAD };
            let format = *format;
            return self.answer(Action::Answer(Reply::from_error(&error), format));
        }
        stdin.extend_from_slice(data);
        None
    }

    /// The input ended.
    pub fn on_eof(&mut self) -> Option<Action> {
        match std::mem::replace(self, ChannelState::Answered) {
            ChannelState::ReadingInput {
                command,
                stdin,
                format,
            } => Some(Action::Run(*command, stdin, format)),
            other => {
                *self = other;
                None
            }
        }
    }

    fn answer(&mut self, action: Action) -> Option<Action> {
        *self = ChannelState::Answered;
        Some(action)
    }
}

fn parse(line: &[u8]) -> Result<(Command, Option<Format>), Reply> {
    let words = grammar::split(line).map_err(|e| Reply::from_split(&e))?;
    grammar::parse(words).map_err(|e| Reply::from_clap(&e))
}

/// The format a command line that does not parse asked for, so that its error is written as
/// asked (`--format text` or `--format=json` anywhere on it).
fn asked_format(line: &[u8]) -> Option<Format> {
    let words = grammar::split(line).ok()?;
    let word = words
        .iter()
        .enumerate()
        .find_map(|(i, word)| match word.as_str() {
            "--format" => words.get(i + 1).map(String::as_str),
            other => other.strip_prefix("--format="),
        })?;
    match word {
        "text" => Some(Format::Text),
        "json" => Some(Format::Json),
        _ => None,
    }
}

/// Answered channels waiting for their client's close, by channel.
pub type Closing = Arc<std::sync::Mutex<HashMap<ChannelId, oneshot::Sender<()>>>>;

/// The environment variable a client sets on a channel (`env` request, value `1`) to say that it
/// closes the channel itself once it has the exit status and EOF.
///
/// Whoever sends the first CHANNEL_CLOSE keeps, in russh 0.65, the channel's message queue for
/// as long as the connection lives (it drops the peer's answering CLOSE before the cleanup), so
/// an appliance that closed every channel itself would grow by a few KiB per command on a
/// persistent connection. For a client that says it closes (the `sshsign` client library), the
/// appliance waits for its close; for any other (`ssh`, which waits for the server's close), it
/// closes at once, as before.
pub const CLIENT_CLOSES_ENV: &str = "SSHSIGN_CLIENT_CLOSES";

/// How long the appliance waits for a client that said it closes before closing itself.
pub const CLIENT_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Notes that `channel` will be answered; the receiver hears when its client closes it.
pub fn expect_close(closing: &Closing, channel: ChannelId) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    closing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(channel, tx);
    rx
}

/// The client closed `channel`.
pub fn closed_by_client(closing: &Closing, channel: ChannelId) {
    let waiting = closing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&channel);
    if let Some(tx) = waiting {
        let _ = tx.send(());
    }
}

/// After the answer: for a client that closes itself (`closed_by_client`), waits for its close
/// (at most [`CLIENT_CLOSE_TIMEOUT`]); otherwise, or then, closes `channel`.
pub async fn close(
    handle: Handle,
    channel: ChannelId,
    closed_by_client: Option<oneshot::Receiver<()>>,
    closing: &Closing,
) {
    if let Some(closed) = closed_by_client
        && tokio::time::timeout(CLIENT_CLOSE_TIMEOUT, closed)
            .await
            .is_ok()
    {
        return;
    }
    closing
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&channel);
    let _ = handle.close(channel).await;
}

/// The reply to a command run by `work` in a task of its own: a panic in it (a bug) answers
/// `internal` and leaves the server and the channel going.
async fn caught<F>(work: F) -> Reply
where
    F: Future<Output = Result<serde_json::Value, crate::appliance::Error>> + Send + 'static,
{
    match tokio::spawn(work).await {
        Ok(Ok(body)) => Reply::ok(body),
        Ok(Err(error)) => Reply::from_error(&error),
        Err(failed) => {
            tracing::error!(error = %failed, "a command failed unexpectedly");
            Reply::from_error(&crate::appliance::Error::Internal(
                "the command failed unexpectedly".into(),
            ))
        }
    }
}

/// Who a connection authenticated as.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A key that identifies a user.
    Known(Caller),
    /// A key no identity has: its first command registers a new user, unless it is `link
    /// finish`, which joins the key to an existing one. Registration waits for a command so
    /// that a key about to be linked never becomes an identity of its own.
    New {
        key: ssh_key::PublicKey,
        from: std::net::IpAddr,
    },
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Known(caller) => f.write_str(caller.id()),
            Identity::New { .. } => f.write_str("(a new key)"),
        }
    }
}

/// The caller `command` runs as: a known identity; a new key joined by `link finish` (which
/// then answers as `whoami` does); or a new key registered now.
pub(super) async fn caller_for(
    identity: Identity,
    command: Command,
    appliance: &Appliance,
) -> Result<(Caller, Command), Error> {
    use super::commands::whoami::LinkCommand;
    match (identity, command) {
        (Identity::Known(caller), command) => {
            appliance.check_still_linked(&caller)?;
            Ok((caller, command))
        }
        (Identity::New { key, .. }, Command::Link(LinkCommand::Finish(args))) => {
            let caller = appliance.link_finish(&key, &args.code).await?;
            Ok((caller, Command::Whoami))
        }
        (Identity::New { key, from }, command) => {
            Ok((appliance.identify(&key, from).await?, command))
        }
    }
}

/// Runs `command` as `identity` with `stdin` as its input: its reply, and what it says to the
/// person (stderr), both for one-shot commands and for a session's requests.
pub(super) async fn run_command(
    appliance: Arc<Appliance>,
    identity: Identity,
    command: Command,
    stdin: Vec<u8>,
) -> (Reply, String) {
    match caller_for(identity, command, &appliance).await {
        Err(error) => (Reply::from_error(&error), String::new()),
        Ok((caller, command)) => {
            let ctx = Arc::new(Context::new(appliance, caller, stdin));
            // In a task of its own, so that a panic (a bug) answers `internal` instead of
            // leaving the request without a reply.
            let running = Arc::clone(&ctx);
            let reply = caught(async move { commands::execute(command, &running).await }).await;
            let notice = std::mem::take(&mut *ctx.stderr.lock().unwrap_or_else(|e| e.into_inner()));
            (reply, notice)
        }
    }
}

/// Carries out `action` for `channel` and sends the reply, exit status and EOF (the close
/// follows, see [`close`]).
pub async fn perform(
    action: Action,
    handle: Handle,
    channel: ChannelId,
    appliance: Arc<Appliance>,
    identity: Identity,
    terminal: Option<Terminal>,
    inputs: Option<tokio::sync::mpsc::Receiver<super::interactive::Input>>,
) {
    let on_pty = |bytes: Vec<u8>| match terminal {
        Some(_) => text::for_pty(&bytes),
        None => bytes,
    };
    let (action, inputs) = match (action, terminal, inputs) {
        (Action::Shell, Some(terminal), Some(mut inputs)) => {
            match caller_for(identity.clone(), Command::Whoami, &appliance).await {
                Ok((caller, _)) => {
                    let screen = super::interactive::Screen {
                        handle: handle.clone(),
                        channel,
                    };
                    super::tui::run(appliance, caller, terminal, &mut inputs, &screen).await;
                    let _ = handle.exit_status_request(channel, 0).await;
                    let _ = handle.eof(channel).await;
                    return;
                }
                Err(error) => (
                    Action::Answer(Reply::from_error(&error), None),
                    Some(inputs),
                ),
            }
        }
        (Action::Shell, _, inputs) => (Action::Run(Command::Help, Vec::new(), None), inputs),
        (action, _, inputs) => (action, inputs),
    };
    let (reply, asked) = match action {
        Action::Shell => (Reply::ok(serde_json::Value::Null), None),
        Action::Answer(reply, asked) => (reply, asked),
        Action::Run(command, stdin, asked) => {
            let (reply, notice) = run_command(appliance, identity, command, stdin).await;
            if !notice.is_empty() {
                let _ = handle
                    .extended_data(channel, 1, on_pty(notice.into_bytes()))
                    .await;
            }
            (reply, asked)
        }
    };
    // JSON without a terminal, text with one, unless the command line said.
    let format = asked.unwrap_or(if terminal.is_some() {
        Format::Text
    } else {
        Format::Json
    });
    // The client may have gone; nothing more can be done for it then.
    match (format, terminal, inputs) {
        (Format::Text, Some(terminal), Some(mut inputs)) => {
            let text = text::render(&reply.body, &terminal);
            let screen = super::interactive::Screen {
                handle: handle.clone(),
                channel,
            };
            super::interactive::page(&text, &terminal, &mut inputs, &screen).await;
        }
        (Format::Text, terminal, _) => {
            let text = text::render(&reply.body, &terminal.unwrap_or(Terminal::PLAIN));
            let _ = handle.data(channel, on_pty(text.into_bytes())).await;
        }
        (Format::Json, ..) => {
            let _ = handle.data(channel, on_pty(reply.to_bytes())).await;
        }
    }
    let _ = handle.exit_status_request(channel, reply.exit_status).await;
    let _ = handle.eof(channel).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_command_that_panics_is_answered_internal() {
        let reply = caught(async { panic!("a bug") }).await;
        assert_eq!(reply.body["error"]["code"], "internal");
        assert_ne!(reply.exit_status, 0);
        let reply = caught(async { Ok(serde_json::json!({"fine": true})) }).await;
        assert_eq!(reply.body["fine"], true);
    }

    #[test]
    fn commands_without_input_run_at_once() {
        let mut state = ChannelState::default();
        assert!(matches!(
            state.on_exec(b"keys"),
            Some(Action::Run(Command::Keys(_), _, None))
        ));
        assert!(state.on_data(b"ignored").is_none());
        assert!(state.on_eof().is_none());
    }

    #[test]
    fn input_is_collected_until_eof() {
        let mut state = ChannelState::default();
        assert!(state.on_exec(b"sign --key-id ak_x").is_none());
        assert!(state.on_data(b"hello ").is_none());
        assert!(state.on_data(b"world").is_none());
        match state.on_eof() {
            Some(Action::Run(Command::Sign(_), stdin, None)) => assert_eq!(stdin, b"hello world"),
            other => panic!("{other:?}"),
        }
        assert!(state.on_eof().is_none());
    }

    #[test]
    fn too_much_input_is_answered_once() {
        let mut state = ChannelState::default();
        state.on_exec(b"sign --key-id ak_x");
        assert!(state.on_data(&vec![0; MAX_PAYLOAD]).is_none());
        match state.on_data(b"!") {
            Some(Action::Answer(reply, _)) => {
                assert_eq!(reply.body["error"]["code"], "payload_too_large")
            }
            other => panic!("{other:?}"),
        }
        assert!(state.on_data(b"more").is_none());
        assert!(state.on_eof().is_none());
    }

    #[test]
    fn bad_command_lines_are_answered_and_a_shell_gets_help() {
        let mut state = ChannelState::default();
        assert!(matches!(
            state.on_exec(b"nope --format text"),
            Some(Action::Answer(_, Some(Format::Text)))
        ));
        assert!(state.on_exec(b"keys").is_none());
        let mut shell = ChannelState::default();
        assert!(matches!(shell.on_shell(), Some(Action::Shell)));
    }
}
