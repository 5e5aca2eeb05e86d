//! The server's configuration: raw settings as given, then validated [`ServeConfig`].
//!
//! Settings come from, strongest first: `SSHSIGN_*` environment variables, the config file
//! (`--config FILE` or `SSHSIGN_CONFIG`, TOML with the same names in lower case without the
//! prefix), the HSM profile, and built-in defaults. No secret is ever a setting's value: the
//! PIN is named by a file path (or a systemd credential).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::hsm::profile::{
    BackendKind, EcParamsForm, HsmProfile, KeyLogin, ObjectIdForm, WrapMechanism, WrapSupport,
};
use crate::hsm::yubihsm::ConnectorAddress;
use crate::hsm::{BackendConfig, DeviceLimits, KeyExport};
use crate::limit::Limit;
use crate::net::AddressBlock;

/// Configuration errors, each naming the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "no HSM configured: set SSHSIGN_HSM_PROFILE (softhsm2, yubihsm2-pkcs11, nitrokey-nethsm) \
         or SSHSIGN_PKCS11_MODULE"
    )]
    NoHsm,
    #[error(
        "no PIN file: set SSHSIGN_PKCS11_PIN_FILE, or run under systemd with a credential named \
         pkcs11-pin"
    )]
    NoPin,
    #[error(transparent)]
    Profile(#[from] crate::hsm::profile::Error),
}

/// The audit log's tile cache by default, MiB: every tile a proof or a page of entries touches
/// near the right edge, many times over.
pub const DEFAULT_AUDIT_CACHE_MIB: u64 = 16;

/// Settings as given; every field optional. Field names are the variable names without the
/// `SSHSIGN_` prefix, in lower case.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen_addr: Option<String>,
    pub http_addr: Option<String>,
    pub db_path: Option<PathBuf>,
    /// The audit log's tiles (default: the database path with `.tlog` appended).
    pub audit_path: Option<PathBuf>,
    /// Memory for the audit log's tile cache, MiB.
    pub audit_cache_mib: Option<u64>,
    pub host_key_path: Option<PathBuf>,
    pub http_domain: Option<String>,
    pub hsm_profile: Option<String>,
    pub pkcs11_module: Option<PathBuf>,
    pub pkcs11_token: Option<String>,
    pub pkcs11_pin_file: Option<PathBuf>,
    /// The security officer's (NetHSM: Administrator's) PIN, for profiles whose keys are made
    /// by that login.
    pub hsm_admin_pin_file: Option<PathBuf>,
    /// Where a native YubiHSM 2 is reached: `http://HOST:PORT`, `usb` or `usb:SERIAL`.
    pub yubihsm_connector: Option<String>,
    /// Whether keys may leave the token wrapped: `never` (default), `wrapped`,
    /// `wrapped-untrusted`.
    pub key_export: Option<String>,
    pub hsm_sessions: Option<usize>,
    pub authorized_keys: Option<PathBuf>,
    pub http_tls_cert: Option<PathBuf>,
    pub http_tls_key: Option<PathBuf>,
    pub trusted_proxies: Option<String>,
    pub http_rate_per_ip: Option<u32>,
    pub http_rate_per_key: Option<u32>,
    pub http_header_timeout: Option<u64>,
    pub webhook_allow: Option<String>,
    pub webhook_retry_seconds: Option<u64>,
    /// Quota changes: `signatures=100/min, keys=10` (see `appliance::quota`).
    pub quotas: Option<String>,
    /// Objects the token holds in all, when the profile does not say (or to say less).
    pub token_objects: Option<usize>,
    /// PostgreSQL instead of sled: a `postgres://` URL or `key=value` connection string.
    pub database_url: Option<Redacted>,
    /// The file holding the database user's password (or systemd's `database-password`
    /// credential), when the URL has none.
    pub database_password_file: Option<PathBuf>,
    /// PEM certificates to trust for the database server's, besides the public roots.
    pub database_ca_file: Option<PathBuf>,
    /// Database connections at most.
    pub database_pool: Option<usize>,
    /// This appliance's name among several on one database (default: the host's name): its
    /// cosignatures on the shared audit log are by `ORIGIN/cosigner/NAME`.
    pub appliance_name: Option<String>,
}

/// A setting that may hold a secret (a database URL with its password): never shown by
/// `Debug`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the shared PostgreSQL database is, when the store is there rather than in sled.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub pool: usize,
    /// This appliance's name in the group: it names its cosigner key.
    pub appliance_name: String,
}

/// Database connections by default.
pub const DEFAULT_DATABASE_POOL: usize = 16;

impl DatabaseSettings {
    /// The database `raw` names, if any: what `serve` uses, for the commands that read it too.
    pub fn from_raw(
        raw: &RawConfig,
        credentials_dir: Option<&Path>,
    ) -> Result<Option<Self>, Error> {
        database_settings(raw, credentials_dir)
    }

    /// How to connect, with the password read from its file.
    pub fn connection(&self) -> Result<crate::store::postgres::Settings, crate::store::Error> {
        let password = self
            .password_file
            .as_deref()
            .map(crate::secret::read_secret_file)
            .transpose()
            .map_err(|e| crate::store::Error::Database(e.to_string()))?;
        Ok(crate::store::postgres::Settings {
            url: self.url.clone(),
            password,
            ca_file: self.ca_file.clone(),
            pool: self.pool,
        })
    }
}

/// The sled store's directory by default.
const DEFAULT_DB_PATH: &str = "./sshsign.db";

