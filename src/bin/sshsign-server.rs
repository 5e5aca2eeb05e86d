//! `sshsign-server`: the appliance (`serve`), a one-command development appliance (`dev`), and the
//! operator's provisioning commands (`provision ...`). Settings come from `SSHSIGN_*` variables,
//! an optional config file, and flags; PINs only ever from files.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use sshsign::config::{HsmBackend, RawConfig, ServeConfig};
use sshsign::hsm::pkcs11::module::{self, InitSlot};
use sshsign::hsm::pkcs11::{self};
use sshsign::hsm::profile::HsmProfile;
use sshsign::hsm::{BackendConfig, Hsm, KeyExport, ObjectId};
use sshsign::{backup, dev, provision, secret, server};

#[derive(Debug, Parser)]
#[command(
    name = "sshsign-server",
    version = sshsign::VERSION,
    about = "The sshsign signing appliance"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the appliance (settings from SSHSIGN_* variables and --config).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Print how to connect and configure git once listening.
        #[arg(long)]
        print_instructions: bool,
    },
    /// Run a development appliance on 127.0.0.1 backed by a local SoftHSMv2 token.
    Dev {
        /// Where the token, database and host key live; made on first run, reused after.
        #[arg(long, default_value = ".sshsign-dev")]
        dir: PathBuf,
    },
    /// Operate the token: list slots, initialise a token, make and check the appliance's keys.
    #[command(subcommand)]
    Provision(Provision),
    /// Print the REST API's OpenAPI 3.1 document (what `/api/v1/openapi.json` serves).
    Openapi,
    /// Check the audit log on disk (the appliance stopped).
    #[command(subcommand)]
    Audit(Audit),
}

