//! The SSH front: a russh server where the caller's public key is their identity, and each exec
//! request is one command with one JSON reply.
//!
//! - [`grammar`]: splitting command lines, the commands and their flags;
//! - [`commands`]: one file per command;
//! - [`reply`]: JSON replies and exit statuses;
//! - [`handler`]: authentication and channel bookkeeping per connection;
//! - [`channel`]: one task per channel: read the request, run it, reply;
//! - [`host_key`]: the server's own key on disk.
//!
//! Authentication is public key only. A key the appliance has not seen registers a new user
//! (unless `SSHSIGN_AUTHORIZED_KEYS` limits who may connect); every rejection takes the same
//! time; attempts per connection are capped and idle connections are closed.

pub mod channel;
pub mod commands;
pub mod grammar;
pub mod handler;
pub mod host_key;
pub mod reply;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::MethodKind;
use russh::server::Server as _;
use ssh_key::PrivateKey;
use tokio::net::TcpListener;

use crate::appliance::Appliance;

/// How long every authentication rejection takes, whatever the reason.
const REJECTION_TIME: Duration = Duration::from_secs(1);
/// Authentication attempts allowed per connection.
const MAX_AUTH_ATTEMPTS: usize = 6;
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The set of SSH key fingerprints allowed to connect, from an authorized_keys file.
#[derive(Debug, Clone)]
pub struct AllowedKeys(HashSet<String>);

impl AllowedKeys {
    pub fn read(path: &Path) -> Result<Self, String> {
        let keys = ssh_key::AuthorizedKeys::read_file(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(AllowedKeys(
            keys.iter()
                .map(|entry| {
                    entry
                        .public_key()
                        .fingerprint(ssh_key::HashAlg::Sha256)
                        .to_string()
                })
                .collect(),
        ))
    }

    pub fn allows(&self, key: &ssh_key::PublicKey) -> bool {
        self.0
            .contains(&key.fingerprint(ssh_key::HashAlg::Sha256).to_string())
    }
}

/// What the SSH server needs besides the appliance.
#[derive(Debug)]
pub struct SshSettings {
    pub host_key: PrivateKey,
    /// `None`: any key may connect and register.
    pub allowed_keys: Option<AllowedKeys>,
}

/// Key exchange: the post-quantum hybrid first, then X25519 for clients without it (OpenSSH
/// before 9.9); no finite-field groups. ssh-audit warns that X25519 alone does not protect
/// against a future quantum computer, and that is all it says of these.
const KEX: &[russh::kex::Name] = &[
    russh::kex::MLKEM768X25519_SHA256,
    russh::kex::CURVE25519,
    russh::kex::CURVE25519_PRE_RFC_8731,
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// MACs for the CTR ciphers: encrypt-then-MAC only (the AEAD ciphers need none).
const MACS: &[russh::mac::Name] = &[russh::mac::HMAC_SHA512_ETM, russh::mac::HMAC_SHA256_ETM];

/// What the server offers: ssh-audit 3.9 finds nothing weak in it (see [`KEX`]), and stock
/// OpenSSH 9.2 and the `sshsign` client connect. No compression: commands are small.
fn preferred() -> russh::Preferred {
    russh::Preferred {
        kex: KEX.into(),
        mac: MACS.into(),
        compression: (&[russh::compression::NONE][..]).into(),
        ..russh::Preferred::DEFAULT
    }
}

fn russh_config(settings: &SshSettings) -> russh::server::Config {
    russh::server::Config {
        preferred: preferred(),
        server_id: russh::SshId::Standard(
            concat!("SSH-2.0-sshsign_", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: russh::MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: REJECTION_TIME,
        // OpenSSH opens with a "none" attempt to learn the methods; answering it at once reveals
        // nothing and spares every login a second.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        inactivity_timeout: Some(IDLE_TIMEOUT),
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        keys: vec![settings.host_key.clone()],
        nodelay: true,
        ..Default::default()
    }
}

/// Serves SSH on `listener` until `shutdown` resolves, then stops accepting and returns.
pub async fn serve(
    listener: TcpListener,
    appliance: Arc<Appliance>,
    settings: SshSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(russh_config(&settings));
    let mut server = handler::Server::new(appliance, settings.allowed_keys);
    let running = server.run_on_socket(config, &listener);
    let handle = running.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.shutdown("the appliance is shutting down".to_owned());
    });
    running.await
}