impl RawConfig {
    /// The audit log's directory: `SSHSIGN_AUDIT_PATH`, or the database path + `.tlog`.
    pub fn audit_directory(&self) -> PathBuf {
        self.audit_path.clone().unwrap_or_else(|| {
            let mut path = self
                .db_path
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH))
                .into_os_string();
            path.push(".tlog");
            PathBuf::from(path)
        })
    }

    /// Reads the `SSHSIGN_*` variables through `var` (the process environment in production).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let text = |name: &str| var(name).filter(|v| !v.is_empty());
        fn number<T: std::str::FromStr>(
            setting: &'static str,
            value: Option<String>,
        ) -> Result<Option<T>, Error> {
            value
                .map(|v| {
                    v.parse().map_err(|_| Error::Invalid {
                        setting,
                        reason: format!("{v:?} is not a number"),
                    })
                })
                .transpose()
        }
        let sessions = number("SSHSIGN_HSM_SESSIONS", text("SSHSIGN_HSM_SESSIONS"))?;
        Ok(RawConfig {
            listen_addr: text("SSHSIGN_LISTEN_ADDR"),
            http_addr: text("SSHSIGN_HTTP_ADDR"),
            db_path: text("SSHSIGN_DB_PATH").map(PathBuf::from),
            audit_path: text("SSHSIGN_AUDIT_PATH").map(PathBuf::from),
            audit_cache_mib: number("SSHSIGN_AUDIT_CACHE_MIB", text("SSHSIGN_AUDIT_CACHE_MIB"))?,
            host_key_path: text("SSHSIGN_HOST_KEY_PATH").map(PathBuf::from),
            http_domain: text("SSHSIGN_HTTP_DOMAIN"),
            hsm_profile: text("SSHSIGN_HSM_PROFILE"),
            pkcs11_module: text("SSHSIGN_PKCS11_MODULE").map(PathBuf::from),
            pkcs11_token: text("SSHSIGN_PKCS11_TOKEN"),
            pkcs11_pin_file: text("SSHSIGN_PKCS11_PIN_FILE").map(PathBuf::from),
            hsm_admin_pin_file: text("SSHSIGN_HSM_ADMIN_PIN_FILE").map(PathBuf::from),
            yubihsm_connector: text("SSHSIGN_YUBIHSM_CONNECTOR"),
            key_export: text("SSHSIGN_KEY_EXPORT"),
            hsm_sessions: sessions,
            authorized_keys: text("SSHSIGN_AUTHORIZED_KEYS").map(PathBuf::from),
            http_tls_cert: text("SSHSIGN_HTTP_TLS_CERT").map(PathBuf::from),
            http_tls_key: text("SSHSIGN_HTTP_TLS_KEY").map(PathBuf::from),
            trusted_proxies: text("SSHSIGN_TRUSTED_PROXIES"),
            http_rate_per_ip: number("SSHSIGN_HTTP_RATE_PER_IP", text("SSHSIGN_HTTP_RATE_PER_IP"))?,
            http_rate_per_key: number(
                "SSHSIGN_HTTP_RATE_PER_KEY",
                text("SSHSIGN_HTTP_RATE_PER_KEY"),
            )?,
            http_header_timeout: number(
                "SSHSIGN_HTTP_HEADER_TIMEOUT",
                text("SSHSIGN_HTTP_HEADER_TIMEOUT"),
            )?,
            webhook_allow: text("SSHSIGN_WEBHOOK_ALLOW"),
            webhook_retry_seconds: number(
                "SSHSIGN_WEBHOOK_RETRY_SECONDS",
                text("SSHSIGN_WEBHOOK_RETRY_SECONDS"),
            )?,
            quotas: text("SSHSIGN_QUOTAS"),
            token_objects: number("SSHSIGN_TOKEN_OBJECTS", text("SSHSIGN_TOKEN_OBJECTS"))?,
            database_url: text("SSHSIGN_DATABASE_URL").map(Redacted),
            database_password_file: text("SSHSIGN_DATABASE_PASSWORD_FILE").map(PathBuf::from),
            database_ca_file: text("SSHSIGN_DATABASE_CA_FILE").map(PathBuf::from),
            database_pool: number("SSHSIGN_DATABASE_POOL", text("SSHSIGN_DATABASE_POOL"))?,
            appliance_name: text("SSHSIGN_APPLIANCE_NAME"),
        })
    }

    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let file_error = |reason: String| Error::File {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_error(e.to_string()))
    }

    /// The HSM profile named by `hsm_profile`, if any.
    pub fn profile(&self) -> Result<Option<HsmProfile>, Error> {
        Ok(self
            .hsm_profile
            .as_deref()
            .map(HsmProfile::load)
            .transpose()?)
    }

    /// The PKCS#11 module: `pkcs11_module`, or the first installed path of `profile`.
    pub fn module(&self, profile: Option<&HsmProfile>) -> Result<PathBuf, Error> {
        match (&self.pkcs11_module, profile) {
            (Some(module), _) => Ok(module.clone()),
            (None, Some(profile)) => profile
                .installed_module()
                .map(Path::to_path_buf)
                .ok_or_else(|| Error::Invalid {
                    setting: "SSHSIGN_HSM_PROFILE",
                    reason: format!(
                        "none of the {} module paths exists; install the module or set \
                         SSHSIGN_PKCS11_MODULE",
                        profile.name
                    ),
                }),
            (None, None) => Err(Error::NoHsm),
        }
    }

    /// `self`, with every setting `over` has replacing ours.
    pub fn overlaid_with(self, over: RawConfig) -> RawConfig {
        RawConfig {
            listen_addr: over.listen_addr.or(self.listen_addr),
            http_addr: over.http_addr.or(self.http_addr),
            db_path: over.db_path.or(self.db_path),
            audit_path: over.audit_path.or(self.audit_path),
            audit_cache_mib: over.audit_cache_mib.or(self.audit_cache_mib),
            host_key_path: over.host_key_path.or(self.host_key_path),
            http_domain: over.http_domain.or(self.http_domain),
            hsm_profile: over.hsm_profile.or(self.hsm_profile),
            pkcs11_module: over.pkcs11_module.or(self.pkcs11_module),
            pkcs11_token: over.pkcs11_token.or(self.pkcs11_token),
            pkcs11_pin_file: over.pkcs11_pin_file.or(self.pkcs11_pin_file),
            hsm_admin_pin_file: over.hsm_admin_pin_file.or(self.hsm_admin_pin_file),
            key_export: over.key_export.or(self.key_export),
            yubihsm_connector: over.yubihsm_connector.or(self.yubihsm_connector),
            hsm_sessions: over.hsm_sessions.or(self.hsm_sessions),
            authorized_keys: over.authorized_keys.or(self.authorized_keys),
            http_tls_cert: over.http_tls_cert.or(self.http_tls_cert),
            http_tls_key: over.http_tls_key.or(self.http_tls_key),
            trusted_proxies: over.trusted_proxies.or(self.trusted_proxies),
            http_rate_per_ip: over.http_rate_per_ip.or(self.http_rate_per_ip),
            http_rate_per_key: over.http_rate_per_key.or(self.http_rate_per_key),
            http_header_timeout: over.http_header_timeout.or(self.http_header_timeout),
            webhook_allow: over.webhook_allow.or(self.webhook_allow),
            webhook_retry_seconds: over.webhook_retry_seconds.or(self.webhook_retry_seconds),
            quotas: over.quotas.or(self.quotas),
            token_objects: over.token_objects.or(self.token_objects),
            database_url: over.database_url.or(self.database_url),
            database_password_file: over.database_password_file.or(self.database_password_file),
            database_ca_file: over.database_ca_file.or(self.database_ca_file),
            database_pool: over.database_pool.or(self.database_pool),
            appliance_name: over.appliance_name.or(self.appliance_name),
        }
    }
}

