//! Private SoftHSMv2 token stores for development and tests, made by the scripts in
//! `softhsm-fixtures/` (built into the binary, so `sshsign-server dev` needs no checkout).
//!
//! A store is a directory: `softhsm2.conf` (from the template), `tokens/`, and the 0600 PIN files
//! `user-pin` and `so-pin`. SoftHSM reads `SOFTHSM2_CONF` once, at `C_Initialize`, so a process
//! uses one store; [`SoftHsmStore::env`] gives the variables a child process needs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hsm::profile::HsmProfile;

const TEMPLATE: &str = include_str!("../softhsm-fixtures/softhsm2.conf.template");
const INIT_SCRIPT: &str = include_str!("../softhsm-fixtures/init-token.sh");

/// Why a store could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "SoftHSMv2 is not installed (none of {0} exists); install it with `apt-get install \
         softhsm2` (the Makefile's `deps` target does)"
    )]
    NotInstalled(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("softhsm-fixtures/init-token.sh failed ({status}): {stderr}")]
    Script { status: String, stderr: String },
}

/// A SoftHSMv2 token store in a directory.
#[derive(Debug, Clone)]
pub struct SoftHsmStore {
    pub dir: PathBuf,
    pub label: String,
    pub module: PathBuf,
}

/// The installed libsofthsm2.so, found through the softhsm2 profile.
pub fn module() -> Result<PathBuf, Error> {
    let profile = HsmProfile::load("softhsm2").map_err(|e| Error::NotInstalled(e.to_string()))?;
    profile
        .installed_module()
        .map(Path::to_path_buf)
        .ok_or_else(|| {
            Error::NotInstalled(
                profile
                    .module
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
}

impl SoftHsmStore {
    /// Makes a store in `dir` with a token labelled `label`, initialised through `server_exe`.
    pub fn create(dir: &Path, label: &str, server_exe: &Path) -> Result<Self, Error> {
        let module = module()?;
        let io = |source| Error::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let template = dir.join("softhsm2.conf.template");
        std::fs::write(&template, TEMPLATE).map_err(io)?;
        let output = Command::new("sh")
            .arg("-c")
            .arg(INIT_SCRIPT)
            .arg("init-token.sh")
            .arg(dir)
            .arg(label)
            .env("SSHSIGN_SERVER", server_exe)
            .env("SSHSIGN_SOFTHSM_TEMPLATE", &template)
            .env("SSHSIGN_PKCS11_MODULE", &module)
            .output()
            .map_err(io)?;
        if !output.status.success() {
            return Err(Error::Script {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(Self::existing(dir, label, module))
    }

    /// A store made earlier.
    pub fn existing(dir: &Path, label: &str, module: PathBuf) -> Self {
        SoftHsmStore {
            dir: dir.to_owned(),
            label: label.to_owned(),
            module,
        }
    }

    /// Whether `dir` already holds a store.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join("softhsm2.conf").is_file() && dir.join("user-pin").is_file()
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }

    pub fn pin_file(&self) -> PathBuf {
        self.dir.join("user-pin")
    }

    pub fn so_pin_file(&self) -> PathBuf {
        self.dir.join("so-pin")
    }

    /// The environment a process needs to use this store's token through the appliance's
    /// settings.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("SOFTHSM2_CONF", self.conf().into()),
            ("SSHSIGN_HSM_PROFILE", "softhsm2".into()),
            ("SSHSIGN_PKCS11_MODULE", self.module.clone().into()),
            ("SSHSIGN_PKCS11_TOKEN", self.label.clone().into()),
            ("SSHSIGN_PKCS11_PIN_FILE", self.pin_file().into()),
        ]
    }
}
