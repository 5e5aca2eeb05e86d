//! A fixed-size pool of logged-in PKCS#11 sessions.
//!
//! A `cryptoki::Session` is `Send` but not `Sync`: one thread uses it at a time. The pool lends
//! sessions out ([`SessionPool::lease`]) and takes them back when the lease drops. Sessions are
//! opened lazily, up to `size`, each on the slot that holds the token with the configured label
//! (looked up again on every reconnect, since slot numbers move) and logged in as the user;
//! `CKR_USER_ALREADY_LOGGED_IN` (the token kept our login across a reconnect) counts as success.
//!
//! When a call shows that a session is gone ([`SessionPool::invalidate`]), every idle session is
//! closed and the generation number moves on, so sessions leased before the loss are closed
//! rather than returned. The pool then opens one fresh session at once to find out whether the
//! token is back, which is what the caller reports.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use super::module::{describe, find_token};
use crate::hsm::{Error, Result};

/// How long a caller waits for a free session before giving up with [`Error::Busy`].
const LEASE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct SessionPool {
    ctx: Pkcs11,
    token_label: String,
    user: UserType,
    pin: AuthPin,
    size: usize,
    state: Mutex<State>,
    returned: Condvar,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Session>,
    /// Sessions open, idle or leased, of the current generation.
    live: usize,
    generation: u64,
}

/// A session on loan; it goes back to the pool when dropped.
pub struct Lease<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
    generation: u64,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        // The option is only emptied in `drop`.
        self.session.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session, self.generation);
        }
    }
}

impl SessionPool {
    /// Makes a pool of sessions logged in as `user` and opens its first session, so a wrong
    /// label or PIN shows at start-up.
    pub fn new(
        ctx: Pkcs11,
        token_label: &str,
        user: UserType,
        pin: AuthPin,
        size: usize,
    ) -> Result<Self> {
        let pool = SessionPool {
            ctx,
            token_label: token_label.to_owned(),
            user,
            pin,
            size: size.max(1),
            state: Mutex::new(State::default()),
            returned: Condvar::new(),
        };
        let first = pool.open()?;
        {
            let mut state = pool.lock();
            state.idle.push(first);
            state.live = 1;
        }
        Ok(pool)
    }

    /// Borrows a session, opening one if fewer than `size` are open, else waiting for one.
    pub fn lease(&self) -> Result<Lease<'_>> {
        let deadline = Instant::now() + LEASE_TIMEOUT;
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(self.lent(session, state.generation));
            }
            if state.live < self.size {
                state.live += 1;
                let generation = state.generation;
                drop(state);
                return match self.open() {
                    Ok(session) => Ok(self.lent(session, generation)),
                    Err(e) => {
                        self.forget_one(generation);
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Busy(LEASE_TIMEOUT));
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Records that `lease`'s session was lost with `cause`: closes it and every idle session,
    /// then tries to open a fresh one. Returns the error the caller should report.
    pub fn invalidate(&self, mut lease: Lease<'_>, cause: &CkError) -> Error {
        let lost = lease.session.take();
        let stale = {
            let mut state = self.lock();
            state.generation += 1;
            state.live = 0;
            std::mem::take(&mut state.idle)
        };
        // Closing a dead session fails; cryptoki ignores that on drop.
        drop(lost);
        drop(stale);
        self.returned.notify_all();
        tracing::warn!(cause = %describe(cause), "token session lost; reconnecting");
        let reconnect = match self.open() {
            Ok(session) => {
                let mut state = self.lock();
                state.live += 1;
                state.idle.push(session);
                drop(state);
                self.returned.notify_one();
                tracing::info!("token session re-established");
                "the appliance reconnected to the token".to_owned()
            }
            Err(e) => {
                tracing::error!(error = %e, "token unreachable after session loss");
                format!("reconnecting failed ({e})")
            }
        };
        Error::SessionLost {
            cause: describe(cause),
            reconnect,
        }
    }

    /// Logs the application out of the token (`C_Logout` ends the login of every session).
    /// Used at shutdown; a later call finds its session logged out, which counts as a loss.
    pub fn logout(&self) -> Result<()> {
        let lease = self.lease()?;
        match lease.logout() {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _)) => Ok(()),
            Err(e) => Err(Error::Pkcs11(describe(&e))),
        }
    }

    fn lent(&self, session: Session, generation: u64) -> Lease<'_> {
        Lease {
            pool: self,
            session: Some(session),
            generation,
        }
    }

    fn give_back(&self, session: Session, generation: u64) {
        let mut state = self.lock();
        if generation == state.generation {
            state.idle.push(session);
        }
        // A session from before a loss is dropped (closed) here; `live` was already reset.
        drop(state);
        self.returned.notify_one();
    }

    fn forget_one(&self, generation: u64) {
        let mut state = self.lock();
        if generation == state.generation {
            state.live = state.live.saturating_sub(1);
        }
        drop(state);
        self.returned.notify_one();
    }

    fn open(&self) -> Result<Session> {
        let slot = find_token(&self.ctx, &self.token_label)?;
        let session = self
            .ctx
            .open_rw_session(slot)
            .map_err(|e| Error::Pkcs11(describe(&e)))?;
        match session.login(self.user, Some(&self.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e @ CkError::Pkcs11(RvError::UserAnotherAlreadyLoggedIn, _)) => {
                Err(Error::Login(format!(
                    "{}: this module shares one login among all of an application's sessions, \
                     so it cannot hold the operator's and the administrator's logins at once; \
                     key_login = \"so\" suits modules with a login per session, such as \
                     nethsm-pkcs11",
                    describe(&e)
                )))
            }
            Err(e) => Err(Error::Login(describe(&e))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