/// How to reach the tokens: one, or several used as one pool (the first holds the appliance's
/// own keys; see [`crate::hsm::pool`]).
#[derive(Debug, Clone)]
pub struct HsmSettings {
    pub profile: Option<String>,
    pub backend: HsmBackend,
    pub tokens: Vec<TokenSettings>,
    /// Sessions per token.
    pub sessions: usize,
    pub limits: DeviceLimits,
    /// Whether keys may leave the tokens wrapped, for backup.
    pub key_export: KeyExport,
    /// The security officer's PIN file, where one is configured: it makes a trusted wrap key.
    pub so_pin_file: Option<PathBuf>,
}

/// One token of the appliance.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub label: String,
    /// The PIN (PKCS#11) or the authentication key id and password (native YubiHSM).
    pub pin_file: PathBuf,
    /// Where a native YubiHSM is reached.
    pub connector: Option<ConnectorAddress>,
}

/// Which code reaches the token, with what it needs.
#[derive(Debug, Clone)]
pub enum HsmBackend {
    Pkcs11 {
        module: PathBuf,
        ec_params: EcParamsForm,
        object_id: ObjectIdForm,
        /// The security officer's PIN file, when that login makes and destroys keys.
        admin_pin_file: Option<PathBuf>,
        label_is_id: bool,
        wrap_mechanism: Option<WrapMechanism>,
    },
    Yubihsm,
}

impl HsmSettings {
    /// Reads the secret files and says how to open each token, with `sessions` sessions each.
    pub fn backend_configs(
        &self,
        sessions: usize,
    ) -> Result<Vec<BackendConfig>, crate::secret::Error> {
        self.tokens
            .iter()
            .map(|token| self.backend_config(token, sessions))
            .collect()
    }

    fn backend_config(
        &self,
        token: &TokenSettings,
        sessions: usize,
    ) -> Result<BackendConfig, crate::secret::Error> {
        let pin = crate::secret::read_secret_file(&token.pin_file)?;
        Ok(match &self.backend {
            HsmBackend::Pkcs11 {
                module,
                ec_params,
                object_id,
                admin_pin_file,
                label_is_id,
                wrap_mechanism,
            } => BackendConfig::Pkcs11(crate::hsm::pkcs11::Pkcs11Config {
                module: module.clone(),
                token_label: token.label.clone(),
                pin,
                sessions,
                ec_params: *ec_params,
                object_id: *object_id,
                admin_pin: admin_pin_file
                    .as_deref()
                    .map(crate::secret::read_secret_file)
                    .transpose()?,
                label_is_id: *label_is_id,
                limits: self.limits,
                export: self.key_export,
                wrap_mechanism: *wrap_mechanism,
            }),
            HsmBackend::Yubihsm => BackendConfig::Yubihsm(crate::hsm::yubihsm::YubiHsmConfig {
                connector: token
                    .connector
                    .clone()
                    .unwrap_or(ConnectorAddress::Usb { serial: None }),
                credentials: pin,
                label: token.label.clone(),
                sessions,
                limits: self.limits,
                export: self.key_export,
            }),
        })
    }
}

/// The HTTP side's settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// PEM certificate chain and private key; plain HTTP without them.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<AddressBlock>,
    pub per_ip: Limit,
    pub per_key: Limit,
    /// How long a client may take over a request's headers (or a TLS handshake).
    pub header_timeout: std::time::Duration,
}

/// Where webhooks may go and how they retry.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub policy: crate::webhook::ssrf::Policy,
    pub retry: std::time::Duration,
}

/// Requests a minute from one address, and with one API key, by default.
pub const DEFAULT_RATE_PER_IP: u32 = 300;
pub const DEFAULT_RATE_PER_KEY: u32 = 600;

/// Validated settings for `sshsign-server serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub db_path: PathBuf,
    /// The shared database, when the store is in PostgreSQL rather than at `db_path`.
    pub database: Option<DatabaseSettings>,
    /// The audit log's tiles.
    pub audit_path: PathBuf,
    /// Bytes of tiles the audit log keeps in memory.
    pub audit_cache_bytes: usize,
    pub host_key_path: PathBuf,
    /// Public host name (or base URL) of the HTTP side, for links the appliance hands out.
    pub http_domain: Option<String>,
    pub http: HttpSettings,
    pub webhooks: WebhookSettings,
    pub hsm: HsmSettings,
    /// When set, only the SSH keys in this authorized_keys file may connect.
    pub authorized_keys: Option<PathBuf>,
    pub quotas: crate::appliance::quota::QuotaSettings,
    /// The token's fixed room for objects, when it has one.
    pub token_objects: Option<crate::appliance::TokenObjects>,
}

impl ServeConfig {
    /// Where the store is, for messages.
    pub fn store_place(&self) -> String {
        match &self.database {
            Some(_) => "the PostgreSQL database".to_owned(),
            None => self.db_path.display().to_string(),
        }
    }

