//! The `sshsign` client: a drop-in for git's `gpg.ssh.program`, and a thin CLI for the
//! appliance's commands.
//!
//! - `sshsign -Y sign -n NS -f KEY [-U] [-q] [FILE...]` signs each FILE through the appliance and
//!   writes `FILE.sig` as `ssh-keygen` does (no FILE, or `-`: stdin to stdout). KEY is a key id
//!   (`ak_...`, what `user.signingkey` holds), or a file holding a key id or the key's OpenSSH
//!   public line (git writes literal `key::ssh-ed25519 ...` keys to such a file).
//! - `sshsign -Y verify | find-principals | check-novalidate | match-principals ...` runs
//!   `ssh-keygen` with the same arguments: verification needs no appliance and no trust in it.
//! - `sshsign allowed-signers --key-id ID --principal EMAIL` prints an allowed_signers line.
//! - `sshsign COMMAND [FLAGS]` runs an appliance command (`keys`, `create-key`, ...) and prints
//!   its JSON reply; `sign` and `verify` read the payload from stdin.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use crate::client::{ClientConfig, Connection, Error as ClientError, Output};
use crate::ids::IdKind;
use crate::pubkey;

/// Exit status `ssh-keygen -Y sign` uses for failure.
pub const SIGN_FAILED: i32 = 255;

/// Shim failures, printed as `sshsign: message`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the appliance refused: {message} ({code})")]
    Refused { code: String, message: String },
    #[error("cannot run ssh-keygen (is OpenSSH installed?): {0}")]
    SshKeygen(std::io::Error),
}

/// A client failure (a file that cannot be read, say) refuses an offline check too.
impl From<Error> for crate::verifier::Refusal {
    fn from(error: Error) -> Self {
        crate::verifier::Refusal(error.to_string())
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `ssh-keygen`-style options: `-Y op`, `-n ns`, `-f key`, `-O opt`..., flags, and operands.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KeygenArgs {
    pub operation: Option<String>,
    pub namespace: Option<String>,
    pub key_file: Option<String>,
    pub options: Vec<String>,
    pub quiet: bool,
    pub files: Vec<String>,
}

/// Parses `ssh-keygen` arguments as getopt does (values attached or separate).
pub fn parse_keygen_args(args: &[String]) -> Result<KeygenArgs, Error> {
    let mut parsed = KeygenArgs::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            parsed.files.push(arg.clone());
            continue;
        };
        for (i, flag) in flags.char_indices() {
            match flag {
                'Y' | 'n' | 'f' | 'O' | 'I' | 's' => {
                    let attached = &flags[i + flag.len_utf8()..];
                    let value = if attached.is_empty() {
                        iter.next()
                            .cloned()
                            .ok_or_else(|| Error::Usage(format!("option -{flag} needs a value")))?
                    } else {
                        attached.to_owned()
                    };
                    match flag {
                        'Y' => parsed.operation = Some(value),
                        'n' => parsed.namespace = Some(value),
                        'f' => parsed.key_file = Some(value),
                        'O' => parsed.options.push(value),
                        _ => {}
                    }
                    break;
                }
                'U' | 'v' => {}
                'q' => parsed.quiet = true,
                other => return Err(Error::Usage(format!("unknown option -{other}"))),
            }
        }
    }
    Ok(parsed)
}

/// Which appliance key signs.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRef {
    Id(String),
    PublicKey([u8; 32]),
}

/// Resolves `-f KEY`: a key id, or a file holding a key id or an OpenSSH public key line.
pub fn resolve_key(key: &str) -> Result<KeyRef, Error> {
    let text = if Path::new(key).is_file() {
        std::fs::read_to_string(key).map_err(io_error(Path::new(key)))?
    } else {
        key.to_owned()
    };
    let text = text.trim();
    let text = text.strip_prefix("key::").unwrap_or(text);
    if IdKind::SigningKey.matches(text) {
        return Ok(KeyRef::Id(text.to_owned()));
    }
    if let Some(public) = pubkey::parse_ed25519(text) {
        return Ok(KeyRef::PublicKey(public));
    }
    Err(Error::Usage(format!(
        "signing key {key:?} is neither an appliance key id (ak_...) nor a file holding one or \
         its ssh-ed25519 public key; set git's user.signingkey to the key id"
    )))
}

