//! API keys and human-approval requests (declared in [`super::table`]).

use super::records::{ApiKeyRecord, ApprovalRecord};
use super::table::TreeName;
use super::{Error, Result, Store};

impl Store {
    pub fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.read(id)
    }

    /// The key whose secret hashes to `sha256` (hex).
    pub fn api_key_by_hash(&self, sha256: &str) -> Result<Option<ApiKeyRecord>> {
        match self
            .engine
            .get(TreeName::ApiKeysByHash, sha256.as_bytes())?
        {
            Some(id) => self.api_key(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Every API key `owner` made, oldest first.
    pub fn api_keys_of(&self, owner: &str) -> Result<Vec<ApiKeyRecord>> {
        self.listed(TreeName::ApiKeysByOwner, owner)
    }

    /// Changes an API key atomically (revocation, last use).
    pub fn update_api_key<E: From<Error>>(
        &self,
        id: &str,
        change: impl FnMut(ApiKeyRecord) -> Result<ApiKeyRecord, E>,
    ) -> Result<ApiKeyRecord, E> {
        self.change(id, change)
    }

    pub fn approval(&self, request_id: &str) -> Result<Option<ApprovalRecord>> {
        self.read(request_id)
    }

    /// Every approval request `user_id` owns or may decide, oldest first.
    pub fn approvals_of_user(&self, user_id: &str) -> Result<Vec<ApprovalRecord>> {
        self.listed(TreeName::ApprovalsByUser, user_id)
    }

    /// Changes an approval request atomically (see [`Store::change`]).
    pub fn update_approval<E: From<Error>>(
        &self,
        request_id: &str,
        change: impl FnMut(ApprovalRecord) -> Result<ApprovalRecord, E>,
    ) -> Result<ApprovalRecord, E> {
        self.change(request_id, change)
    }
}