    /// Validates raw settings. `credentials_dir` is systemd's `$CREDENTIALS_DIRECTORY`.
    pub fn from_raw(raw: RawConfig, credentials_dir: Option<&Path>) -> Result<Self, Error> {
        let profile = raw.profile()?;
        let backend = hsm_backend(&raw, profile.as_ref(), credentials_dir)?;
        let key_export = key_export(&raw, profile.as_ref())?;
        let so_pin_file = raw.hsm_admin_pin_file.clone().or_else(|| {
            credentials_dir
                .map(|dir| dir.join("hsm-admin-pin"))
                .filter(|path| path.exists())
        });
        // Every interface with TLS; loopback (for a TLS proxy in front) without.
        let tls = raw.http_tls_cert.is_some() || raw.http_tls_key.is_some();
        let http_addr = parse_addr(
            "SSHSIGN_HTTP_ADDR",
            raw.http_addr
                .as_deref()
                .unwrap_or(if tls { ":8443" } else { "127.0.0.1:8443" }),
        )?;
        let http = http_settings(&raw, http_addr)?;
        let webhooks = webhook_settings(&raw)?;
        let tokens = token_settings(&raw, profile.as_ref(), credentials_dir)?;
        let token_count = tokens.len();
        let sessions = raw
            .hsm_sessions
            .or_else(|| profile.as_ref().map(|p| p.sessions))
            .unwrap_or(2);
        if sessions == 0 || sessions > 256 {
            return Err(Error::Invalid {
                setting: "SSHSIGN_HSM_SESSIONS",
                reason: format!("{sessions} is outside 1..=256"),
            });
        }
        let database = database_settings(&raw, credentials_dir)?;
        let audit_path = raw.audit_directory();
        let db_path = raw
            .db_path
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH));
        let audit_cache_mib = raw.audit_cache_mib.unwrap_or(DEFAULT_AUDIT_CACHE_MIB);
        if !(1..=4096).contains(&audit_cache_mib) {
            return Err(Error::Invalid {
                setting: "SSHSIGN_AUDIT_CACHE_MIB",
                reason: format!("{audit_cache_mib} is outside 1..=4096"),
            });
        }
        let quotas = crate::appliance::quota::QuotaSettings::parse(
            raw.quotas.as_deref().unwrap_or_default(),
        )
        .map_err(|reason| Error::Invalid {
            setting: "SSHSIGN_QUOTAS",
            reason,
        })?;
        let per_token = raw
            .token_objects
            .or(profile.as_ref().and_then(|p| p.objects));
        let token_objects = match per_token {
            None => None,
            // The appliance's budget is every token's room; each token checks its own.
            Some(capacity @ 1..=1_000_000_000) => Some(crate::appliance::TokenObjects {
                capacity: capacity * tokens.len(),
                per_key: profile.as_ref().map_or(2, |p| p.objects_per_key.max(1)),
            }),
            Some(_) => {
                return Err(Error::Invalid {
                    setting: "SSHSIGN_TOKEN_OBJECTS",
                    reason: "is 1 to 1000000000".into(),
                });
            }
        };
        Ok(ServeConfig {
            quotas,
            token_objects,
            listen_addr: parse_addr(
                "SSHSIGN_LISTEN_ADDR",
                // Loopback unless an address is configured: an appliance is put on a network
                // on purpose.
                raw.listen_addr.as_deref().unwrap_or("127.0.0.1:2222"),
            )?,
            http_addr,
            http,
            webhooks,
            db_path,
            database,
            audit_path,
            audit_cache_bytes: usize::try_from(audit_cache_mib << 20).unwrap_or(usize::MAX),
            host_key_path: raw
                .host_key_path
                .unwrap_or_else(|| PathBuf::from("./host_key")),
            http_domain: raw.http_domain,
            hsm: HsmSettings {
                profile: profile.as_ref().map(|p| p.name.clone()),
                backend,
                tokens,
                sessions,
                limits: DeviceLimits {
                    message: profile.as_ref().and_then(|p| p.message_limit),
                    // Each token checks its own room.
                    objects: token_objects.map(|room| (room.capacity / token_count, room.per_key)),
                },
                key_export,
                so_pin_file,
            },
            authorized_keys: raw.authorized_keys,
        })
    }
}

/// The PostgreSQL settings, if a database URL is given.
fn database_settings(
    raw: &RawConfig,
    credentials_dir: Option<&Path>,
) -> Result<Option<DatabaseSettings>, Error> {
    let Some(url) = &raw.database_url else {
        for (set, setting) in [
            (
                raw.database_password_file.is_some(),
                "SSHSIGN_DATABASE_PASSWORD_FILE",
            ),
            (raw.database_ca_file.is_some(), "SSHSIGN_DATABASE_CA_FILE"),
            (raw.database_pool.is_some(), "SSHSIGN_DATABASE_POOL"),
            (raw.appliance_name.is_some(), "SSHSIGN_APPLIANCE_NAME"),
        ] {
            if set {
                return Err(Error::Invalid {
                    setting,
                    reason: "is for PostgreSQL: set SSHSIGN_DATABASE_URL too".into(),
                });
            }
        }
        return Ok(None);
    };
    let pool = raw.database_pool.unwrap_or(DEFAULT_DATABASE_POOL);
    if !(1..=1024).contains(&pool) {
        return Err(Error::Invalid {
            setting: "SSHSIGN_DATABASE_POOL",
            reason: format!("{pool} is outside 1..=1024"),
        });
    }
    let password_file = raw.database_password_file.clone().or_else(|| {
        credentials_dir
            .map(|dir| dir.join("database-password"))
            .filter(|path| path.exists())
    });
    Ok(Some(DatabaseSettings {
        url: SecretString::from(url.0.clone()),
        password_file,
        ca_file: raw.database_ca_file.clone(),
        pool,
        appliance_name: appliance_name(raw.appliance_name.as_deref())?,
    }))
}

/// The longest appliance name: its cosigner key's label (`sshsign-cosigner@NAME`) must fit a
/// YubiHSM 2's 40 bytes.
const MAX_APPLIANCE_NAME: usize = 23;

