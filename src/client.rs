//! The client side of the SSH front, used by the `sshsign` shim and CLI and by the benchmark:
//! connect, check the appliance's host key, authenticate with the user's SSH key, run commands.
//!
//! The host key must match a pinned fingerprint or the user's known_hosts; an unknown or changed
//! key is refused, with a message that says how to pin the right one. Authentication tries the
//! configured identity file, or else every key in ssh-agent, then `~/.ssh/id_*` files without a
//! passphrase.

pub mod config;
mod host_check;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
use russh::{ChannelMsg, Disconnect};

pub use self::config::ClientConfig;
use self::host_check::HostCheck;

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

/// An authenticated connection to the appliance; commands may run on it concurrently.
pub struct Connection {
    handle: Handle<HostCheck>,
}

fn ssh_error(e: impl std::fmt::Display) -> Error {
    Error::Ssh(e.to_string())
}

impl Connection {
    pub async fn connect(config: &ClientConfig) -> Result<Self, Error> {
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
        Ok(Connection { handle })
    }

    /// Runs one command line with `stdin` as its input.
    pub async fn run(&self, words: &[String], stdin: &[u8]) -> Result<Output, Error> {
        let mut channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(ssh_error)?;
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
        let exit_status = exit_status.ok_or_else(|| {
            Error::Ssh("the appliance closed the channel without a status".into())
        })?;
        Ok(Output {
            exit_status,
            stdout,
        })
    }

    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }
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