/// Runs `-Y sign`: returns the exit status.
pub async fn sign(args: KeygenArgs) -> Result<i32, Error> {
    let namespace = args
        .namespace
        .ok_or_else(|| Error::Usage("-Y sign needs -n NAMESPACE".to_owned()))?;
    let key = resolve_key(
        args.key_file
            .as_deref()
            .ok_or_else(|| Error::Usage("-Y sign needs -f KEY".to_owned()))?,
    )?;
    if let Some(option) = args.options.iter().find(|o| *o != "hashalg=sha512") {
        return Err(Error::Usage(format!(
            "option -O {option} is not supported: the appliance signs with sha512"
        )));
    }
    let config = ClientConfig::load()?;
    let connection = Connection::connect(&config).await?;
    let key_id = match key {
        KeyRef::Id(id) => id,
        KeyRef::PublicKey(public) => find_key_id(&connection, &public).await?,
    };
    let files = if args.files.is_empty() {
        vec!["-".to_owned()]
    } else {
        args.files
    };
    for file in files {
        let stdin_mode = file == "-";
        let payload = if stdin_mode {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(io_error(Path::new("stdin")))?;
            buf
        } else {
            if !args.quiet {
                eprintln!("Signing file {file}");
            }
            std::fs::read(&file).map_err(io_error(Path::new(&file)))?
        };
        let mut words: Vec<String> = ["sign", "--type", &namespace, "--key-id", &key_id]
            .map(String::from)
            .to_vec();
        words.extend(git_context());
        let reply = accepted(connection.run(&words, &payload).await?)?;
        let signature = reply["signature"]
            .as_str()
            .ok_or_else(|| ClientError::Ssh("the reply holds no signature".to_owned()))?;
        if stdin_mode {
            let mut out = std::io::stdout();
            out.write_all(signature.as_bytes())
                .and_then(|()| out.flush())
                .map_err(io_error(Path::new("stdout")))?;
        } else {
            let target = PathBuf::from(format!("{file}.sig"));
            std::fs::write(&target, signature).map_err(io_error(&target))?;
            if !args.quiet {
                eprintln!("Write signature to {}", target.display());
            }
        }
    }
    connection.close().await;
    Ok(0)
}

/// `--repository R --branch B` for the git repository the shim runs in (git runs it in the
/// work tree), so hard rules on branches and repositories can be checked; nothing outside one.
pub fn git_context() -> Vec<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let mut words = Vec::new();
    let repository = git(&["config", "--get", "remote.origin.url"])
        .map(|url| normalize_remote(&url))
        .or_else(|| git(&["rev-parse", "--show-toplevel"]));
    if let Some(repository) = repository {
        words.extend(["--repository".to_owned(), repository]);
    }
    if let Some(branch) = git(&["symbolic-ref", "--short", "-q", "HEAD"]) {
        words.extend(["--branch".to_owned(), branch]);
    }
    words
}

/// `git@github.com:acme/app.git`, `https://github.com/acme/app.git` and
/// `ssh://git@github.com:22/acme/app` all become `github.com/acme/app`.
pub fn normalize_remote(url: &str) -> String {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_owned(),
        None => match url.split_once(':') {
            // scp-like `user@host:path`, but not a local path with a colon later on
            Some((host, path)) if !host.contains('/') => format!("{host}/{path}"),
            _ => url.to_owned(),
        },
    };
    let rest = rest.rsplit_once('@').map_or(rest.as_str(), |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or(host);
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    if path.is_empty() {
        host.to_owned()
    } else {
        format!("{host}/{path}")
    }
}

/// The reply's JSON if the command succeeded, else the appliance's error.
pub fn accepted(output: Output) -> Result<serde_json::Value, Error> {
    let reply = output.json()?;
    if output.exit_status == 0 {
        return Ok(reply);
    }
    let error = &reply["error"];
    Err(Error::Refused {
        code: error["code"].as_str().unwrap_or("unknown").to_owned(),
        message: error["message"].as_str().unwrap_or("no message").to_owned(),
    })
}

/// Every key the caller owns or is granted, page after page.
pub async fn all_keys(connection: &Connection) -> Result<Vec<serde_json::Value>, Error> {
    let mut keys = Vec::new();
    let mut from = 0;
    loop {
        let command = ["keys".to_owned(), "--from".to_owned(), from.to_string()];
        let mut reply = accepted(connection.run(&command, &[]).await?)?;
        if let Some(page) = reply["keys"].as_array_mut() {
            keys.append(page);
        }
        match reply["next"].as_u64() {
            Some(next) if next > from => from = next,
            _ => return Ok(keys),
        }
    }
}

