//! Starting and stopping the appliance: open the token, the store and the host key, check the
//! appliance's own keys, bind the SSH and HTTP listeners, serve until told to stop.
//!
//! [`start`] returns once both listeners are bound (so callers can bind port 0 and learn the
//! real ports); [`Running::wait`] serves until the shutdown future resolves, then drains, flushes
//! the store and logs out of the token.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::appliance::{Appliance, Settings};
use crate::audit::{AuditLog, CheckpointSigner};
use crate::config::ServeConfig;
use crate::hsm::{Hsm, Token};
use crate::ssh::{self, AllowedKeys, SshSettings};
use crate::store::Store;
use crate::web::guard::Guard;
use crate::web::{self, WebState};
use crate::{provision, seal, secret};

/// Why the appliance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("PIN: {0}")]
    Pin(#[from] secret::Error),
    #[error("token: {0}")]
    Token(#[from] crate::hsm::Error),
    #[error("appliance keys: {0}")]
    ApplianceKeys(#[from] provision::Error),
    #[error("store {path}: {source}")]
    Store {
        path: String,
        source: crate::store::Error,
    },
    #[error(transparent)]
    HostKey(#[from] ssh::host_key::Error),
    #[error("data key: {0}")]
    DataKey(#[from] seal::SetupError),
    #[error(transparent)]
    Audit(#[from] crate::audit::Error),
    #[error("SSHSIGN_AUTHORIZED_KEYS: {0}")]
    AllowedKeys(String),
    #[error("SSHSIGN_HTTP_DOMAIN: {0}")]
    PublicUrl(String),
    #[error("starting the appliance: {0}")]
    Appliance(String),
    #[error("HTTPS: {0}")]
    Tls(#[from] web::serve::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started appliance.
pub struct Running {
    pub ssh_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// The public base URL of the pages and the API (`SSHSIGN_HTTP_DOMAIN`, or the loopback
    /// `http://localhost:PORT` that browsers accept for passkeys).
    pub url: String,
    /// The SSH host key, OpenSSH one-line form, and its fingerprint.
    pub host_key: String,
    pub host_key_fingerprint: String,
    hsm: Arc<dyn Hsm>,
    token: Token,
    store: Store,
    ssh_listener: TcpListener,
    http_listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    header_timeout: std::time::Duration,
    guard: Arc<Guard>,
    appliance: Arc<Appliance>,
    audit: Arc<AuditLog>,
    settings: SshSettings,
}

/// How long a co-signed request waits for its principal by default.
const PENDING_TTL: i64 = 24 * 60 * 60;
/// How often a checkpoint is signed while the audit log grows.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens everything the appliance needs and binds its listeners, in this order: the store,
/// the token (with the appliance keys' self-test and the data key), the sealed records, the
/// audit log (checked against its signed checkpoint), the host key, the listeners.
pub async fn start(config: &ServeConfig) -> Result<Running, StartError> {
    let store = open_store(config)?;
    let opened = open_token(config, &store).await?;
    let store_error = |source| StartError::Store {
        path: config.store_place(),
        source,
    };
    unseal_store(&store, opened.sealer, opened.new_data_key).map_err(store_error)?;
    let token = Token::new(opened.hsm.clone())?;
    let keys = opened.keys;
    let audit = open_audit(
        config,
        &store,
        &token,
        &keys,
        opened.handovers,
        opened.cosigner,
    )?;
    if audit.key_was_handed_over()? {
        // The log says so, and grows: its next checkpoint is the new key's.
        let active = provision::active(&keys, provision::KeyRole::Checkpoint);
        audit
            .append(&crate::audit::AuditEntry {
                time: crate::time::now(),
                action: crate::audit::Action::CheckpointKeyHandover,
                result: crate::audit::Outcome::Done,
                actor: "appliance".to_owned(),
                actor_key: active.map(|k| k.fingerprint.clone()).unwrap_or_default(),
                ..crate::audit::AuditEntry::default()
            })
            .await?;
        tracing::info!(
            verifier_key = %audit.verifier_key(),
            "checkpoints are signed by the new checkpoint key from now on"
        );
    }
    let seed = token.random::<32>().await?;
    let host_key = ssh::host_key::load_or_create(&config.host_key_path, &seed)?;
    let host_public = host_key.public_key().clone();
    let allowed_keys = config
        .authorized_keys
        .as_deref()
        .map(AllowedKeys::read)
        .transpose()
        .map_err(StartError::AllowedKeys)?;

    let tls = config
        .http
        .tls
        .as_ref()
        .map(|(cert, key)| web::serve::tls_acceptor(cert, key))
        .transpose()?;
    let guard = Arc::new(Guard::new(
        config.http.trusted_proxies.clone(),
        config.http.per_ip,
        config.http.per_key,
        tls.is_some() || config.public_url(config.http_addr).starts_with("https://"),
    ));
    let (ssh_listener, ssh_addr) = bind(config.listen_addr).await?;
    let (http_listener, http_addr) = bind(config.http_addr).await?;
    let url = config.public_url(http_addr);
    let settings = Settings {
        approval_base: url.clone(),
        webhook_policy: config.webhooks.policy.clone(),
        webhook_retry: config.webhooks.retry,
        pending_ttl: PENDING_TTL,
        quotas: config.quotas.clone(),
        token_objects: config.token_objects,
        carry: opened.carry,
    };
    let appliance = Appliance::new(
        token.clone(),
        store.clone(),
        keys,
        Arc::clone(&audit),
        settings,
    )
    .map_err(|e| match e {
        crate::appliance::Error::InvalidArgument(reason) => StartError::PublicUrl(reason),
        other => StartError::Appliance(other.to_string()),
    })?;
    // What a crash or a token error left half-done: objects of revoked or unmade keys.
    match appliance.finish_token_chores().await {
        Ok(0) => {}
        Ok(done) => tracing::info!(done, "destroyed token objects left by a failure"),
        Err(error) => tracing::error!(%error, "could not read the token chores"),
    }
    Ok(Running {
        ssh_addr,
        http_addr,
        url,
        host_key: host_public.to_openssh().unwrap_or_default(),
        host_key_fingerprint: host_public
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string(),
        appliance,
        token,
        audit,
        hsm: opened.hsm,
        store,
        ssh_listener,
        http_listener,
        tls,
        header_timeout: config.http.header_timeout,
        guard,
        settings: SshSettings {
            host_key,
            allowed_keys,
        },
    })
}

/// Binds a listener; returns it with the address it got (the port, where 0 was asked for).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    Ok((listener, local))
}

/// What opening the token yields.
struct OpenedToken {
    hsm: Arc<dyn Hsm>,
    keys: Vec<provision::ApplianceKey>,
    /// The notes handing the audit log from each checkpoint key to the next.
    handovers: Vec<String>,
    sealer: seal::Sealer,
    /// The data key made now, to be stored, if the store had none.
    new_data_key: Option<seal::WrappedDataKey>,
    /// With several appliances on one database: this one's cosigner key, and its name.
    cosigner: Option<(crate::hsm::TokenKey, String)>,
    /// With several appliances on one database: how keys made here reach the others' tokens.
    carry: Option<crate::appliance::Carry>,
}

/// Opens the store: in the shared PostgreSQL database if one is configured, else in sled at
/// the configured path.
fn open_store(config: &ServeConfig) -> Result<Store, StartError> {
    let Some(database) = &config.database else {
        return Store::open(&config.db_path).map_err(|source| StartError::Store {
            path: config.db_path.display().to_string(),
            source,
        });
    };
    let failed = |source| StartError::Store {
        path: config.store_place(),
        source,
    };
    let store = Store::open_postgres(&database.connection().map_err(failed)?).map_err(failed)?;
    tracing::info!(pool = database.pool, "store in PostgreSQL");
    Ok(store)
}

/// Logs in to the token, finds and self-tests the appliance's keys, and opens the data key
/// that seals records (making one if the store has none), all on a blocking thread.
async fn open_token(config: &ServeConfig, store: &Store) -> Result<OpenedToken, StartError> {
    let backends = config.hsm.backend_configs(config.hsm.sessions)?;
    let stored_data_key = store.data_key().map_err(|source| StartError::Store {
        path: config.store_place(),
        source,
    })?;
    let export = config.hsm.key_export;
    let audit_dir = config.audit_path.clone();
    let appliance_name = config.database.as_ref().map(|db| db.appliance_name.clone());
    let opened = tokio::task::spawn_blocking(move || {
        let hsm = crate::hsm::open_all(backends)?;
        let keys = provision::appliance_keys(hsm.primary())?;
        provision::self_test(hsm.primary(), &keys, export)?;
        let carry = match appliance_name {
            Some(_) => carry(hsm.as_ref(), export)?,
            None => None,
        };
        let cosigner = appliance_name
            .map(|name| {
                let (key, made) = provision::cosigner_key(hsm.primary(), &name)?;
                if made {
                    tracing::info!(appliance = %name, "made this appliance's cosigner key");
                }
                Ok::<_, provision::Error>((key, name))
            })
            .transpose()?;
        let handovers = provision::handovers(hsm.primary(), &keys, &audit_dir)?;
        let seal_key = provision::seal_key(hsm.primary())?;
        let (sealer, new_data_key) = match stored_data_key {
            Some(stored) => (seal::open_data_key(hsm.as_ref(), &seal_key, &stored)?, None),
            None => {
                let (sealer, stored) = seal::new_data_key(hsm.as_ref(), &seal_key)?;
                (sealer, Some(stored))
            }
        };
        Ok::<_, StartError>(OpenedToken {
            hsm,
            keys,
            handovers,
            sealer,
            new_data_key,
            cosigner,
            carry,
        })
    })
    .await
    .map_err(|e| crate::hsm::Error::Worker(e.to_string()))??;
    tracing::info!(token = ?opened.hsm.describe(), "token ready; appliance keys passed the self-test");
    Ok(opened)
}

/// How keys made here reach the other appliances' tokens: under the group's wrap key, where
/// keys may leave wrapped and the token holds exactly one wrap key. Otherwise they stay on
/// this token, and the others refuse them with `key_not_on_token`; the log says why.
fn carry(
    hsm: &dyn Hsm,
    export: crate::hsm::KeyExport,
) -> Result<Option<crate::appliance::Carry>, StartError> {
    let stays = |why: &str| {
        tracing::warn!(
            "signing keys made here stay on this token ({why}): other appliances refuse them \
             with key_not_on_token"
        );
        Ok(None)
    };
    if export == crate::hsm::KeyExport::Never {
        return stays("SSHSIGN_KEY_EXPORT is never");
    }
    match hsm.wrap_keys()?.as_slice() {
        [] => stays("the token has no wrap key: put the group's in with `provision wrap-key`"),
        [wrap_key] => Ok(Some(crate::appliance::Carry {
            wrap_key: wrap_key.clone(),
            export,
        })),
        _ => stays("the token holds several wrap keys"),
    }
}

/// Stores a new data key, opens the sealed records with the data key, and brings old records
/// up to date.
fn unseal_store(
    store: &Store,
    sealer: seal::Sealer,
    new_data_key: Option<seal::WrappedDataKey>,
) -> Result<(), crate::store::Error> {
    if let Some(stored) = new_data_key {
        store.put_data_key(&stored)?;
        tracing::info!("made the data key that seals records");
    }
    store.unseal_with(sealer);
    let migrated = store.migrate_v1_keys(crate::time::now())?;
    if !migrated.is_empty() {
        tracing::info!(
            keys = migrated.len(),
            "moved version 1 key terms into authorizations"
        );
    }
    Ok(())
}

/// Opens the audit log under the checkpoint key and checks it against its latest signed
/// checkpoint.
fn open_audit(
    config: &ServeConfig,
    store: &Store,
    token: &Token,
    keys: &[provision::ApplianceKey],
    handovers: Vec<String>,
    cosigner: Option<(crate::hsm::TokenKey, String)>,
) -> Result<Arc<AuditLog>, StartError> {
    // The origin is fixed by the first checkpoint key, made when the token was provisioned:
    // neither a new domain, nor a restored database, nor a rotation gives the log a fresh name.
    let signer = CheckpointSigner::new(token.clone(), keys)
        .ok_or_else(|| provision::Error::Manifest("no checkpoint key is listed".to_owned()))?
        .with_handovers(handovers);
    // With the store in PostgreSQL the log is there too, one for every appliance; the audit
    // directory then keeps only the checkpoints this appliance saw, and each appliance
    // cosigns the checkpoints it checked.
    let audit = Arc::new(match store.engine() {
        crate::store::engine::Engine::Postgres(db) => {
            let log = AuditLog::open_shared(
                db.clone(),
                &config.audit_path,
                signer,
                config.audit_cache_bytes,
            )?;
            match cosigner {
                Some((key, name)) => log.with_cosigner(key, &name),
                None => log,
            }
        }
        crate::store::engine::Engine::Sled(_) => AuditLog::open(
            &config.audit_path,
            store.sled(),
            signer,
            config.audit_cache_bytes,
        )?,
    });
    tracing::info!(
        entries = audit.head().size,
        "audit log's right edge checked against its signed checkpoint"
    );
    if let Some(cosigner_key) = audit.cosigner_key() {
        tracing::info!(%cosigner_key, "this appliance cosigns the checkpoints it checks");
    }
    audit.check_in_background().map_err(|e| {
        StartError::Audit(crate::audit::Error::Storage(format!(
            "starting the audit log's full check: {e}"
        )))
    })?;
    Ok(audit)
}

impl Running {
    /// Serves until `shutdown` resolves; then stops accepting, flushes and logs out.
    pub async fn wait(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let trusted_proxies = self.guard.trusted_proxies.clone();
        let web_state = WebState {
            appliance: Arc::clone(&self.appliance),
            host_key: self.host_key.clone(),
            host_key_fingerprint: self.host_key_fingerprint.clone(),
            guard: self.guard,
            sessions: Arc::new(crate::web::session::Sessions::new(
                self.appliance.store().clone(),
            )),
        };
        let http = web::serve::serve(
            self.http_listener,
            self.tls,
            web::router(web_state),
            self.header_timeout,
            trusted_proxies,
            stopped(stop_rx.clone()),
        );
        let checkpoints = tokio::spawn(
            Arc::clone(&self.audit).checkpoint_every(CHECKPOINT_INTERVAL, stopped(stop_rx.clone())),
        );
        let deliveries =
            tokio::spawn(Arc::clone(&self.appliance).run_deliveries(stopped(stop_rx.clone())));
        let ssh = ssh::serve(
            self.ssh_listener,
            self.appliance,
            self.settings,
            stopped(stop_rx),
        );
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        });
        let (ssh, http) = tokio::join!(ssh, http);
        let _ = checkpoints.await;
        let _ = deliveries.await;
        if let Err(error) = self.store.flush().await {
            tracing::error!(%error, "flushing the store at shutdown");
        }
        // Not needed for durability (the write-ahead file has every entry); it saves the next
        // start the replay.
        let audit = Arc::clone(&self.audit);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || audit.store().sync_now()).await
        {
            tracing::error!(%error, "syncing the audit tiles at shutdown");
        }
        // The token threads finish what is queued and end before the process may exit.
        let (hsm, token) = (self.hsm, self.token);
        let _ = tokio::task::spawn_blocking(move || {
            token.stop();
            hsm.close()
        })
        .await;
        ssh.and(http)
    }
}
