//! The SSH host key: an Ed25519 key in OpenSSH format at `SSHSIGN_HOST_KEY_PATH`, made on first
//! start with mode 0600 and refused afterwards if group or others can read it. It authenticates
//! the appliance to clients; it signs nothing users rely on, which is why it may live on disk.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use ssh_key::LineEnding;
use ssh_key::private::{Ed25519Keypair, PrivateKey};

/// Host key failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("host key {path}: {reason}")]
    Key { path: String, reason: String },
}

fn key_error(path: &Path, reason: impl ToString) -> Error {
    Error::Key {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Loads the host key, creating it from `seed` (32 random bytes) if the file does not exist.
pub fn load_or_create(path: &Path, seed: &[u8; 32]) -> Result<PrivateKey, Error> {
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(key_error(
                    path,
                    format!("mode {mode:04o} lets others read it; chmod 600 it"),
                ));
            }
            let text = fs::read_to_string(path).map_err(|e| key_error(path, e))?;
            PrivateKey::from_openssh(&text).map_err(|e| key_error(path, e))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, seed),
        Err(e) => Err(key_error(path, e)),
    }
}

fn create(path: &Path, seed: &[u8; 32]) -> Result<PrivateKey, Error> {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(seed));
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_error(path, e))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| key_error(path, e))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| key_error(path, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| key_error(path, e))?;
    tracing::info!(path = %path.display(), "created SSH host key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused_and_guarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/host_key");
        let first = load_or_create(&path, &[1; 32]).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path, &[2; 32]).unwrap();
        assert_eq!(first.public_key(), again.public_key());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path, &[2; 32]).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
