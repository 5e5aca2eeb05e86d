//! The rate limits' timestamps ([`crate::limit::SharedLimiter`]): when each key's next
//! request is due, milliseconds since the Unix epoch, 8 bytes big-endian.

use super::engine::{Span, TreeName};
use super::{Result, Store};

fn moment(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

impl Store {
    /// Moves `key`'s timestamp by `step`, which sees the current one (`None`: none, or
    /// unreadable) and returns the next, or refuses; by compare-and-swap, so that concurrent
    /// steps (on any appliance) each see the others'.
    pub fn step_rate<E>(
        &self,
        key: &[u8],
        mut step: impl FnMut(Option<u64>) -> Result<u64, E>,
    ) -> Result<Result<(), E>> {
        loop {
            let current = self.engine.get(TreeName::Rates, key)?;
            let next = match step(current.as_deref().and_then(moment)) {
                Ok(next) => next.to_be_bytes(),
                Err(refused) => return Ok(Err(refused)),
            };
            if self.engine.compare_and_swap(
                TreeName::Rates,
                key,
                current.as_deref(),
                Some(&next),
            )? {
                return Ok(Ok(()));
            }
        }
    }

    /// Removes the timestamps already past at `now` (a key whose requests are all spent needs
    /// none); says how many. One that moves meanwhile is kept.
    pub fn remove_spent_rates(&self, now: u64) -> Result<usize> {
        let mut spent = Vec::new();
        self.engine
            .walk(TreeName::Rates, &Span::all(), |key, value| {
                if moment(&value).is_none_or(|at| at < now) {
                    spent.push((key, value));
                }
                Ok(())
            })?;
        let mut removed = 0;
        for (key, value) in spent {
            let gone = self
                .engine
                .compare_and_swap(TreeName::Rates, &key, Some(&value), None)?;
            removed += usize::from(gone);
        }
        Ok(removed)
    }
}