/// The appliance's name: as set, or the host's name up to its first dot (other characters
/// than letters, digits, '-' and '_' made '-', and cut to fit).
fn appliance_name(set: Option<&str>) -> Result<String, Error> {
    let invalid = |reason: String| Error::Invalid {
        setting: "SSHSIGN_APPLIANCE_NAME",
        reason,
    };
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let name = match set {
        Some(name) => name.to_owned(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_err(|e| {
                invalid(format!(
                    "is not set, and the host's name is unreadable: {e}"
                ))
            })?
            .trim()
            .split('.')
            .next()
            .unwrap_or_default()
            .chars()
            .map(|c| if allowed(c) { c } else { '-' })
            .take(MAX_APPLIANCE_NAME)
            .collect(),
    };
    if !(1..=MAX_APPLIANCE_NAME).contains(&name.len()) || !name.chars().all(allowed) {
        return Err(invalid(format!(
            "{name:?}: give each appliance a name of 1 to {MAX_APPLIANCE_NAME} letters, digits, \
             '-' or '_', unique in its group"
        )));
    }
    Ok(name)
}

/// The backend the profile names, with the module or connector and, where the profile's keys
/// are made by the security officer, that login's PIN file.
fn hsm_backend(
    raw: &RawConfig,
    profile: Option<&HsmProfile>,
    credentials_dir: Option<&Path>,
) -> Result<HsmBackend, Error> {
    if profile.is_some_and(|p| p.backend == BackendKind::Yubihsm) {
        return Ok(HsmBackend::Yubihsm);
    }
    let admin_pin_file = match profile.map(|p| p.key_login) {
        Some(KeyLogin::So) => Some(
            raw.hsm_admin_pin_file
                .clone()
                .or_else(|| credentials_dir.map(|dir| dir.join("hsm-admin-pin")))
                .ok_or(Error::Invalid {
                    setting: "SSHSIGN_HSM_ADMIN_PIN_FILE",
                    reason: "this HSM profile makes and destroys keys with the security \
                             officer's (administrator's) login: name the file that holds its \
                             PIN, or run under systemd with a credential named hsm-admin-pin"
                        .into(),
                })?,
        ),
        _ => None,
    };
    Ok(HsmBackend::Pkcs11 {
        module: raw.module(profile)?,
        ec_params: profile.map(|p| p.ec_params).unwrap_or_default(),
        object_id: profile.map(|p| p.object_id).unwrap_or_default(),
        admin_pin_file,
        label_is_id: profile.is_some_and(|p| p.label_is_id),
        wrap_mechanism: profile.and_then(|p| p.wrap_mechanism),
    })
}

/// `SSHSIGN_KEY_EXPORT`, checked against what the profile's device can do.
fn key_export(raw: &RawConfig, profile: Option<&HsmProfile>) -> Result<KeyExport, Error> {
    let Some(text) = raw.key_export.as_deref() else {
        return Ok(KeyExport::Never);
    };
    let export = KeyExport::parse(text).ok_or_else(|| Error::Invalid {
        setting: "SSHSIGN_KEY_EXPORT",
        reason: format!("{text:?} is not never, wrapped or wrapped-untrusted"),
    })?;
    let wrap = profile.map_or(WrapSupport::None, |p| p.wrap);
    let refused = |why: &str| Error::Invalid {
        setting: "SSHSIGN_KEY_EXPORT",
        reason: format!(
            "{text} is not possible with the HSM profile {}: {why}",
            profile.map_or("(none)", |p| p.name.as_str())
        ),
    };
    match (export, wrap) {
        (KeyExport::Never, _) => Ok(export),
        (_, WrapSupport::None) => Err(refused(
            "its device cannot wrap Ed25519 keys for a backup, or no profile names one (see \
             the profile's wrap source)",
        )),
        (KeyExport::Wrapped, WrapSupport::Untrusted) => Err(refused(
            "its token cannot mark a wrap key trusted; wrapped-untrusted says that you accept \
             keys leaving under any wrap key the user login makes",
        )),
        _ => Ok(export),
    }
}

/// `text` split at commas, each part trimmed; empty parts dropped.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The appliance's tokens: one per label in `SSHSIGN_PKCS11_TOKEN` (PKCS#11) or per address in
/// `SSHSIGN_YUBIHSM_CONNECTOR` (native YubiHSM), comma-separated; with one PIN file for all or
/// one each, in the same order.
fn token_settings(
    raw: &RawConfig,
    profile: Option<&HsmProfile>,
    credentials_dir: Option<&Path>,
) -> Result<Vec<TokenSettings>, Error> {
    let native = profile.is_some_and(|p| p.backend == BackendKind::Yubihsm);
    let default_label = profile.map_or("sshsign", |p| p.token_label.as_str());
    let labels = raw.pkcs11_token.as_deref().map(list).unwrap_or_default();
    let connectors = if native {
        let text = raw
            .yubihsm_connector
            .clone()
            .or_else(|| profile.and_then(|p| p.connector.clone()))
            .unwrap_or_default();
        list(&text)
            .iter()
            .map(|one| {
                one.parse().map_err(|reason| Error::Invalid {
                    setting: "SSHSIGN_YUBIHSM_CONNECTOR",
                    reason,
                })
            })
            .collect::<Result<Vec<ConnectorAddress>, Error>>()?
    } else {
        Vec::new()
    };
    if native && connectors.is_empty() {
        return Err(Error::Invalid {
            setting: "SSHSIGN_YUBIHSM_CONNECTOR",
            reason: "name the YubiHSM: http://HOST:PORT of yubihsm-connector, usb, or usb:SERIAL"
                .into(),
        });
    }
    let count = labels.len().max(connectors.len()).max(1);
    if native && !labels.is_empty() && labels.len() != connectors.len() {
        return Err(Error::Invalid {
            setting: "SSHSIGN_PKCS11_TOKEN",
            reason: format!(
                "{} labels for {} YubiHSM connectors: give one each, or none",
                labels.len(),
                connectors.len()
            ),
        });
    }
    let pin_files: Vec<PathBuf> = match raw.pkcs11_pin_file.as_deref() {
        Some(files) => list(&files.to_string_lossy())
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        None => vec![
            credentials_dir
                .map(|dir| dir.join("pkcs11-pin"))
                .ok_or(Error::NoPin)?,
        ],
    };
    if pin_files.is_empty() {
        return Err(Error::NoPin);
    }
    if pin_files.len() != 1 && pin_files.len() != count {
        return Err(Error::Invalid {
            setting: "SSHSIGN_PKCS11_PIN_FILE",
            reason: format!(
                "{} PIN files for {count} tokens: give one for all, or one each",
                pin_files.len()
            ),
        });
    }
    if count > 64 {
        return Err(Error::Invalid {
            setting: "SSHSIGN_PKCS11_TOKEN",
            reason: format!("{count} tokens; an appliance uses at most 64"),
        });
    }
    Ok((0..count)
        .map(|n| TokenSettings {
            label: labels.get(n).cloned().unwrap_or_else(|| {
                if count == 1 {
                    default_label.to_owned()
                } else {
                    format!("{default_label}-{}", n + 1)
                }
            }),
            pin_file: pin_files[if pin_files.len() == 1 { 0 } else { n }].clone(),
            connector: connectors.get(n).cloned(),
        })
        .collect())
}

/// TLS files, trusted proxies and rate limits. Plain HTTP is served on loopback (development, or
/// a TLS proxy on the same host) or behind named proxies, never openly.
fn http_settings(raw: &RawConfig, http_addr: SocketAddr) -> Result<HttpSettings, Error> {
    let tls = match (&raw.http_tls_cert, &raw.http_tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        (None, None) => None,
        _ => {
            return Err(Error::Invalid {
                setting: "SSHSIGN_HTTP_TLS_CERT",
                reason: "set both SSHSIGN_HTTP_TLS_CERT and SSHSIGN_HTTP_TLS_KEY, or neither"
                    .into(),
            });
        }
    };
    let trusted_proxies = cidr_list("SSHSIGN_TRUSTED_PROXIES", raw.trusted_proxies.as_deref())?;
    if tls.is_none() && !http_addr.ip().is_loopback() && trusted_proxies.is_empty() {
        return Err(Error::Invalid {
            setting: "SSHSIGN_HTTP_ADDR",
            reason: format!(
                "{http_addr} is not loopback, and plain HTTP there would carry approvals in the \
                 clear: set SSHSIGN_HTTP_TLS_CERT and SSHSIGN_HTTP_TLS_KEY, listen on 127.0.0.1 \
                 behind a TLS proxy, or name that proxy in SSHSIGN_TRUSTED_PROXIES"
            ),
        });
    }
    let rate =
        |setting: &'static str, value: Option<u32>, default: u32| match value.unwrap_or(default) {
            0 => Err(Error::Invalid {
                setting,
                reason: "a rate of 0 requests a minute would refuse everything".into(),
            }),
            n => Ok(Limit::per_minute(n)),
        };
    Ok(HttpSettings {
        tls,
        trusted_proxies,
        per_ip: rate(
            "SSHSIGN_HTTP_RATE_PER_IP",
            raw.http_rate_per_ip,
            DEFAULT_RATE_PER_IP,
        )?,
        per_key: rate(
            "SSHSIGN_HTTP_RATE_PER_KEY",
            raw.http_rate_per_key,
            DEFAULT_RATE_PER_KEY,
        )?,
        header_timeout: match raw.http_header_timeout.unwrap_or(10) {
            seconds @ 1..=300 => std::time::Duration::from_secs(seconds),
            _ => {
                return Err(Error::Invalid {
                    setting: "SSHSIGN_HTTP_HEADER_TIMEOUT",
                    reason: "is 1 to 300 seconds".into(),
                });
            }
        },
    })
}

