//! The client side of the SSH front, used by the `sshsign` shim and CLI and by the benchmark:
//! connect, check the appliance's host key, authenticate with the user's SSH key, run commands.
//!
//! The host key must match a pinned fingerprint or the user's known_hosts; an unknown or changed
//! key is refused, with a message that says how to pin the right one. Authentication tries the
//! configured identity file, or else every key in ssh-agent, then `~/.ssh/id_*` files without a
//! passphrase.

pub mod config;
mod host_check;
pub mod known_hosts;
mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{ChannelMsg, Disconnect};

pub use self::config::ClientConfig;
use self::host_check::HostCheck;
pub use self::session::Session;

/// Client failures, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    HostKey(String),
    #[error("cannot reach the appliance at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error(
        "the appliance at {addr} accepted none of your SSH keys ({tried}); load one into \
         ssh-agent or set SSHSIGN_IDENTITY to a private key file without a passphrase"
    )]
    Auth { addr: String, tried: String },
    #[error("SSH: {0}")]
    Ssh(String),
}

/// What a command sent back.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit_status: u32,
    pub stdout: Vec<u8>,
}

impl Output {
    /// The reply as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.stdout)
            .map_err(|e| Error::Ssh(format!("the appliance's reply is not JSON: {e}")))
    }
}

/// Commands one SSH connection carries before [`Connection`] moves to a fresh one.
///
/// In russh 0.65 the side that closes a channel first keeps that channel's message queue for as
/// long as the connection lives (see [`crate::ssh::channel::CLIENT_CLOSES_ENV`]), and this client
/// closes first so that the appliance need not. A connection that ran a million commands would
/// hold some gigabytes; one that runs this many holds a few MiB. A new connection (a key
/// exchange and a signature, a few milliseconds) every 1,024 commands adds a few microseconds
/// a command.
pub const COMMANDS_PER_CONNECTION: u64 = 1_024;

/// An authenticated connection to the appliance; commands may run on it concurrently. Past
/// [`COMMANDS_PER_CONNECTION`] commands it reconnects (the same host key checks, the same keys),
/// and the old connection ends once the commands still running on it are answered.
pub struct Connection {
    config: ClientConfig,
    commands_per_connection: u64,
    current: tokio::sync::Mutex<Current>,
}

/// The SSH connection commands go to now.
struct Current {
    handle: Arc<Handle<HostCheck>>,
    commands: u64,
    /// Connections opened so far, this one included.
    opened: u64,
}

fn ssh_error(e: impl std::fmt::Display) -> Error {
    Error::Ssh(e.to_string())
}

impl Connection {
    pub async fn connect(config: &ClientConfig) -> Result<Self, Error> {
        let handle = open(config).await?;
        Ok(Connection {
            config: config.clone(),
            commands_per_connection: COMMANDS_PER_CONNECTION,
            current: tokio::sync::Mutex::new(Current {
                handle: Arc::new(handle),
                commands: 0,
                opened: 1,
            }),
        })
    }

    /// Moves to a fresh SSH connection after `commands` commands instead of
    /// [`COMMANDS_PER_CONNECTION`] (at least 1).
    pub fn reconnect_after(mut self, commands: u64) -> Self {
        self.commands_per_connection = commands.max(1);
        self
    }

    /// How many SSH connections this has opened, the first included.
    pub async fn connections_opened(&self) -> u64 {
        self.current.lock().await.opened
    }

    /// The connection for the next command, after a fresh one is opened if this one has
    /// carried its share.
    async fn handle_for_command(&self) -> Result<Arc<Handle<HostCheck>>, Error> {
        let mut current = self.current.lock().await;
        // A share carried, or a connection the appliance closed (it closes one that has served
        // its own share of commands, once idle).
        if current.commands >= self.commands_per_connection || current.handle.is_closed() {
            let fresh = open(&self.config).await?;
            // The old handle goes when the commands still on it finish: russh then ends that
            // session.
            current.handle = Arc::new(fresh);
            current.commands = 0;
            current.opened += 1;
        }
        current.commands += 1;
        Ok(Arc::clone(&current.handle))
    }

    /// Runs one command line with `stdin` as its input.
    pub async fn run(&self, words: &[String], stdin: &[u8]) -> Result<Output, Error> {
        let handle = self.handle_for_command().await?;
        run_on(&handle, words, stdin).await
    }

    pub async fn close(self) {
        let handle = self.current.into_inner().handle;
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    }
}

