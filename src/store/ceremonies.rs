//! Passkey ceremonies under way (declared in [`super::table`]), counted by source and overall
//! without reading a record: both indexes sort by expiry, so the live ones are a key range.

use std::collections::HashMap;
use std::ops::Bound;

use super::engine::{Span, TreeName};
use super::records::CeremonyRecord;
use super::{Record as _, Result, Store, expiry_key};

const TREES: [TreeName; 3] = [
    TreeName::Ceremonies,
    TreeName::CeremoniesBySource,
    TreeName::CeremoniesExpiring,
];

/// `source ‖ 0 ‖ expiry (i64 BE) ‖ id`.
pub(super) fn by_source_key(source: &str, expires_at: i64, id: &str) -> Vec<u8> {
    let mut key = source.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&expires_at.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The entries of `span` that expire after `now`.
fn live(mut span: Span, from: Vec<u8>) -> Span {
    span.from = Bound::Included(from);
    span
}

impl Store {
    /// Ceremonies still live at `now`, across all sources.
    pub fn live_ceremonies(&self, now: i64) -> Result<usize> {
        let span = live(Span::all(), (now + 1).to_be_bytes().to_vec());
        self.engine.count(TreeName::CeremoniesExpiring, &span)
    }

    /// Ceremonies still live at `now` started from `source`.
    pub fn live_ceremonies_from(&self, source: &str, now: i64) -> Result<usize> {
        let mut prefix = source.as_bytes().to_vec();
        prefix.push(0);
        let span = live(Span::prefix(&prefix), by_source_key(source, now + 1, ""));
        self.engine.count(TreeName::CeremoniesBySource, &span)
    }

    /// The id of the live ceremony expiring first among those of the source holding the most.
    pub fn oldest_ceremony_of_largest_holder(&self, now: i64) -> Result<Option<String>> {
        /// A source's live ceremonies: how many, and the first to expire (entries under a
        /// source come in the order of expiry, so the first seen).
        struct Held {
            count: usize,
            first: Vec<u8>,
        }
        let mut held: HashMap<Vec<u8>, Held> = HashMap::new();
        self.engine
            .walk(TreeName::CeremoniesBySource, &Span::all(), |key, id| {
                let Some(split) = key.iter().position(|b| *b == 0) else {
                    return Ok(());
                };
                let at = key
                    .get(split + 1..split + 9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(i64::MIN, i64::from_be_bytes);
                if at > now {
                    held.entry(key[..split].to_vec())
                        .or_insert(Held {
                            count: 0,
                            first: id,
                        })
                        .count += 1;
                }
                Ok(())
            })?;
        Ok(held
            .into_values()
            .max_by_key(|h| h.count)
            .map(|h| String::from_utf8_lossy(&h.first).into_owned()))
    }

    /// Takes a ceremony out of the store (of two appliances taking it at once, one gets it).
    pub fn take_ceremony(&self, id: &str) -> Result<Option<CeremonyRecord>> {
        let found = self.engine.transaction(&TREES, |tx| {
            let Some(bytes) = tx.get(TreeName::Ceremonies, id.as_bytes())? else {
                return Ok(None);
            };
            let record: CeremonyRecord = self.decode(id.as_bytes(), &bytes)?;
            tx.remove(TreeName::Ceremonies, id.as_bytes())?;
            tx.remove(
                TreeName::CeremoniesBySource,
                &by_source_key(&record.source, record.expires_at, id),
            )?;
            tx.remove(
                TreeName::CeremoniesExpiring,
                &expiry_key(record.expires_at, id),
            )?;
            Ok(Some(record))
        });
        match found {
            // A damaged record: nobody can finish it, and it must not stop the sweep. (Its entry
            // under its source, which only the record locates, stops counting when it expires.)
            Err(e @ (super::Error::Seal(_) | super::Error::Corrupt { .. })) => {
                tracing::warn!(error = %e, kind = CeremonyRecord::KIND, "dropping an unreadable record");
                self.engine.remove(TreeName::Ceremonies, id.as_bytes())?;
                Ok(None)
            }
            other => other,
        }
    }

    /// Removes up to `limit` ceremonies whose time is up by `now`; says how many.
    pub fn remove_expired_ceremonies(&self, now: i64, limit: usize) -> Result<usize> {
        let due = Span::below((now + 1).to_be_bytes().to_vec());
        let entries = self
            .engine
            .scan(TreeName::CeremoniesExpiring, &due, 0, limit)?;
        for (at, id) in &entries {
            if self.take_ceremony(&String::from_utf8_lossy(id))?.is_none() {
                // An entry whose record is gone.
                self.engine.remove(TreeName::CeremoniesExpiring, at)?;
            }
        }
        Ok(entries.len())
    }
}
