//! Leases on records, for appliances that share a store: a lock on one record that every
//! appliance honours, taken and given back by compare-and-swap, and lapsing at its deadline
//! so that an appliance that died holding one stops blocking the others.

use super::engine::TreeName;
use super::{Result, Store};

/// Who holds a lease (an appliance's random id) and until when (ms since the epoch).
fn lease_bytes(holder: &[u8; 16], until: u64) -> Vec<u8> {
    let mut bytes = holder.to_vec();
    bytes.extend_from_slice(&until.to_be_bytes());
    bytes
}

fn deadline(bytes: &[u8]) -> Option<u64> {
    bytes
        .get(16..24)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

impl Store {
    /// Takes the lease on `id` for `holder` until `until`, if no one holds it, or if its holder's
    /// deadline is past at `now`; returns the lease as stored, to give back with
    /// [`Store::release_lease`], or `None` when someone else holds it.
    pub fn take_lease(
        &self,
        id: &str,
        holder: &[u8; 16],
        now: u64,
        until: u64,
    ) -> Result<Option<Vec<u8>>> {
        let key = id.as_bytes();
        let current = self.engine.get(TreeName::Leases, key)?;
        if current
            .as_deref()
            .is_some_and(|held| deadline(held).is_some_and(|d| d > now))
        {
            return Ok(None);
        }
        let lease = lease_bytes(holder, until);
        let taken = self.engine.compare_and_swap(
            TreeName::Leases,
            key,
            current.as_deref(),
            Some(&lease),
        )?;
        Ok(taken.then_some(lease))
    }

    /// Gives back the lease on `id`, unless it lapsed and another holder took it since.
    pub fn release_lease(&self, id: &str, lease: &[u8]) -> Result<()> {
        self.engine
            .compare_and_swap(TreeName::Leases, id.as_bytes(), Some(lease), None)?;
        Ok(())
    }
}