/// Blocks webhooks may reach although internal (`SSHSIGN_WEBHOOK_ALLOW`), and the first retry's
/// wait.
fn webhook_settings(raw: &RawConfig) -> Result<WebhookSettings, Error> {
    let allowed = cidr_list("SSHSIGN_WEBHOOK_ALLOW", raw.webhook_allow.as_deref())?;
    let retry = match raw.webhook_retry_seconds.unwrap_or(10) {
        seconds @ 1..=3600 => std::time::Duration::from_secs(seconds),
        _ => {
            return Err(Error::Invalid {
                setting: "SSHSIGN_WEBHOOK_RETRY_SECONDS",
                reason: "is 1 to 3600 seconds".into(),
            });
        }
    };
    Ok(WebhookSettings {
        policy: crate::webhook::ssrf::Policy { allowed },
        retry,
    })
}

/// A comma-separated list of addresses or CIDR blocks.
fn cidr_list(setting: &'static str, text: Option<&str>) -> Result<Vec<AddressBlock>, Error> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|reason| Error::Invalid { setting, reason })
        })
        .collect()
}

impl ServeConfig {
    /// The base URL approval links and WebAuthn use: `SSHSIGN_HTTP_DOMAIN` (`https://` unless
    /// it names a scheme), else `http://localhost:PORT` on loopback (browsers allow WebAuthn
    /// there, never on an IP address), else the listener's own address.
    pub fn public_url(&self, http_addr: SocketAddr) -> String {
        match &self.http_domain {
            Some(url) if url.contains("://") => url.trim_end_matches('/').to_owned(),
            Some(domain) => format!("https://{}", domain.trim_end_matches('/')),
            None if http_addr.ip().is_loopback() => {
                format!("http://localhost:{}", http_addr.port())
            }
            None => {
                let scheme = if self.http.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{http_addr}")
            }
        }
    }
}