/// Connects to the appliance, checks its host key and authenticates.
async fn open(config: &ClientConfig) -> Result<Handle<HostCheck>, Error> {
    let addr = format!("{}:{}", config.host, config.port);
    let ssh_config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_secs(120)),
        nodelay: true,
        ..Default::default()
    });
    let problem = Arc::new(Mutex::new(None));
    let check = HostCheck::new(config, Arc::clone(&problem));
    let mut handle =
        match client::connect(ssh_config, (config.host.as_str(), config.port), check).await {
            Ok(handle) => handle,
            Err(e) => {
                let recorded = problem
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .take();
                return Err(recorded.map(Error::HostKey).unwrap_or(Error::Connect {
                    addr,
                    reason: e.to_string(),
                }));
            }
        };
    let tried = authenticate(&mut handle, config).await?;
    if let Some(tried) = tried {
        return Err(Error::Auth { addr, tried });
    }
    Ok(handle)
}

/// Runs one command line on `handle`'s connection with `stdin` as its input.
async fn run_on(
    handle: &Handle<HostCheck>,
    words: &[String],
    stdin: &[u8],
) -> Result<Output, Error> {
    let mut channel = handle.channel_open_session().await.map_err(ssh_error)?;
    // We close the channel once answered, which lets the appliance free it at once.
    channel
        .set_env(false, crate::ssh::channel::CLIENT_CLOSES_ENV, "1")
        .await
        .map_err(ssh_error)?;
    channel
        .exec(true, command_line(words))
        .await
        .map_err(ssh_error)?;
    if !stdin.is_empty() {
        channel.data(stdin).await.map_err(ssh_error)?;
    }
    channel.eof().await.map_err(ssh_error)?;
    let mut stdout = Vec::new();
    let mut exit_status = None;
    let mut eof = false;
    while let Some(message) = channel.wait().await {
        match message {
            ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status: s } => exit_status = Some(s),
            ChannelMsg::Eof => eof = true,
            _ => {}
        }
        // Answered: close it ourselves, as we said (see `ssh::channel::CLIENT_CLOSES_ENV`).
        if eof && exit_status.is_some() {
            let _ = channel.close().await;
            break;
        }
    }
    let exit_status = exit_status
        .ok_or_else(|| Error::Ssh("the appliance closed the channel without a status".into()))?;
    Ok(Output {
        exit_status,
        stdout,
    })
}

/// Joins words into a command line the server splits back into the same words.
pub fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|word| {
            let plain = !word.is_empty()
                && !word.starts_with(['{', '['])
                && !word.contains(|c: char| c.is_whitespace() || "'\"\\".contains(c));
            if plain {
                word.clone()
            } else {
                let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
                format!("\"{escaped}\"")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tries the user's keys in turn. `Ok(None)` when one was accepted, else what was tried.
async fn authenticate(
    handle: &mut Handle<HostCheck>,
    config: &ClientConfig,
) -> Result<Option<String>, Error> {
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(ssh_error)?
        .flatten();

    if let Some(path) = &config.identity {
        let key = russh::keys::load_secret_key(path, None)
            .map_err(|e| Error::Config(format!("SSHSIGN_IDENTITY {}: {e}", path.display())))?;
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        let result = handle
            .authenticate_publickey(&config.user, key)
            .await
            .map_err(ssh_error)?;
        return Ok((!result.success()).then(|| path.display().to_string()));
    }

    if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = identity else {
                continue;
            };
            let result = handle
                .authenticate_publickey_with(&config.user, key, rsa_hash, &mut agent)
                .await;
            if result.is_ok_and(|r| r.success()) {
                return Ok(None);
            }
            tried.push(format!("agent key {comment}"));
        }
    }

    for path in &config.default_identities {
        if !path.exists() {
            continue;
        }
        let Ok(key) = russh::keys::load_secret_key(path, None) else {
            tried.push(format!(
                "{} (has a passphrase: use ssh-agent)",
                path.display()
            ));
            continue;
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
        let result = handle
            .authenticate_publickey(&config.user, key)
            .await
            .map_err(ssh_error)?;
        if result.success() {
            return Ok(None);
        }
        tried.push(path.display().to_string());
    }
    if tried.is_empty() {
        tried.push("no keys found".to_owned());
    }
    Ok(Some(tried.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::grammar::split;

    #[test]
    fn command_lines_split_back_into_the_same_words() {
        let cases: Vec<Vec<String>> = vec![
            vec!["keys".into()],
            vec!["sign".into(), "--type".into(), "my ns".into()],
            vec![
                "create-key".into(),
                "--constraints".into(),
                r#"{"a": {"min": "x\"y"}}"#.into(),
            ],
            vec![
                "verify".into(),
                "--signature".into(),
                "line1\nline2\\".into(),
            ],
            vec!["x".into(), "it's".into(), String::new()],
        ];
        for words in cases {
            assert_eq!(split(command_line(&words).as_bytes()).unwrap(), words);
        }
    }
}
