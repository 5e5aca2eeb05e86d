//! Per-connection state for russh: who authenticated, and each open channel's request.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};

use super::AllowedKeys;
use super::channel::{self, Action, ChannelState, Identity};
use super::grammar::Command;
use super::interactive::{INPUT_QUEUE, Input};
use super::session;
use super::text::Terminal;
use crate::appliance::Appliance;
use tokio::sync::mpsc;

/// Requests one connection may have under way at once (being read or being carried out); more
/// channels are refused until some finish.
pub const MAX_CHANNELS: usize = 64;
/// Commands one connection serves; past them it is closed once idle, with a message saying to
/// reconnect. russh keeps a few KiB for every channel the server closed first until the
/// connection ends, so a long-lived multiplexed connection (an OpenSSH `ControlMaster`) is not
/// left to grow without end; the `sshsign` client reconnects sooner on its own.
pub const MAX_COMMANDS_PER_CONNECTION: usize = 4096;

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

impl Server {
    /// The state of a new connection from `peer`; `authenticated` is raised once its client
    /// has authenticated.
    pub fn connection(&self, peer: SocketAddr, authenticated: Arc<AtomicBool>) -> Connection {
        Connection {
            appliance: Arc::clone(&self.appliance),
            allowed_keys: self.allowed_keys.clone(),
            peer,
            identity: None,
            authenticated,
            channels: HashMap::new(),
            running: Arc::new(AtomicUsize::new(0)),
            open: Arc::new(AtomicUsize::new(0)),
            served: Arc::new(AtomicUsize::new(0)),
            closing: Arc::default(),
            client_closes: HashSet::new(),
            terminals: HashMap::new(),
            inputs: HashMap::new(),
            feeds: HashMap::new(),
        }
    }
}

/// One client connection.
pub struct Connection {
    appliance: Arc<Appliance>,
    allowed_keys: Option<Arc<AllowedKeys>>,
    peer: SocketAddr,
    /// Who the client authenticated as: a known identity, or a key no identity has yet (it
    /// registers at its first command, or joins one with `link finish`).
    identity: Option<Identity>,
    /// Raised when `identity` is set (the login grace timer reads it).
    authenticated: Arc<AtomicBool>,
    /// Channels whose request is still being read.
    channels: HashMap<ChannelId, ChannelState>,
    /// Requests being carried out.
    running: Arc<AtomicUsize>,
    /// Session channels accepted and not yet finished.
    open: Arc<AtomicUsize>,
    /// Commands this connection has served.
    served: Arc<AtomicUsize>,
    /// Answered channels waiting for the client to close them (see [`channel::close`]).
    closing: channel::Closing,
    /// Channels whose client said it closes them itself ([`channel::CLIENT_CLOSES_ENV`]).
    client_closes: HashSet<ChannelId>,
    /// Channels whose client asked for a PTY: replies are for a person.
    terminals: HashMap<ChannelId, Terminal>,
    /// Where a person's keys and resizes go, for channels with a PTY whose request is under
    /// way.
    inputs: HashMap<ChannelId, mpsc::Sender<Input>>,
    /// Where a session's requests go, for `session` channels.
    feeds: HashMap<ChannelId, session::Feed>,
}

