//! Secrets read from files: token PINs and SO PINs.
//!
//! A secret lives in a [`SecretString`] from the moment it is read: its `Debug` prints
//! `[REDACTED]`, its memory is zeroed on drop, and it never reaches argv or a log line. A file
//! holding one must be owned by us and unreadable by group and others (0600 or 0400), as `ssh`
//! demands of private keys; systemd credentials (`LoadCredential=`) satisfy this.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

/// Why a secret file could not be used. The secret's value never appears here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("secret file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "secret file {path} has mode {mode:04o}; it must not be readable by group or others \
         (chmod 600 {path})"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("secret file {path} is empty")]
    Empty { path: PathBuf },
    #[error("secret file {path} is not UTF-8 text")]
    NotText { path: PathBuf },
}

/// Reads a secret from `path`: refuses a file others could read, strips one trailing newline.
pub fn read_secret_file(path: &Path) -> Result<SecretString, Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = Zeroizing::new(fs::read(path).map_err(io)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::NotText {
        path: path.to_owned(),
    })?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text);
    if text.is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    Ok(SecretString::from(text))
}

/// Writes a secret to a new file with mode 0600, failing if the file exists.
pub fn write_secret_file(path: &Path, secret: &SecretString) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(secret.expose_secret().as_bytes())
        .map_err(io)?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_private_file_and_refuses_open_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        write_secret_file(&path, &SecretString::from("1234")).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().expose_secret(), "1234");
        assert!(write_secret_file(&path, &SecretString::from("x")).is_err());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret_file(&path).unwrap_err();
        assert!(matches!(err, Error::Permissions { mode: 0o644, .. }));
        assert!(!err.to_string().contains("1234"));
    }

    #[test]
    fn empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        fs::write(&path, "\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(read_secret_file(&path), Err(Error::Empty { .. })));
    }
}
