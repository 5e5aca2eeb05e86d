//! Private software token stores for development and tests: SoftHSMv2, made by the scripts in
//! `softhsm-fixtures/` (built into the binary, so `sshsign-server dev` needs no checkout), and
//! kryoptic, the second PKCS#11 implementation the tests run against.
//!
//! A store is a directory: the module's configuration (`softhsm2.conf` from the template, or
//! `kryoptic.conf`), `tokens/`, and the 0600 PIN files `user-pin` and `so-pin`. Both modules read
//! their configuration variable once, at `C_Initialize`, so a process uses one store;
//! [`SoftHsmStore::env`] gives the variables a child process needs.

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

/// The initialising command's failure, with what it said, as an error.
fn succeeded(output: &std::process::Output) -> Result<(), Error> {
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Script {
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Which software token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftToken {
    SoftHsm,
    Kryoptic,
}

/// Slots a kryoptic store offers: one for the first token, the rest for tests that add tokens.
const KRYOPTIC_SLOTS: u32 = 8;

/// A software token store in a directory.
#[derive(Debug, Clone)]
pub struct SoftHsmStore {
    pub dir: PathBuf,
    pub label: String,
    pub module: PathBuf,
    pub kind: SoftToken,
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
        succeeded(&output)?;
        Ok(Self::existing(dir, label, module))
    }

    /// Makes a kryoptic store in `dir` (eight SQLite-backed slots) with a token labelled
    /// `label` in the first, initialised through `server_exe`, kryoptic being `module`.
    pub fn create_kryoptic(
        dir: &Path,
        label: &str,
        server_exe: &Path,
        module: &Path,
    ) -> Result<Self, Error> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |source| Error::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir.join("tokens")).map_err(io)?;
        let dir = dir.canonicalize().map_err(io)?;
        let mut conf = String::new();
        for slot in 1..=KRYOPTIC_SLOTS {
            let db = dir.join("tokens").join(format!("{slot}.sql"));
            conf.push_str(&format!(
                "[[slots]]\nslot = {slot}\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n\n",
                db.display()
            ));
        }
        let store = SoftHsmStore {
            dir: dir.clone(),
            label: label.to_owned(),
            module: module.to_owned(),
            kind: SoftToken::Kryoptic,
        };
        std::fs::write(store.conf(), conf).map_err(io)?;
        for pin in [store.pin_file(), store.so_pin_file()] {
            let mut random = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
                .map_err(|_| io(std::io::Error::other("no random bytes")))?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pin)
                .and_then(|mut file| file.write_all(crate::hex::encode(&random).as_bytes()))
                .map_err(io)?;
        }
        let output = Command::new(server_exe)
            .args([
                "provision",
                "init-token",
                "--profile",
                "kryoptic",
                "--module",
            ])
            .arg(module)
            .args(["--label", label, "--so-pin-file"])
            .arg(store.so_pin_file())
            .arg("--pin-file")
            .arg(store.pin_file())
            .env("KRYOPTIC_CONF", store.conf())
            .output()
            .map_err(io)?;
        succeeded(&output)?;
        Ok(store)
    }

    /// A store made earlier.
    pub fn existing(dir: &Path, label: &str, module: PathBuf) -> Self {
        SoftHsmStore {
            dir: dir.to_owned(),
            label: label.to_owned(),
            module,
            kind: SoftToken::SoftHsm,
        }
    }

    /// Whether `dir` already holds a store.
    pub fn exists_in(dir: &Path) -> bool {
        dir.join("softhsm2.conf").is_file() && dir.join("user-pin").is_file()
    }

    /// The module's configuration file.
    pub fn conf(&self) -> PathBuf {
        self.dir.join(match self.kind {
            SoftToken::SoftHsm => "softhsm2.conf",
            SoftToken::Kryoptic => "kryoptic.conf",
        })
    }

    /// The variable that points the module at [`Self::conf`].
    pub fn conf_variable(&self) -> &'static str {
        match self.kind {
            SoftToken::SoftHsm => "SOFTHSM2_CONF",
            SoftToken::Kryoptic => "KRYOPTIC_CONF",
        }
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
        let profile = match self.kind {
            SoftToken::SoftHsm => "softhsm2",
            SoftToken::Kryoptic => "kryoptic",
        };
        vec![
            (self.conf_variable(), self.conf().into()),
            ("SSHSIGN_HSM_PROFILE", profile.into()),
            ("SSHSIGN_PKCS11_MODULE", self.module.clone().into()),
            ("SSHSIGN_PKCS11_TOKEN", self.label.clone().into()),
            ("SSHSIGN_PKCS11_PIN_FILE", self.pin_file().into()),
        ]
    }
}