async fn find_key_id(connection: &Connection, public: &[u8; 32]) -> Result<String, Error> {
    let wanted = pubkey::openssh(public, "");
    all_keys(connection)
        .await?
        .iter()
        .find(|key| {
            key["public_key"]
                .as_str()
                .is_some_and(|line| line.starts_with(&wanted))
        })
        .and_then(|key| key["key_id"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            Error::Usage(format!(
                "none of your appliance keys is {}",
                pubkey::fingerprint(public)
            ))
        })
}

/// Hands a verification operation to `ssh-keygen`, with stdin, stdout and stderr passed through.
pub fn delegate_to_ssh_keygen(args: &[String]) -> Result<i32, Error> {
    let status = std::process::Command::new("ssh-keygen")
        .args(args)
        .status()
        .map_err(Error::SshKeygen)?;
    Ok(status.code().unwrap_or(SIGN_FAILED))
}

/// `principal namespaces="git" ssh-ed25519 AAAA...`: a line for an allowed_signers file, with
/// its options (`namespaces="..."`, `valid-after="..."`) as ssh-keygen reads them.
pub fn allowed_signers_line(principal: &str, public_key_line: &str, options: &[String]) -> String {
    let key: Vec<&str> = public_key_line.split_whitespace().take(2).collect();
    format!("{principal} {} {}", options.join(","), key.join(" "))
}

/// A failed audit check, as the CLI reports it.
impl From<crate::auditor::AuditorError> for Error {
    fn from(error: crate::auditor::AuditorError) -> Self {
        Error::Usage(format!("audit: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_what_git_sends() {
        let parsed =
            parse_keygen_args(&args("-Y sign -n git -f ak_x -U /tmp/.git_signing_buffer")).unwrap();
        assert_eq!(parsed.operation.as_deref(), Some("sign"));
        assert_eq!(parsed.namespace.as_deref(), Some("git"));
        assert_eq!(parsed.key_file.as_deref(), Some("ak_x"));
        assert_eq!(parsed.files, ["/tmp/.git_signing_buffer"]);

        let verify = parse_keygen_args(&args(
            "-Y verify -n git -f allowed -I me@x -s sig -Overify-time=20260101000000Z",
        ))
        .unwrap();
        assert_eq!(verify.options, ["verify-time=20260101000000Z"]);
        assert!(parse_keygen_args(&args("-Y sign -n")).is_err());
        assert!(parse_keygen_args(&args("-Z")).is_err());
    }

    #[test]
    fn keys_resolve_from_ids_files_and_public_lines() {
        let id = IdKind::SigningKey.make([1; 16]);
        assert_eq!(resolve_key(&id).unwrap(), KeyRef::Id(id.clone()));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{id}\n")).unwrap();
        assert_eq!(resolve_key(file.to_str().unwrap()).unwrap(), KeyRef::Id(id));
        let public = include_str!("../tests/vectors/sshsig/ed25519.pub");
        std::fs::write(&file, format!("key::{public}")).unwrap();
        assert!(matches!(
            resolve_key(file.to_str().unwrap()).unwrap(),
            KeyRef::PublicKey(_)
        ));
        assert!(resolve_key("~/.ssh/nothing-here").is_err());
    }

    #[test]
    fn remotes_normalize() {
        for url in [
            "git@github.com:acme/app.git",
            "https://github.com/acme/app.git",
            "https://user:token@github.com/acme/app",
            "ssh://git@github.com:22/acme/app.git",
            "github.com/acme/app/",
        ] {
            assert_eq!(normalize_remote(url), "github.com/acme/app", "{url}");
        }
    }

    #[test]
    fn allowed_signers_lines() {
        assert_eq!(
            allowed_signers_line(
                "me@x",
                "ssh-ed25519 AAAA ak_1",
                &["namespaces=\"git\"".to_owned()]
            ),
            "me@x namespaces=\"git\" ssh-ed25519 AAAA"
        );
        assert_eq!(
            allowed_signers_line(
                "me@x",
                "ssh-ed25519 AAAA ak_1",
                &[
                    "namespaces=\"git\"".to_owned(),
                    "valid-after=\"20260101\"".to_owned()
                ]
            ),
            "me@x namespaces=\"git\",valid-after=\"20260101\" ssh-ed25519 AAAA"
        );
    }
}