#[derive(Debug, Subcommand)]
enum Audit {
    /// Read every entry back and check it against the tiles, the head and the latest signed
    /// checkpoint; prints a JSON report, or fails naming what does not match. Checks the
    /// directory `--path` names (the appliance stopped), or without it the log in the PostgreSQL
    /// database the settings name (`SSHSIGN_DATABASE_URL`; appliances may go on meanwhile).
    Verify {
        /// Required: the full check is O(n), unlike the start-up check.
        #[arg(long, required = true)]
        full: bool,
        /// The log's directory (`SSHSIGN_AUDIT_PATH`; by default the database path + `.tlog`).
        #[arg(long)]
        path: Option<PathBuf>,
        /// The checkpoint verifier key (`origin+keyhash+key`, as `provision show` prints it).
        #[arg(long)]
        key: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Copy the log several appliances share (in the PostgreSQL database the settings name) up
    /// to its latest checkpoint into a new tile directory, checking every entry on the way: for
    /// `sshsign audit check --tiles DIR`, `audit verify --path DIR`, or an archive.
    Export {
        /// A new or empty directory.
        #[arg(long)]
        to: PathBuf,
        /// The checkpoint verifier key (`origin+keyhash+key`, as `provision show` prints it).
        #[arg(long)]
        key: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
enum Provision {
    /// List slots and tokens, with whether each offers Ed25519 key generation and signing.
    Slots(ModuleArgs),
    /// List the built-in HSM profiles.
    Profiles,
    /// Initialise a token: set its label, SO PIN and user PIN (read from files).
    InitToken {
        #[command(flatten)]
        module: ModuleArgs,
        /// The new token's label (1 to 32 bytes).
        #[arg(long)]
        label: String,
        /// File holding the security officer PIN (mode 0600).
        #[arg(long)]
        so_pin_file: PathBuf,
        /// File holding the user PIN the appliance will log in with (mode 0600).
        #[arg(long)]
        pin_file: PathBuf,
        /// Slot to initialise [default: the first slot with an uninitialised token].
        #[arg(long)]
        slot: Option<u64>,
        /// Allow initialising a slot whose token is already initialised (destroys its keys).
        #[arg(long, requires = "slot")]
        reinitialize: bool,
    },
    /// Generate the appliance's own keys (decision, checkpoint) the token lacks.
    GenerateApplianceKeys(TokenArgs),
    /// Show the appliance's public keys and fingerprints.
    Show(TokenArgs),
    /// List every Ed25519 key in the token with its protection attributes, and whether the
    /// token can prove it generated them.
    Keys {
        #[command(flatten)]
        token: TokenArgs,
        /// Ask the device for each key's attestation (a device call per key).
        #[arg(long)]
        attest: bool,
    },
    /// Ask the device to prove it generated a key; with --to, write the attestation file that
    /// `sshsign verify-attestation` checks offline against the vendor's root.
    Attest {
        #[command(flatten)]
        token: TokenArgs,
        /// The key's token object id (hex, as `provision keys` lists it).
        #[arg(long)]
        key_id: String,
        /// A new file for the attestation.
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Sign and verify with each appliance key; check that each is protected as
    /// SSHSIGN_KEY_EXPORT says.
    SelfTest(TokenArgs),
    /// Put the backup group's wrap key (AES-256) into the token: a new one from the token's
    /// random number generator, written to a new 0600 file that the operator keeps offline, or
    /// one from such a file, to join another token to the group.
    WrapKey {
        #[command(flatten)]
        token: TokenArgs,
        /// Make a new wrap key and write it to this new file.
        #[arg(long, conflicts_with = "from", required_unless_present = "from")]
        new: Option<PathBuf>,
        /// Import the wrap key held in this file (mode 0600).
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// Write every key of the appliance, wrapped under the group's wrap key, to a new file
    /// whose manifest the checkpoint key signs (needs SSHSIGN_KEY_EXPORT=wrapped or
    /// wrapped-untrusted from the start).
    Backup {
        #[command(flatten)]
        token: TokenArgs,
        /// The new backup file.
        #[arg(long)]
        to: PathBuf,
        /// The wrap key's id (hex), when the token holds more than one.
        #[arg(long)]
        wrap_key: Option<String>,
    },
    /// Make the next generation of the decision or checkpoint key, which signs from the
    /// appliance's next start; the one it replaces stays published (and, for the checkpoint
    /// key, signs a note handing the audit log over to the new one).
    Rotate {
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long, value_parser = ["decision", "checkpoint"])]
        role: String,
    },
    /// Destroy the private half of an earlier generation of a key: it signs nothing more, and
    /// stays published as retired so that what it signed stays checkable.
    Retire {
        #[command(flatten)]
        token: TokenArgs,
        #[arg(long, value_parser = ["decision", "checkpoint"])]
        role: String,
        /// The generation to retire (`provision show` lists them).
        #[arg(long)]
        generation: u32,
    },
    /// Bring the keys of a backup into this token (which holds the group's wrap key), under
    /// their ids and labels; run again after an interruption, it finishes the job.
    Restore {
        #[command(flatten)]
        token: TokenArgs,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// Refuse a backup that is not of the appliance with this audit verifier key (as
        /// `provision show` prints it).
        #[arg(long)]
        expect_audit_key: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// A TOML config file; SSHSIGN_* variables override it.
    #[arg(long, env = "SSHSIGN_CONFIG")]
    config: Option<PathBuf>,
}

/// Which PKCS#11 module to load.
#[derive(Debug, Args)]
struct ModuleArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// An HSM profile name (softhsm2, yubihsm2-pkcs11, nitrokey-nethsm) or file.
    #[arg(long)]
    profile: Option<String>,
    /// The PKCS#11 module path.
    #[arg(long)]
    module: Option<PathBuf>,
}

/// Which token to log in to.
#[derive(Debug, Args)]
struct TokenArgs {
    #[command(flatten)]
    module: ModuleArgs,
    /// The token's label.
    #[arg(long)]
    token: Option<String>,
    /// File holding the user PIN (mode 0600).
    #[arg(long)]
    pin_file: Option<PathBuf>,
}

/// Settings from, strongest first: flags, SSHSIGN_* variables, the config file.
fn raw_config(config: &ConfigArg, flags: RawConfig) -> Result<RawConfig> {
    let file = match &config.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let env = RawConfig::from_env(|name| std::env::var(name).ok())?;
    Ok(file.overlaid_with(env).overlaid_with(flags))
}

impl ModuleArgs {
    fn raw(&self) -> Result<RawConfig> {
        raw_config(
            &self.config,
            RawConfig {
                hsm_profile: self.profile.clone(),
                pkcs11_module: self.module.clone(),
                ..RawConfig::default()
            },
        )
    }

    fn module(&self) -> Result<PathBuf> {
        let raw = self.raw()?;
        Ok(raw.module(raw.profile()?.as_ref())?)
    }
}

impl TokenArgs {
    fn open(&self) -> Result<Arc<dyn Hsm>> {
        Ok(self.open_with_room()?.0)
    }

    /// The appliance's settings, with these flags over them.
    fn settings(&self) -> Result<ServeConfig> {
        let flags = self.module.raw()?.overlaid_with(RawConfig {
            pkcs11_token: self.token.clone(),
            pkcs11_pin_file: self.pin_file.clone(),
            ..RawConfig::default()
        });
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        Ok(ServeConfig::from_raw(flags, credentials.as_deref())?)
    }

    /// The token, and its fixed room for objects if it has one.
    fn open_with_room(&self) -> Result<(Arc<dyn Hsm>, Option<sshsign::appliance::TokenObjects>)> {
        let config = self.settings()?;
        let hsm = sshsign::hsm::open_all(config.hsm.backend_configs(1)?)?;
        Ok((hsm, config.token_objects))
    }
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn provision(command: Provision) -> Result<()> {
    use sshsign::views as v;
    let out = match command {
        Provision::Slots(args) => {
            let ctx = module::load(&args.module()?)?;
            v::to_value(&v::SlotList {
                slots: module::list_slots(&ctx)?,
            })
        }
        Provision::Profiles => {
            let profiles = HsmProfile::builtin()?;
            v::to_value(&v::ProfileList {
                profiles: profiles.iter().map(v::ProfileView::from).collect(),
            })
        }
        Provision::InitToken {
            module: args,
            label,
            so_pin_file,
            pin_file,
            slot,
            reinitialize,
        } => {
            let so_pin = secret::read_secret_file(&so_pin_file)?;
            let pin = secret::read_secret_file(&pin_file)?;
            let ctx = module::load(&args.module()?)?;
            let which = match slot {
                Some(slot) => InitSlot::Given { slot, reinitialize },
                None => InitSlot::FirstFree,
            };
            let slot = module::init_token(&ctx, which, &label, &so_pin, &pin)?;
            v::to_value(&v::Initialized {
                initialized: v::InitializedToken { label, slot },
            })
        }
        Provision::GenerateApplianceKeys(args) => {
            let hsm = args.open()?;
            let appliance_keys = provision::generate_appliance_keys(hsm.primary())?
                .into_iter()
                .map(|(key, created)| v::GeneratedKey { created, key })
                .collect();
            v::to_value(&v::GeneratedKeys { appliance_keys })
        }
        Provision::Show(args) => {
            let (hsm, room) = args.open_with_room()?;
            let keys = provision::appliance_keys(hsm.primary())?;
            // Every Ed25519 key in the token that is not the appliance's own (nor its cosigner
            // key, with a shared database) is a signing key.
            let in_token = hsm
                .list()?
                .iter()
                .filter(|key| !provision::is_cosigner_label(&key.label))
                .count()
                .saturating_sub(keys.len());
            v::to_value(&v::ShownToken {
                signing_keys: v::SigningKeysView::new((
                    in_token,
                    room.map(|r| r.key_limit(keys.len())),
                )),
                token: hsm.describe(),
                audit_verifier_key: provision::audit_verifier_key(&keys),
                appliance_keys: keys,
            })
        }
        Provision::Keys { token, attest } => {
            let hsm = token.open()?;
            let keys = hsm
                .list()?
                .iter()
                .map(|key| {
                    let attributes = match hsm.attributes(&key.object_id) {
                        // A public half alone (a retired key) has no attributes to show.
                        Err(sshsign::hsm::Error::KeyNotFound(_)) => return Ok(None),
                        other => other?,
                    };
                    let mut view = v::TokenKeyView::new(key, attributes);
                    let attestation = hsm.attest_cheaply(&key.object_id, attest)?;
                    view.attestation = attestation;
                    Ok(Some(view))
                })
                .filter_map(Result::transpose)
                .collect::<Result<Vec<_>>>()?;
            v::to_value(&v::TokenKeyList { keys })
        }
        Provision::Attest { token, key_id, to } => {
            let id = ObjectId::from_hex(&key_id).context("--key-id is the object id in hex")?;
            let hsm = token.open()?;
            let key = hsm
                .find(&id)?
                .with_context(|| format!("no key with object id {key_id} on the token"))?;
            let attestation = hsm.attest(&id)?;
            match (&to, attestation.available) {
                (Some(path), true) => {
                    let file = sshsign::attestation::AttestationFile {
                        format: sshsign::attestation::FORMAT.to_owned(),
                        key_id: key_id.clone(),
                        public_key: sshsign::hex::encode(&key.public_key),
                        certificates: attestation.certificates.clone(),
                    };
                    write_new_file(path, &serde_json::to_vec_pretty(&file)?)?;
                }
                (Some(_), false) => bail!(
                    "{}",
                    attestation
                        .reason
                        .unwrap_or_else(|| "no attestation".to_owned())
                ),
                (None, _) => {}
            }
            v::to_value(&v::Attested {
                key_id,
                attestation,
            })
        }
        Provision::SelfTest(args) => {
            let export = args.settings()?.hsm.key_export;
            let hsm = args.open()?;
            let keys = provision::appliance_keys(hsm.primary())?;
            v::to_value(&v::SelfTestView {
                self_test: provision::self_test(hsm.primary(), &keys, export)?,
                ok: true,
            })
        }
        Provision::WrapKey { token, new, from } => wrap_key(&token, new, from)?,
        Provision::Rotate { token, role } => {
            let settings = token.settings()?;
            let hsm = token.open()?;
            let rotated = provision::rotate(hsm.primary(), role_named(&role))?;
            let keys = provision::appliance_keys(hsm.primary())?;
            let handovers = provision::handovers(hsm.primary(), &keys, &settings.audit_path)?;
            v::to_value(&v::Rotated {
                rotated,
                audit_verifier_key: provision::audit_verifier_key(&keys),
                handovers: handovers.len(),
                takes_effect: "at the appliance's next start",
            })
        }
        Provision::Retire {
            token,
            role,
            generation,
        } => {
            let settings = token.settings()?;
            let hsm = token.open()?;
            // The handover to the next generation is made first, while this key can sign it.
            let keys = provision::appliance_keys(hsm.primary())?;
            provision::handovers(hsm.primary(), &keys, &settings.audit_path)?;
            let retired = provision::retire(hsm.primary(), role_named(&role), generation)?;
            v::to_value(&v::Retired { retired })
        }
        Provision::Backup {
            token,
            to,
            wrap_key,
        } => {
            let settings = token.settings()?;
            let mechanism = match &settings.hsm.backend {
                HsmBackend::Pkcs11 {
                    wrap_mechanism: Some(mechanism),
                    ..
                } => mechanism.name(),
                HsmBackend::Yubihsm => "YubiHSM export-wrapped (AES-256-CCM)",
                _ => "none",
            };
            let chosen = wrap_key
                .map(|hex| ObjectId::from_hex(&hex).context("--wrap-key is not hex"))
                .transpose()?;
            let hsm = token.open()?;
            let file = backup::backup(
                hsm.as_ref(),
                settings.hsm.key_export,
                mechanism,
                chosen.as_ref(),
                sshsign::time::now(),
            )?;
            backup::write(&to, &file)?;
            v::to_value(&v::BackupWritten {
                backup: to.display().to_string(),
                keys: file.keys.len(),
                wrap_key: file.wrap_key,
                audit_key: file.audit_key,
            })
        }
        Provision::Restore {
            token,
            from,
            expect_audit_key,
        } => {
            let export = token.settings()?.hsm.key_export;
            let file = backup::read(&from)?;
            let hsm = token.open()?;
            let report = backup::restore(hsm.as_ref(), &file, export, expect_audit_key.as_deref())?;
            v::to_value(&v::Restored { restored: report })
        }
    };
    print_json(&out);
    Ok(())
}

/// Writes `bytes` to the new file `path`.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.write_all(b"\n")?;
    Ok(file.sync_all()?)
}

/// The role `provision rotate` and `retire` name (clap has checked the word).
fn role_named(role: &str) -> provision::KeyRole {
    match role {
        "checkpoint" => provision::KeyRole::Checkpoint,
        _ => provision::KeyRole::Decision,
    }
}

/// `provision wrap-key`: the group's wrap key into every token of the appliance.
fn wrap_key(
    token: &TokenArgs,
    new: Option<PathBuf>,
    from: Option<PathBuf>,
) -> Result<serde_json::Value> {
    use secrecy::ExposeSecret as _;
    use zeroize::Zeroizing;
    let settings = token.settings()?;
    let key = match (new, from) {
        (Some(path), _) => {
            let hsm = token.open()?;
            let mut key = Zeroizing::new([0u8; 32]);
            hsm.random(key.as_mut())?;
            hsm.close()?;
            let text = secrecy::SecretString::from(sshsign::hex::encode(key.as_ref()));
            secret::write_secret_file(&path, &text)?;
            key
        }
        (None, Some(path)) => {
            let text = secret::read_secret_file(&path)?;
            let bytes = Zeroizing::new(
                sshsign::hex::decode(text.expose_secret().trim())
                    .with_context(|| format!("{}: not hex", path.display()))?,
            );
            let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("{}: a wrap key is 32 bytes (64 hex digits)", path.display())
            })?;
            Zeroizing::new(key)
        }
        (None, None) => bail!("give --new FILE or --from FILE"),
    };
    let so_pin = settings
        .hsm
        .so_pin_file
        .as_deref()
        .map(secret::read_secret_file)
        .transpose()?;
    let mut tokens = Vec::new();
    for config in settings.hsm.backend_configs(1)? {
        let (token, (id, existed)) = match config {
            BackendConfig::Pkcs11(config) => (
                config.token_label.clone(),
                pkcs11::import_wrap_key(&config, so_pin.as_ref(), &key)?,
            ),
            BackendConfig::Yubihsm(config) => {
                let token = config.connector.to_string();
                let device = sshsign::hsm::yubihsm::YubiHsm::open(config)?;
                (token, device.import_wrap_key(&key)?)
            }
        };
        tokens.push(sshsign::views::WrapKeyToken {
            token,
            wrap_key: id.to_hex(),
            already_there: existed,
        });
    }
    Ok(sshsign::views::to_value(&sshsign::views::WrapKeyImported {
        // On a YubiHSM the wrap key's delegated capabilities are what trust is.
        trusted: settings.hsm.key_export == KeyExport::Wrapped,
        tokens,
    }))
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed when this is called,
/// not when the future is first polled, so a signal that arrives in between is not lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

async fn serve(config: ConfigArg, print_instructions: bool) -> Result<()> {
    let raw = raw_config(&config, RawConfig::default())?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let config = ServeConfig::from_raw(raw, credentials.as_deref())?;
    let running = server::start(&config).await?;
    let shutdown = shutdown_signal()?;
    // One line on stdout for whoever started us (tests, supervisors): where we listen.
    let listening = sshsign::views::Listening {
        event: "listening",
        ssh: running.ssh_addr,
        http: running.http_addr,
        url: running.url.clone(),
        host_key: running.host_key.clone(),
        host_key_fingerprint: running.host_key_fingerprint.clone(),
    };
    println!("{}", sshsign::views::to_value(&listening));
    if print_instructions {
        let exe = std::env::current_exe().context("locating this binary")?;
        let bin_dir = exe.parent().unwrap_or(Path::new("."));
        eprintln!(
            "{}",
            dev::instructions(
                running.ssh_addr,
                &running.url,
                &running.host_key,
                &running.host_key_fingerprint,
                bin_dir
            )
        );
    }
    tracing::info!(ssh = %running.ssh_addr, http = %running.http_addr, "serving");
    running.wait(shutdown).await?;
    Ok(())
}

fn dev(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let env = dev::prepare(dir, &exe)?;
    let error = std::process::Command::new(&exe)
        .args(["serve", "--print-instructions"])
        .env_remove("SSHSIGN_CONFIG")
        .envs(env)
        .exec();
    bail!("could not start {}: {error}", exe.display())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSHSIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
    match cli.command {
        Command::Serve {
            config,
            print_instructions,
        } => tokio::runtime::Runtime::new()?.block_on(serve(config, print_instructions)),
        Command::Dev { dir } => dev(&dir),
        Command::Provision(command) => provision(command),
        Command::Audit(command) => audit(command),
        Command::Openapi => {
            print!("{}", sshsign::web::openapi::document_text());
            Ok(())
        }
    }
}

/// `sshsign-server audit ...`: prints a JSON report.
fn audit(command: Audit) -> Result<()> {
    let mut reported = 0;
    let progress = |done: u64| {
        if done >= reported + 1_000_000 {
            reported = done;
            eprintln!("checked {done} entries");
        }
    };
    let database = |config: &ConfigArg| -> Result<sshsign::store::postgres::Postgres> {
        let raw = raw_config(config, RawConfig::default())?;
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        let settings = sshsign::config::DatabaseSettings::from_raw(&raw, credentials.as_deref())?
            .ok_or_else(|| {
            anyhow::anyhow!(
                "no log to check: give --path, or SSHSIGN_DATABASE_URL for a shared log"
            )
        })?;
        Ok(sshsign::store::postgres::Postgres::open(
            &settings.connection()?,
        )?)
    };
    let report = match command {
        Audit::Verify {
            full: _,
            path: Some(path),
            key,
            config: _,
        } => sshsign::audit::verify_directory(&path, &key, progress)?,
        Audit::Verify {
            full: _,
            path: None,
            key,
            config,
        } => sshsign::audit::verify_database(database(&config)?, &key, progress)?,
        Audit::Export { to, key, config } => {
            let report = sshsign::audit::export_database(database(&config)?, &key, &to, progress)?;
            // The notes handing the log from one checkpoint key to the next are kept beside
            // each appliance's log, and served beside the tiles: the copy takes them too.
            let handovers = raw_config(&config, RawConfig::default())?
                .audit_directory()
                .join("handovers");
            if handovers.is_dir() {
                std::fs::create_dir_all(to.join("handovers"))?;
                for item in std::fs::read_dir(&handovers)? {
                    let path = item?.path();
                    if path.extension().is_some_and(|e| e == "note") {
                        std::fs::copy(
                            &path,
                            to.join("handovers")
                                .join(path.file_name().unwrap_or_default()),
                        )?;
                    }
                }
            }
            report
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// mimalloc, except in a build for heap profiling (`--features system-alloc`), where heaptrack
/// or massif must see every allocation through malloc.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