/// Counts a request as running until dropped.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Running(Arc::clone(count))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connection {
    fn may_connect(&self, key: &ssh_key::PublicKey) -> bool {
        self.allowed_keys
            .as_ref()
            .is_none_or(|allowed| allowed.allows(key))
    }

    /// Feeds an event to `channel`'s state; a completed request leaves the table and is carried
    /// out in a task of its own.
    fn advance(
        &mut self,
        channel: ChannelId,
        session: &Session,
        event: impl FnOnce(&mut ChannelState) -> Option<Action>,
    ) {
        let (Some(state), Some(identity)) = (self.channels.get_mut(&channel), &self.identity)
        else {
            return;
        };
        let Some(action) = event(state) else {
            return;
        };
        self.channels.remove(&channel);
        let terminal = self.terminals.remove(&channel);
        let inputs = terminal.map(|_| {
            let (tx, rx) = mpsc::channel(INPUT_QUEUE);
            self.inputs.insert(channel, tx);
            rx
        });
        let running = Running::start(&self.running);
        let handle = session.handle();
        let closed_by_client = self
            .client_closes
            .remove(&channel)
            .then(|| channel::expect_close(&self.closing, channel));
        let appliance = Arc::clone(&self.appliance);
        let work: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> =
            if let Action::Run(Command::Session, ..) = action {
                let (feed, intake) = session::Feed::new();
                self.feeds.insert(channel, feed);
                let identity = identity.clone();
                Box::pin(session::serve(
                    handle.clone(),
                    channel,
                    appliance,
                    identity,
                    intake,
                ))
            } else {
                let identity = identity.clone();
                let handle = handle.clone();
                Box::pin(channel::perform(
                    action, handle, channel, appliance, identity, terminal, inputs,
                ))
            };
        let closing = Arc::clone(&self.closing);
        let (open, served) = (Arc::clone(&self.open), Arc::clone(&self.served));
        tokio::spawn(async move {
            work.await;
            drop(running);
            channel::close(handle.clone(), channel, closed_by_client, &closing).await;
            let served = served.fetch_add(1, Ordering::AcqRel) + 1;
            let still_open = open.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
            if served >= MAX_COMMANDS_PER_CONNECTION && still_open == 0 {
                let reason =
                    format!("this connection has served {served} commands; reconnect to go on");
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, reason, String::new())
                    .await;
            }
        });
    }
}

impl Connection {
    /// Passes a person's input to the task serving `channel`, if one is listening; never waits
    /// (see [`super::interactive`]).
    fn forward(&mut self, channel: ChannelId, input: Input) {
        if let Some(tx) = self.inputs.get(&channel)
            && let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(input)
        {
            self.inputs.remove(&channel);
        }
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
        let known = self.appliance.known(key.public_key);
        let identity = match known {
            Ok(Some(caller)) => Ok(Identity::Known(caller)),
            Ok(None) => self
                .appliance
                .admits_new_identity()
                .map(|()| Identity::New {
                    key: key.public_key.clone(),
                    from: self.peer.ip(),
                }),
            Err(error) => Err(error),
        };
        match identity {
            Ok(identity) => {
                tracing::debug!(user = %identity, peer = %self.peer, "authenticated");
                self.identity = Some(identity);
                self.authenticated.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            Err(error @ crate::appliance::Error::OverQuota(_)) => {
                // SSH has no way to say why; the operator's log does.
                tracing::warn!(%error, peer = %self.peer, "new identity refused");
                Ok(Auth::reject())
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
        if self.identity.is_none() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        } else if self.channels.len() + self.running.load(Ordering::Acquire) >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
        } else {
            // The channel's messages reach us through the callbacks below; the `Channel` object
            // is not needed.
            self.channels.insert(channel.id(), ChannelState::default());
            self.open.fetch_add(1, Ordering::AcqRel);
            reply.accept().await;
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.advance(channel, session, |state| state.on_exec(data));
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.advance(channel, session, ChannelState::on_shell);
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.advance(channel, session, |state| state.on_data(data));
        self.forward(channel, Input::Data(data.to_vec()));
        if let Some(feed) = self.feeds.get(&channel)
            && !feed.push(data)
        {
            // The session ends, saying why.
            self.feeds.remove(&channel);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.advance(channel, session, ChannelState::on_eof);
        self.forward(channel, Input::Eof);
        if let Some(feed) = self.feeds.remove(&channel) {
            feed.eof();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.remove(&channel).is_some() {
            // Closed before it asked for anything.
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
        self.client_closes.remove(&channel);
        self.terminals.remove(&channel);
        self.inputs.remove(&channel);
        self.feeds.remove(&channel);
        channel::closed_by_client(&self.closing, channel);
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Other variables are ignored: commands take flags, not environment.
        if variable_name == channel::CLIENT_CLOSES_ENV
            && variable_value == "1"
            && self.channels.contains_key(&channel)
        {
            self.client_closes.insert(channel);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.contains_key(&channel) {
            self.terminals
                .insert(channel, Terminal::from_pty(term, col_width, row_height));
        }
        session.channel_success(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(terminal) = self.terminals.get_mut(&channel) {
            let resized = Terminal::from_pty("", col_width, row_height);
            (terminal.cols, terminal.rows) = (resized.cols, resized.rows);
        }
        self.forward(
            channel,
            Input::Resize {
                cols: col_width,
                rows: row_height,
            },
        );
        Ok(())
    }
}
