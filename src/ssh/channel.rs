//! One session channel: read the exec request (and stdin, for commands that take a payload),
//! run the command, send its JSON reply and exit status, close.
//!
//! Commands that read no payload run as soon as the exec request arrives, as they would under
//! sshd, so `ssh host keys` from a terminal does not wait for end of input. While a command runs,
//! stray input is read and dropped so that it cannot stall the connection's other channels.

use std::sync::Arc;

use clap::Parser as _;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};

use super::commands::{self, Context};
use super::grammar::{self, Command, CommandLine};
use super::handler::ChannelSlot;
use super::reply::Reply;
use crate::appliance::{Appliance, Caller, Error, MAX_PAYLOAD};

/// What reading the channel produced.
enum Request {
    Run(Command, Vec<u8>),
    Answer(Reply),
    /// The client closed the channel first.
    Gone,
}

/// Serves one channel to completion.
pub async fn serve(
    mut channel: Channel<Msg>,
    appliance: Arc<Appliance>,
    caller: Caller,
    _slot: ChannelSlot,
) {
    let reply = match read_request(&mut channel).await {
        Request::Gone => return,
        Request::Answer(reply) => reply,
        Request::Run(command, stdin) => {
            let ctx = Context {
                appliance,
                caller,
                stdin,
            };
            let work = commands::execute(command, ctx);
            tokio::pin!(work);
            loop {
                tokio::select! {
                    outcome = &mut work => break match outcome {
                        Ok(body) => Reply::ok(body),
                        Err(error) => Reply::from_error(&error),
                    },
                    message = channel.wait() => if message.is_none() {
                        return;
                    },
                }
            }
        }
    };
    send(&channel, &reply).await;
}

fn parse(line: &[u8]) -> Result<Command, Reply> {
    let words = grammar::split(line).map_err(|e| Reply::from_split(&e))?;
    CommandLine::try_parse_from(words)
        .map(|parsed| parsed.command)
        .map_err(|e| Reply::from_clap(&e))
}

async fn read_request(channel: &mut Channel<Msg>) -> Request {
    let mut pending: Option<Command> = None;
    let mut stdin = Vec::new();
    loop {
        let Some(message) = channel.wait().await else {
            return Request::Gone;
        };
        match message {
            ChannelMsg::Exec { command, .. } => match parse(&command) {
                Err(reply) => return Request::Answer(reply),
                Ok(command) if !command.reads_stdin() => return Request::Run(command, Vec::new()),
                Ok(command) => pending = Some(command),
            },
            ChannelMsg::RequestShell { .. } => return Request::Run(Command::Help, Vec::new()),
            ChannelMsg::Data { data } => {
                if stdin.len() + data.len() > MAX_PAYLOAD {
                    let error = Error::PayloadTooLarge { limit: MAX_PAYLOAD };
                    return Request::Answer(Reply::from_error(&error));
                }
                stdin.extend_from_slice(&data);
            }
            ChannelMsg::Eof => {
                if let Some(command) = pending.take() {
                    return Request::Run(command, stdin);
                }
            }
            _ => {}
        }
    }
}

async fn send(channel: &Channel<Msg>, reply: &Reply) {
    // The client may be gone; nothing more can be done for it then.
    let _ = channel.data_bytes(reply.to_bytes()).await;
    let _ = channel.exit_status(reply.exit_status).await;
    let _ = channel.eof().await;
    let _ = channel.close().await;
}
