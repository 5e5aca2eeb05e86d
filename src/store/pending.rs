//! Co-signed requests waiting for, or resolved by, their principal (declared in
//! [`super::table`]).

use super::table::TreeName;
use super::{Error, PendingRequest, Result, Store};

impl Store {
    pub fn pending(&self, pending_id: &str) -> Result<Option<PendingRequest>> {
        self.read(pending_id)
    }

    /// Every request `user_id` made or must decide, oldest first.
    pub fn pending_of_user(&self, user_id: &str) -> Result<Vec<PendingRequest>> {
        self.listed(TreeName::PendingByUser, user_id)
    }

    /// Changes a request atomically (see [`Store::change`]): concurrent approvals, denials and
    /// expiries each see the others' outcome, so a request resolves once.
    pub fn update_pending<E: From<Error>>(
        &self,
        pending_id: &str,
        change: impl FnMut(PendingRequest) -> Result<PendingRequest, E>,
    ) -> Result<PendingRequest, E> {
        self.change(pending_id, change)
    }
}
