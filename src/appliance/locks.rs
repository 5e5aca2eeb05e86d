//! Locks on records, so that each change's audit entry, written before the change, says what
//! the change will be. One appliance serialises changes to a record with a fixed set of mutexes
//! (ids hash onto them). Appliances sharing a store also take a lease on the record in it
//! ([`Store::take_lease`]): without one, two approvers voting through two appliances at once
//! would each log a vote, though only one is stored.
//!
//! A lease lapses after [`LEASE`], so an appliance that dies holding one blocks the record for
//! that long at most. Work under a lock is a few store calls and at most one token signature.

use std::time::Duration;

use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, MutexGuard};

use super::Error;
use crate::store::Store;
use crate::store::engine::Engine;

/// How long a lease holds before another appliance may take it.
const LEASE: Duration = Duration::from_secs(30);

/// How long to wait for a record another appliance holds, and how often to look again.
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// The locks of one appliance.
#[derive(Debug)]
pub(super) struct RecordLocks {
    local: Vec<Mutex<()>>,
    /// The shared store and this appliance's id in its leases, when others share it.
    shared: Option<(Store, [u8; 16])>,
}

/// A record held: given back when dropped.
pub(super) struct Held<'a> {
    _local: MutexGuard<'a, ()>,
    lease: Option<(&'a Store, String, Vec<u8>)>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some((store, id, lease)) = self.lease.take()
            && let Err(error) = store.release_lease(&id, &lease)
        {
            tracing::warn!(%error, id, "giving back a record's lease; it lapses on its own");
        }
    }
}

fn millis(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RecordLocks {
    /// Locks over `store`: leases in it too when it is a database appliances share.
    pub(super) fn new(store: &Store) -> Self {
        let shared = matches!(store.engine(), Engine::Postgres(_))
            .then(|| (store.clone(), *uuid::Uuid::new_v4().as_bytes()));
        RecordLocks {
            local: (0..64).map(|_| Mutex::new(())).collect(),
            shared,
        }
    }

    /// Holds record `id` until the guard is dropped. Not reentrant: code that holds it calls
    /// the `_held` forms of what would take it again. Refused as busy when another appliance
    /// holds the record longer than [`WAIT`].
    pub(super) async fn hold(&self, id: &str) -> Result<Held<'_>, Error> {
        let digest = Sha256::digest(id.as_bytes());
        let slot = usize::from(digest[0]) % self.local.len();
        let local = self.local[slot].lock().await;
        let Some((store, holder)) = &self.shared else {
            return Ok(Held {
                _local: local,
                lease: None,
            });
        };
        let began = std::time::Instant::now();
        loop {
            let now = std::time::SystemTime::now();
            if let Some(lease) = store.take_lease(id, holder, millis(now), millis(now + LEASE))? {
                return Ok(Held {
                    _local: local,
                    lease: Some((store, id.to_owned(), lease)),
                });
            }
            if began.elapsed() > WAIT {
                return Err(Error::Busy(format!(
                    "{id} is being changed through another appliance; try again"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
