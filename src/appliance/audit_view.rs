//! The audit log as each caller may see it. Checkpoints and consistency proofs are hashes and
//! are public; an entry (and its inclusion proof) is shown only to its readers: the actor, the
//! key's owner, the principal, the parties.

use super::{Appliance, Caller, Error};
use crate::audit::{AuditEntry, ConsistencyProof, InclusionProof};

/// A page of entries, and the index to continue from.
pub type EntryPage = (Vec<(u64, AuditEntry)>, Option<u64>);

/// The most entries one `audit-entries` reply holds.
pub const MAX_ENTRIES: usize = 1000;
/// The most entries one call of [`Appliance::audit_entries`] looks at: a caller with few
/// entries in a long log gets a page that may hold fewer than they asked for (even none), and
/// `next` to go on from, rather than a scan of the whole log.
pub const MAX_SCANNED: u64 = 50_000;

impl Appliance {
    /// Tile `path` of the log as C2SP tlog-tiles names it, as anyone may see it (see
    /// [`crate::audit::AuditLog::served_tile`]); `None` if there is no such tile.
    pub async fn audit_tile(&self, path: String) -> Result<Option<Vec<u8>>, Error> {
        let audit = std::sync::Arc::clone(&self.audit);
        tokio::task::spawn_blocking(move || audit.served_tile(&path))
            .await
            .map_err(|e| Error::Internal(format!("reading a tile: {e}")))?
            .map_err(Error::Audit)
    }

    /// The latest stored checkpoint (the specification's `checkpoint`), if one was signed.
    pub fn audit_latest_checkpoint(&self) -> Result<Option<String>, Error> {
        self.audit.latest_note().map_err(Error::Audit)
    }

    /// The latest signed checkpoint, signed now if the log grew since the last one.
    pub async fn audit_checkpoint(
        &self,
    ) -> Result<(crate::audit::note::Checkpoint, String), Error> {
        self.audit.checkpoint().await.map_err(Error::Audit)
    }

    /// Entry `index` with its inclusion proof, if the caller may read it.
    pub async fn audit_proof(
        &self,
        caller: &Caller,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, Error> {
        let entry = self.audit.entry(index).map_err(Error::Audit)?;
        if !entry.is_some_and(|e| e.readers.iter().any(|r| r == caller.id())) {
            return Err(Error::InvalidArgument(format!(
                "no audit entry {index} of yours"
            )));
        }
        self.audit
            .inclusion(index, size)
            .await
            .map_err(Error::Audit)
    }

    /// A consistency proof from size `from` to the checkpoint at `to` (default: the latest).
    pub async fn audit_consistency(
        &self,
        from: u64,
        to: Option<u64>,
    ) -> Result<ConsistencyProof, Error> {
        self.audit.consistency(from, to).await.map_err(Error::Audit)
    }

    /// The caller's entries from index `from` on, at most `limit`; and where to continue.
    pub fn audit_entries(
        &self,
        caller: &Caller,
        from: u64,
        limit: usize,
    ) -> Result<EntryPage, Error> {
        let limit = limit.clamp(1, MAX_ENTRIES);
        let mut mine = Vec::new();
        let mut next = from;
        let size = self.audit.latest_head().map_err(Error::Audit)?.size;
        let stop = size.min(from.saturating_add(MAX_SCANNED));
        while next < stop && mine.len() < limit {
            let batch = self
                .audit
                .entries(next, usize::try_from(stop - next).unwrap_or(1000).min(1000))
                .map_err(Error::Audit)?;
            let Some(&(last, _)) = batch.last() else {
                break;
            };
            for (index, entry) in batch {
                if mine.len() == limit {
                    return Ok((mine, Some(index)));
                }
                if entry.readers.iter().any(|r| r == caller.id()) {
                    mine.push((index, entry));
                }
            }
            next = last + 1;
        }
        Ok((mine, (next < size).then_some(next)))
    }

    /// The caller's entries before index `before`, newest first, at most `limit`; and the index
    /// to continue back from (`None` at the log's start). Like [`Appliance::audit_entries`], one
    /// call looks at no more than [`MAX_SCANNED`] entries.
    pub fn audit_entries_before(
        &self,
        caller: &Caller,
        before: u64,
        limit: usize,
    ) -> Result<EntryPage, Error> {
        let limit = limit.clamp(1, MAX_ENTRIES);
        let mut mine = Vec::new();
        let mut next = before.min(self.audit.latest_head().map_err(Error::Audit)?.size);
        let stop = next.saturating_sub(MAX_SCANNED);
        while next > stop && mine.len() < limit {
            let start = next.saturating_sub(1000).max(stop);
            let batch = self
                .audit
                .entries(start, usize::try_from(next - start).unwrap_or(1000))
                .map_err(Error::Audit)?;
            if batch.is_empty() {
                break;
            }
            for (index, entry) in batch.into_iter().rev() {
                if mine.len() == limit {
                    return Ok((mine, Some(index + 1)));
                }
                if entry.readers.iter().any(|r| r == caller.id()) {
                    mine.push((index, entry));
                }
                next = index;
            }
        }
        Ok((mine, (next > 0).then_some(next)))
    }
}
