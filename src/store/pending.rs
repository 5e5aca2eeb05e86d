//! Co-signed requests waiting for, or resolved by, their principal.

use sled::Transactional as _;
use sled::transaction::ConflictableTransactionError;

use super::{Error, PendingRequest, Record, Result, Store, expiry_key, index_key, settle};

impl Store {
    pub fn pending(&self, pending_id: &str) -> Result<Option<PendingRequest>> {
        self.get(&self.pending, pending_id)
    }

    /// Records a new request, listed under its requester and its principal, and watched for
    /// its expiry.
    pub fn insert_pending(&self, request: &PendingRequest) -> Result<()> {
        let bytes = self.encode(&request.pending_id, request)?;
        let sequence = self.db.generate_id()?;
        let trees = (
            &self.pending,
            &self.pending_by_user,
            &self.requests_expiring,
        );
        let outcome = trees.transaction(|(pending, by_user, expiring)| {
            let id = request.pending_id.as_bytes();
            if pending.get(id)?.is_some() {
                return Err(ConflictableTransactionError::Abort(Error::Exists {
                    kind: PendingRequest::KIND,
                    key: request.pending_id.clone(),
                }));
            }
            pending.insert(id, bytes.clone())?;
            by_user.insert(index_key(&request.requester, sequence), id)?;
            if request.principal != request.requester {
                by_user.insert(index_key(&request.principal, sequence), id)?;
            }
            expiring.insert(expiry_key(request.expires_at, &request.pending_id), id)?;
            Ok(())
        });
        settle(outcome)
    }

    /// Every request `user_id` made or must decide, oldest first.
    pub fn pending_of_user(&self, user_id: &str) -> Result<Vec<PendingRequest>> {
        self.indexed(&self.pending_by_user, &self.pending, user_id)
    }

    /// Changes a request atomically (see [`Store::modify`]): concurrent approvals, denials and
    /// expiries each see the others' outcome, so a request resolves once.
    pub fn update_pending<E: From<Error>>(
        &self,
        pending_id: &str,
        change: impl FnMut(PendingRequest) -> Result<PendingRequest, E>,
    ) -> Result<PendingRequest, E> {
        self.modify(&self.pending, pending_id, change)
    }
}
