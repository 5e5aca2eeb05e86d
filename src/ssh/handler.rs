//! Per-connection state for russh: who authenticated, and how many channels are open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};

use super::AllowedKeys;
use crate::appliance::{Appliance, Caller};

/// Channels one connection may have open at once; more are refused until some close.
pub const MAX_CHANNELS: usize = 64;

/// Makes a [`Connection`] for each client.
#[derive(Debug, Clone)]
pub struct Server {
    appliance: Arc<Appliance>,
    allowed_keys: Option<Arc<AllowedKeys>>,
}

impl Server {
    pub fn new(appliance: Arc<Appliance>, allowed_keys: Option<AllowedKeys>) -> Self {
        Server {
            appliance,
            allowed_keys: allowed_keys.map(Arc::new),
        }
    }
}

impl russh::server::Server for Server {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            appliance: Arc::clone(&self.appliance),
            allowed_keys: self.allowed_keys.clone(),
            peer,
            caller: None,
            open_channels: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!(%error, "SSH connection ended with an error");
    }
}

/// One client connection.
pub struct Connection {
    appliance: Arc<Appliance>,
    allowed_keys: Option<Arc<AllowedKeys>>,
    peer: Option<SocketAddr>,
    caller: Option<Caller>,
    open_channels: Arc<AtomicUsize>,
}

impl Connection {
    fn may_connect(&self, key: &ssh_key::PublicKey) -> bool {
        self.allowed_keys
            .as_ref()
            .is_none_or(|allowed| allowed.allows(key))
    }
}

/// Decrements the connection's channel count when a channel task ends.
pub struct ChannelSlot(Arc<AtomicUsize>);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.may_connect(offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.may_connect(key.public_key) {
            return Ok(Auth::reject());
        }
        match self.appliance.identify(key.public_key).await {
            Ok(caller) => {
                tracing::debug!(user = %caller.user.user_id, peer = ?self.peer, "authenticated");
                self.caller = Some(caller);
                Ok(Auth::Accept)
            }
            Err(error) => {
                tracing::error!(%error, "could not identify a verified key");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(caller) = self.caller.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if self.open_channels.fetch_add(1, Ordering::AcqRel) >= MAX_CHANNELS {
            self.open_channels.fetch_sub(1, Ordering::AcqRel);
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        let slot = ChannelSlot(Arc::clone(&self.open_channels));
        reply.accept().await;
        tokio::spawn(super::channel::serve(
            channel,
            Arc::clone(&self.appliance),
            caller,
            slot,
        ));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        Ok(())
    }
}
