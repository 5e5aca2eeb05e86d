//! API keys and human-approval requests.

use sled::Transactional as _;
use sled::transaction::ConflictableTransactionError;

use super::records::{ApiKeyRecord, ApprovalRecord};
use super::{Error, Record, Result, Store, expiry_key, index_key, settle};

impl Store {
    /// Records a new API key, findable by the SHA-256 of its secret.
    pub fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<()> {
        let bytes = self.encode(&key.id, key)?;
        let sequence = self.db.generate_id()?;
        let trees = (
            &self.api_keys,
            &self.api_keys_by_hash,
            &self.api_keys_by_owner,
        );
        let outcome = trees.transaction(|(keys, by_hash, by_owner)| {
            if by_hash.get(key.key_sha256.as_bytes())?.is_some() {
                return Err(ConflictableTransactionError::Abort(Error::Exists {
                    kind: ApiKeyRecord::KIND,
                    key: key.prefix.clone(),
                }));
            }
            keys.insert(key.id.as_bytes(), bytes.clone())?;
            by_hash.insert(key.key_sha256.as_bytes(), key.id.as_bytes())?;
            by_owner.insert(index_key(&key.owner, sequence), key.id.as_bytes())?;
            Ok(())
        });
        settle(outcome)
    }

    pub fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.get(&self.api_keys, id)
    }

    /// The key whose secret hashes to `sha256` (hex).
    pub fn api_key_by_hash(&self, sha256: &str) -> Result<Option<ApiKeyRecord>> {
        match self.api_keys_by_hash.get(sha256)? {
            Some(id) => self.api_key(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Every API key `owner` made, oldest first.
    pub fn api_keys_of(&self, owner: &str) -> Result<Vec<ApiKeyRecord>> {
        self.indexed(&self.api_keys_by_owner, &self.api_keys, owner)
    }

    /// Changes an API key atomically (revocation, last use).
    pub fn update_api_key<E: From<Error>>(
        &self,
        id: &str,
        change: impl FnMut(ApiKeyRecord) -> Result<ApiKeyRecord, E>,
    ) -> Result<ApiKeyRecord, E> {
        self.modify(&self.api_keys, id, change)
    }

    /// Records a new approval request, listed under its owner and each approver.
    pub fn insert_approval(&self, request: &ApprovalRecord) -> Result<()> {
        let bytes = self.encode(&request.request_id, request)?;
        let sequence = self.db.generate_id()?;
        let mut listed: Vec<&String> = request.approvers.iter().chain([&request.owner]).collect();
        listed.sort();
        listed.dedup();
        let trees = (
            &self.approvals,
            &self.approvals_by_user,
            &self.requests_expiring,
        );
        let outcome = trees.transaction(|(approvals, by_user, expiring)| {
            let id = request.request_id.as_bytes();
            if approvals.get(id)?.is_some() {
                return Err(ConflictableTransactionError::Abort(Error::Exists {
                    kind: ApprovalRecord::KIND,
                    key: request.request_id.clone(),
                }));
            }
            approvals.insert(id, bytes.clone())?;
            for user in &listed {
                by_user.insert(index_key(user, sequence), id)?;
            }
            expiring.insert(expiry_key(request.expires_at, &request.request_id), id)?;
            Ok(())
        });
        settle(outcome)
    }

    pub fn approval(&self, request_id: &str) -> Result<Option<ApprovalRecord>> {
        self.get(&self.approvals, request_id)
    }

    /// Every approval request `user_id` owns or may decide, oldest first.
    pub fn approvals_of_user(&self, user_id: &str) -> Result<Vec<ApprovalRecord>> {
        self.indexed(&self.approvals_by_user, &self.approvals, user_id)
    }

    /// Changes an approval request atomically (see [`Store::modify`]).
    pub fn update_approval<E: From<Error>>(
        &self,
        request_id: &str,
        change: impl FnMut(ApprovalRecord) -> Result<ApprovalRecord, E>,
    ) -> Result<ApprovalRecord, E> {
        self.modify(&self.approvals, request_id, change)
    }
}