/// Parses `host:port`, or `:port` meaning every interface (the seed's form).
pub fn parse_addr(setting: &'static str, text: &str) -> Result<SocketAddr, Error> {
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    full.parse().map_err(|_| Error::Invalid {
        setting,
        reason: format!("{text:?} is not an address like 127.0.0.1:2222 or :2222"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> RawConfig {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RawConfig::from_env(|name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    #[test]
    fn env_wins_over_file_and_defaults_apply() {
        let file: RawConfig = toml::from_str(
            "listen_addr = \"127.0.0.1:1\"\nhttp_addr = \"127.0.0.1:2\"\npkcs11_module = \"/m.so\"\n",
        )
        .unwrap();
        let raw = file.overlaid_with(env(&[
            ("SSHSIGN_LISTEN_ADDR", ":2200"),
            ("SSHSIGN_PKCS11_PIN_FILE", "/pin"),
        ]));
        let config = ServeConfig::from_raw(raw, None).unwrap();
        assert_eq!(config.listen_addr, "0.0.0.0:2200".parse().unwrap());
        assert_eq!(config.http_addr, "127.0.0.1:2".parse().unwrap());
        assert!(
            matches!(&config.hsm.backend, HsmBackend::Pkcs11 { module, admin_pin_file: None, .. } if module == Path::new("/m.so"))
        );
        assert_eq!(config.hsm.tokens.len(), 1);
        assert_eq!(config.hsm.tokens[0].label, "sshsign");
        assert_eq!(config.db_path, PathBuf::from("./sshsign.db"));
        assert_eq!(config.audit_path, PathBuf::from("./sshsign.db.tlog"));
        assert_eq!(config.audit_cache_bytes, 16 << 20);
    }

    #[test]
    fn pin_may_come_from_a_systemd_credential() {
        let raw = env(&[("SSHSIGN_PKCS11_MODULE", "/m.so")]);
        assert!(matches!(
            ServeConfig::from_raw(raw.clone(), None),
            Err(Error::NoPin)
        ));
        let config = ServeConfig::from_raw(raw, Some(Path::new("/run/credentials/x"))).unwrap();
        assert_eq!(
            config.hsm.tokens[0].pin_file,
            PathBuf::from("/run/credentials/x/pkcs11-pin")
        );
        // Nothing configured: both listeners on loopback.
        assert_eq!(config.listen_addr, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(config.http_addr, "127.0.0.1:8443".parse().unwrap());
    }

    #[test]
    fn the_profile_chooses_the_backend_and_its_logins() {
        // NetHSM makes keys as the Administrator: its PIN file is required, from a setting or
        // a systemd credential.
        let nethsm = [
            ("SSHSIGN_HSM_PROFILE", "nitrokey-nethsm"),
            ("SSHSIGN_PKCS11_MODULE", "/m.so"),
            ("SSHSIGN_PKCS11_PIN_FILE", "/pin"),
        ];
        let err = ServeConfig::from_raw(env(&nethsm), None).unwrap_err();
        assert!(
            err.to_string().starts_with("SSHSIGN_HSM_ADMIN_PIN_FILE"),
            "{err}"
        );
        let config =
            ServeConfig::from_raw(env(&nethsm), Some(Path::new("/run/credentials/x"))).unwrap();
        match &config.hsm.backend {
            HsmBackend::Pkcs11 {
                admin_pin_file,
                ec_params,
                label_is_id,
                ..
            } => {
                assert_eq!(
                    admin_pin_file.as_deref(),
                    Some(Path::new("/run/credentials/x/hsm-admin-pin"))
                );
                assert_eq!(*ec_params, EcParamsForm::Oid);
                assert!(label_is_id);
            }
            other => panic!("{other:?}"),
        }

        // The native YubiHSM profile: a connector, the device's limits, no module.
        let mut native = vec![
            ("SSHSIGN_HSM_PROFILE", "yubihsm2-native"),
            ("SSHSIGN_PKCS11_PIN_FILE", "/auth"),
        ];
        let config = ServeConfig::from_raw(env(&native), None).unwrap();
        assert!(matches!(&config.hsm.backend, HsmBackend::Yubihsm));
        assert_eq!(
            config.hsm.tokens[0].connector.as_ref().unwrap().to_string(),
            "http://127.0.0.1:12345"
        );
        assert_eq!(config.hsm.limits.message, Some(2047));
        assert_eq!(config.hsm.limits.objects, Some((256, 1)));
        let mut blank = native.clone();
        blank.push(("SSHSIGN_YUBIHSM_CONNECTOR", " , "));
        let err = ServeConfig::from_raw(env(&blank), None).unwrap_err();
        assert!(err.to_string().contains("name the YubiHSM"), "{err}");
        native.push(("SSHSIGN_YUBIHSM_CONNECTOR", "ftp://x"));
        let err = ServeConfig::from_raw(env(&native), None).unwrap_err();
        assert!(
            err.to_string().starts_with("SSHSIGN_YUBIHSM_CONNECTOR"),
            "{err}"
        );
    }

    #[test]
    fn several_tokens_are_listed_with_one_pin_file_or_one_each() {
        let config = with(&[("SSHSIGN_PKCS11_TOKEN", "a, b,c")]).unwrap();
        let labels: Vec<_> = config.hsm.tokens.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
        assert!(
            config
                .hsm
                .tokens
                .iter()
                .all(|t| t.pin_file == Path::new("/pin"))
        );
        let pins = |tokens| {
            ServeConfig::from_raw(
                env(&[
                    ("SSHSIGN_PKCS11_MODULE", "/m.so"),
                    ("SSHSIGN_PKCS11_TOKEN", tokens),
                    ("SSHSIGN_PKCS11_PIN_FILE", "/pa,/pb"),
                ]),
                None,
            )
        };
        let config = pins("a,b").unwrap();
        assert_eq!(config.hsm.tokens[1].pin_file, Path::new("/pb"));
        let err = pins("a,b,c").unwrap_err();
        assert!(
            err.to_string().contains("2 PIN files for 3 tokens"),
            "{err}"
        );

        // Two YubiHSMs: the budget is both devices' room, each device checks its own.
        let config = ServeConfig::from_raw(
            env(&[
                ("SSHSIGN_HSM_PROFILE", "yubihsm2-native"),
                ("SSHSIGN_PKCS11_PIN_FILE", "/auth"),
                (
                    "SSHSIGN_YUBIHSM_CONNECTOR",
                    "http://127.0.0.1:12345,usb:0012345678",
                ),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(config.hsm.tokens.len(), 2);
        assert_eq!(config.hsm.tokens[1].label, "YubiHSM-2");
        assert_eq!(config.token_objects.unwrap().capacity, 512);
        assert_eq!(config.hsm.limits.objects, Some((256, 1)));
    }

    #[test]
    fn the_example_config_file_parses() {
        let raw: RawConfig =
            toml::from_str(include_str!("../provisioning/sshsign.example.toml")).unwrap();
        assert_eq!(raw.hsm_profile.as_deref(), Some("yubihsm2-pkcs11"));
        assert_eq!(raw.hsm_sessions, Some(2));
        assert!(raw.pkcs11_pin_file.is_none());
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(matches!(
            ServeConfig::from_raw(RawConfig::default(), None),
            Err(Error::NoHsm)
        ));
        let raw = env(&[
            ("SSHSIGN_PKCS11_MODULE", "/m.so"),
            ("SSHSIGN_PKCS11_PIN_FILE", "/pin"),
            ("SSHSIGN_LISTEN_ADDR", "nowhere"),
        ]);
        let err = ServeConfig::from_raw(raw, None).unwrap_err().to_string();
        assert!(err.starts_with("SSHSIGN_LISTEN_ADDR"), "{err}");
        assert!(
            RawConfig::from_env(|n| (n == "SSHSIGN_HSM_SESSIONS").then(|| "many".into())).is_err()
        );
        assert!(toml::from_str::<RawConfig>("pin = \"1234\"").is_err());
    }

    /// A configuration with a module and a PIN file, and `extra`.
    fn with(extra: &[(&str, &str)]) -> Result<ServeConfig, Error> {
        let mut pairs = vec![
            ("SSHSIGN_PKCS11_MODULE", "/m.so"),
            ("SSHSIGN_PKCS11_PIN_FILE", "/pin"),
        ];
        pairs.extend_from_slice(extra);
        ServeConfig::from_raw(env(&pairs), None)
    }

    #[test]
    fn a_database_url_selects_postgres_and_is_never_shown() {
        assert!(with(&[]).unwrap().database.is_none(), "sled by default");
        let url = "postgres://sshsign:hunter2@db.example.com/sshsign?sslmode=require";
        let config = with(&[
            ("SSHSIGN_DATABASE_URL", url),
            ("SSHSIGN_DATABASE_POOL", "4"),
        ])
        .unwrap();
        let database = config.database.as_ref().unwrap();
        assert_eq!(database.pool, 4);
        assert_eq!(config.store_place(), "the PostgreSQL database");
        assert!(!format!("{config:?}").contains("hunter2"));
        let raw = env(&[("SSHSIGN_DATABASE_URL", url)]);
        assert!(!format!("{raw:?}").contains("hunter2"));
        // From the file too, with the password as a systemd credential when there is one.
        let file: RawConfig = toml::from_str(&format!("database_url = \"{url}\"\n")).unwrap();
        assert!(file.database_url.is_some());
        // Its companions need it; the pool is bounded.
        for (name, value) in [
            ("SSHSIGN_DATABASE_POOL", "4"),
            ("SSHSIGN_DATABASE_CA_FILE", "/ca.pem"),
            ("SSHSIGN_DATABASE_PASSWORD_FILE", "/pw"),
        ] {
            let err = with(&[(name, value)]).unwrap_err().to_string();
            assert!(err.starts_with(name), "{err}");
        }
        let err = with(&[
            ("SSHSIGN_DATABASE_URL", url),
            ("SSHSIGN_DATABASE_POOL", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("1..=1024"), "{err}");
        // Each appliance of a group has a name, which names its cosigner key: the host's by
        // default, or as set, within what a token's label holds.
        assert!(!database.appliance_name.is_empty());
        let named = with(&[
            ("SSHSIGN_DATABASE_URL", url),
            ("SSHSIGN_APPLIANCE_NAME", "db-east_2"),
        ])
        .unwrap();
        assert_eq!(named.database.unwrap().appliance_name, "db-east_2");
        for bad in ["two words", "a.b", "x+y", "a-name-longer-than-23-bytes"] {
            let err = with(&[
                ("SSHSIGN_DATABASE_URL", url),
                ("SSHSIGN_APPLIANCE_NAME", bad),
            ])
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("SSHSIGN_APPLIANCE_NAME"), "{bad}: {err}");
        }
        let err = with(&[("SSHSIGN_APPLIANCE_NAME", "a")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("SSHSIGN_DATABASE_URL"), "{err}");
    }

    #[test]
    fn quotas_and_token_room_are_read_and_checked() {
        let config = with(&[
            ("SSHSIGN_QUOTAS", "keys=7"),
            ("SSHSIGN_TOKEN_OBJECTS", "64"),
        ]);
        let config = config.unwrap();
        assert_eq!(
            config
                .quotas
                .count(crate::appliance::quota::Counted::Keys)
                .1,
            7
        );
        let room = config.token_objects.unwrap();
        assert_eq!((room.capacity, room.per_key), (64, 2));
        // A YubiHSM 2: 256 objects, one per key; two Ed25519 keys and a seal key of the
        // appliance's own, twice over, and an authentication key: 249 signing keys.
        let yubihsm = with(&[("SSHSIGN_HSM_PROFILE", "yubihsm2-pkcs11")]).unwrap();
        assert_eq!(yubihsm.token_objects.unwrap().key_limit(2), 249);
        assert!(with(&[]).unwrap().token_objects.is_none());
        for (setting, value) in [
            ("SSHSIGN_QUOTAS", "signatures=lots"),
            ("SSHSIGN_QUOTAS", "keys=0"),
            ("SSHSIGN_QUOTAS", "nonsense=1"),
            ("SSHSIGN_TOKEN_OBJECTS", "0"),
        ] {
            let err = with(&[(setting, value)]).unwrap_err().to_string();
            assert!(err.starts_with(setting), "{setting}={value}: {err}");
        }
    }

    #[test]
    fn plain_http_stays_on_loopback_unless_a_proxy_or_tls_covers_it() {
        let config = with(&[]).unwrap();
        assert_eq!(config.http_addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(
            config.public_url("127.0.0.1:8443".parse().unwrap()),
            "http://localhost:8443"
        );
        let err = with(&[("SSHSIGN_HTTP_ADDR", ":8080")])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("SSHSIGN_HTTP_ADDR") && err.contains("TLS"),
            "{err}"
        );
        let proxied = with(&[
            ("SSHSIGN_HTTP_ADDR", "10.0.0.5:8080"),
            ("SSHSIGN_TRUSTED_PROXIES", "10.0.0.1, 10.9.0.0/16"),
            ("SSHSIGN_HTTP_DOMAIN", "sign.example.com"),
        ])
        .unwrap();
        assert_eq!(proxied.http.trusted_proxies.len(), 2);
        assert_eq!(
            proxied.public_url(proxied.http_addr),
            "https://sign.example.com"
        );
        let tls = with(&[
            ("SSHSIGN_HTTP_TLS_CERT", "/c.pem"),
            ("SSHSIGN_HTTP_TLS_KEY", "/k.pem"),
        ])
        .unwrap();
        assert_eq!(tls.http_addr, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(
            tls.public_url("192.0.2.1:8443".parse().unwrap()),
            "https://192.0.2.1:8443"
        );
        for (name, value) in [
            ("SSHSIGN_HTTP_TLS_CERT", "/c.pem"),
            ("SSHSIGN_TRUSTED_PROXIES", "10.0.0.0/40"),
            ("SSHSIGN_HTTP_RATE_PER_IP", "0"),
        ] {
            let err = with(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains("SSHSIGN_"), "{name}: {err}");
        }
        assert!(
            RawConfig::from_env(|n| (n == "SSHSIGN_HTTP_RATE_PER_KEY").then(|| "lots".into()))
                .is_err()
        );
        let url = with(&[("SSHSIGN_HTTP_DOMAIN", "http://localhost:9000/")]).unwrap();
        assert_eq!(url.public_url(url.http_addr), "http://localhost:9000");
    }
}
