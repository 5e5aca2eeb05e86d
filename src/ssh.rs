//! The SSH front: a russh server where the caller's public key is their identity, and each exec
//! request is one command with one JSON reply.
//!
//! - [`grammar`]: splitting command lines, the commands and their flags;
//! - [`commands`]: one file per command;
//! - [`reply`]: JSON replies and exit statuses;
//! - [`text`]: the same replies as text and tables, for people at a terminal;
//! - [`handler`]: authentication and channel bookkeeping per connection;
//! - [`channel`]: one task per channel: read the request, run it, reply;
//! - [`interactive`]: a person's keys and terminal size for the task, and a pager;
//! - [`tui`]: the terminal UI a session with a terminal and no command opens;
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
pub mod interactive;
pub mod reply;
pub mod session;
pub mod text;
pub mod tui;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use russh::{Disconnect, MethodKind};
use ssh_key::PrivateKey;
use tokio::net::TcpListener;

use crate::appliance::Appliance;
use crate::net::slots::Slots;

/// How long every authentication rejection takes, whatever the reason.
const REJECTION_TIME: Duration = Duration::from_secs(1);
/// Authentication attempts allowed per connection.
const MAX_AUTH_ATTEMPTS: usize = 6;
/// An idle connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A connection must have authenticated this long after it was accepted (sshd's
/// LoginGraceTime), or it is closed.
pub const LOGIN_GRACE: Duration = Duration::from_secs(10);
/// SSH connections open at once; past it a new one is closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// SSH connections open at once from one source (an IPv4 address or an IPv6 /64).
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 64;

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

/// Serves SSH on `listener` until `shutdown` resolves, then stops accepting, tells every
/// client the appliance is shutting down, and returns. A connection past
/// [`MAX_CONNECTIONS`] or [`MAX_CONNECTIONS_PER_SOURCE`] is closed at once; one that has not
/// authenticated within [`LOGIN_GRACE`] is closed then.
pub async fn serve(
    listener: TcpListener,
    appliance: Arc<Appliance>,
    settings: SshSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(russh_config(&settings));
    let server = handler::Server::new(appliance, settings.allowed_keys);
    let slots = Slots::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = crate::net::accept(&listener, "SSH") => accepted,
            () = &mut shutdown => break,
        };
        let slot = match slots.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                // Not a warning each: a flood of refusals would flood the log.
                tracing::debug!(%peer, %full, "SSH connection refused");
                continue;
            }
        };
        let authenticated = Arc::new(AtomicBool::new(false));
        let connection = server.connection(peer, Arc::clone(&authenticated));
        let (config, mut stopping) = (Arc::clone(&config), stop.subscribe());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = socket.set_nodelay(true);
            // The grace time runs from accept: the client's banner and key exchange count.
            let deadline = tokio::time::Instant::now() + LOGIN_GRACE;
            let setup = russh::server::run_stream(config, socket, connection);
            let session = match tokio::time::timeout_at(deadline, setup).await {
                Ok(Ok(session)) => session,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "SSH setup failed"),
                Err(_) => return tracing::debug!(%peer, "SSH login grace time is over"),
            };
            let handle = session.handle();
            let grace = tokio::time::sleep_until(deadline);
            tokio::pin!(session, grace);
            let mut graced = false;
            loop {
                tokio::select! {
                    ended = &mut session => {
                        if let Err(error) = ended {
                            tracing::debug!(%peer, %error, "SSH connection ended with an error");
                        }
                        return;
                    }
                    () = &mut grace, if !graced => {
                        graced = true;
                        if !authenticated.load(Ordering::Acquire) {
                            // Dropped, not asked to disconnect: a client that never sent its
                            // banner is not listening for one.
                            tracing::debug!(%peer, "SSH login grace time is over");
                            return;
                        }
                    }
                    _ = stopping.recv() => {
                        let reason = "the appliance is shutting down".to_owned();
                        let _ = handle
                            .disconnect(Disconnect::ByApplication, reason, String::new())
                            .await;
                        // Let the message go out before the connection is dropped.
                        let _ = tokio::time::timeout(Duration::from_secs(5), &mut session).await;
                        return;
                    }
                }
            }
        });
    }
    let _ = stop.send(());
    Ok(())
}
