//! `sshsign-server dev`: a working appliance on this machine in one command.
//!
//! [`prepare`] makes (or reuses) a directory holding a SoftHSMv2 token store, the appliance's own
//! keys in that token, the sled database and the SSH host key, and returns the environment under
//! which `serve` runs on 127.0.0.1. [`instructions`] is what `serve --print-instructions` shows.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::softhsm::{self, SoftHsmStore};

/// The dev token's label.
pub const TOKEN_LABEL: &str = "sshsign-dev";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2222";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8443";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    SoftHsm(#[from] softhsm::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating the appliance keys failed: {0}")]
    ApplianceKeys(String),
}

/// Makes or reuses `dir`; returns the environment `serve` needs. `server_exe` is this binary.
pub fn prepare(dir: &Path, server_exe: &Path) -> Result<Vec<(&'static str, OsString)>, Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    let io = |source| Error::Io {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    let dir = dir.canonicalize().map_err(io)?;
    let store = if SoftHsmStore::exists_in(&dir) {
        SoftHsmStore::existing(&dir, TOKEN_LABEL, softhsm::module()?)
    } else {
        eprintln!(
            "sshsign dev: creating a SoftHSMv2 token in {}",
            dir.display()
        );
        SoftHsmStore::create(&dir, TOKEN_LABEL, server_exe)?
    };
    let mut env = store.env();
    let keys = Command::new(server_exe)
        .args(["provision", "generate-appliance-keys"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(io)?;
    if !keys.status.success() {
        return Err(Error::ApplianceKeys(
            String::from_utf8_lossy(&keys.stderr).trim().to_owned(),
        ));
    }
    let or_default = |name: &str, default: &str| -> OsString {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.into())
    };
    env.extend([
        ("SSHSIGN_DB_PATH", dir.join("sshsign.db").into()),
        ("SSHSIGN_HOST_KEY_PATH", dir.join("host_key").into()),
        (
            "SSHSIGN_LISTEN_ADDR",
            or_default("SSHSIGN_LISTEN_ADDR", DEFAULT_LISTEN),
        ),
        (
            "SSHSIGN_HTTP_ADDR",
            or_default("SSHSIGN_HTTP_ADDR", DEFAULT_HTTP),
        ),
    ]);
    Ok(env)
}

/// What a new user needs to connect, pin the host key and sign a git commit.
pub fn instructions(
    ssh: std::net::SocketAddr,
    url: &str,
    host_key: &str,
    fingerprint: &str,
    bin_dir: &Path,
) -> String {
    let host = ssh.ip();
    let port = ssh.port();
    let known_hosts_line = if port == 22 {
        format!("{host} {host_key}")
    } else {
        format!("[{host}]:{port} {host_key}")
    };
    format!(
        r#"
sshsign appliance is running (Ctrl-C stops it).
  SSH   {ssh}   host key {fingerprint}
  HTTP  {url}   (pages, REST API, {url}/api/v1/openapi.json)

1. Pin the host key and say hello (your SSH key is your identity):
     echo '{known_hosts_line}' >> ~/.ssh/known_hosts
     ssh -p {port} {host} whoami

2. Sign git commits with a key that lives in the token:
     export PATH="{bin}:$PATH" SSHSIGN_HOST={host} SSHSIGN_PORT={port}
     key=$(sshsign create-key | grep -o 'ak_[a-z2-7]*' | head -n 1)
     git config gpg.format ssh
     git config gpg.ssh.program sshsign
     git config user.signingkey "$key"
     git commit -S -m "signed by the appliance"

3. Verify with stock OpenSSH:
     sshsign allowed-signers --key-id "$key" --principal "$(git config user.email)" > allowed_signers
     git config gpg.ssh.allowedSignersFile "$PWD/allowed_signers"
     git verify-commit HEAD

4. Ask a human: register a passkey, make an API key, request an approval:
     ssh -p {port} {host} enroll passkey      # open the link it prints in Chrome or Firefox
     api_key=$(ssh -p {port} {host} api-key create --label demo | grep -o 'sshsign_[A-Za-z0-9_-]*' | head -n 1)
     curl -s -H "Authorization: Bearer $api_key" -H 'Content-Type: application/json' \
          -d '{{"action": "Deploy v2 to production"}}' {url}/api/v1/approvals/request
     # open its approval_url, approve with the passkey, then check the signed decision:
     curl -s {url}/api/v1/approvals/apr_.../verify
"#,
        bin = bin_dir.display(),
    )
}
