//! Durable state in sled: users and their SSH keys, signing keys, authorizations, co-signed
//! requests, negotiations, the audit log's trees, and a little metadata.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `users` | `user_id` | [`UserRecord`] |
//! | `ssh_keys` | SSH key fingerprint | [`SshKeyRecord`] |
//! | `signing_keys` | `key_id` | [`SigningKeyRecord`] |
//! | `signing_keys_by_owner` | `user_id` `\0` sequence (u64 BE) | `key_id` |
//! | `signing_keys_by_public` | 32-byte public key | `key_id` |
//! | `authorizations` | `authorization_id` | [`AuthorizationRecord`], sealed |
//! | `authorizations_by_key` | `key_id` `\0` sequence | `authorization_id` |
//! | `authorizations_by_grantee` | `user_id` `\0` sequence | `authorization_id` |
//! | `pending` | `pending_id` | [`PendingRequest`], sealed |
//! | `pending_by_user` | `user_id` `\0` sequence | `pending_id` (requester and principal) |
//! | `negotiations` | `negotiation_id` | [`NegotiationRecord`](crate::negotiation::NegotiationRecord), sealed |
//! | `offers` | `negotiation_id` `\0` round (u64 BE) | [`OfferRecord`](crate::negotiation::OfferRecord), sealed |
//! | `api_keys` | API key id | [`ApiKeyRecord`] (the key's SHA-256, never the key) |
//! | `api_keys_by_hash` | SHA-256 of the key, hex | API key id |
//! | `api_keys_by_owner` | `user_id` `\0` sequence | API key id |
//! | `approvals` | request id | [`ApprovalRecord`], sealed |
//! | `approvals_by_user` | `user_id` `\0` sequence | request id (owner and approvers) |
//! | `approvals_expiring` | expiry (i64 BE) ‖ request id | request id (`pnd_` or `apr_`), until its time is up |
//! | `enrollments` | SHA-256 of the link token, hex | [`EnrollmentRecord`] |
//! | `authenticators` | authenticator id | [`AuthenticatorRecord`], sealed |
//! | `authenticators_by_user` | `user_id` `\0` sequence | authenticator id |
//! | `passkeys_by_credential` | credential id, base64url | authenticator id |
//! | `webhook_endpoints` | endpoint id | [`WebhookEndpoint`], sealed |
//! | `webhook_endpoints_by_user` | `user_id` `\0` sequence | endpoint id |
//! | `notify_targets` | `user_id` | [`NotifyTarget`], sealed |
//! | `deliveries` | message id | [`Delivery`], sealed |
//! | `deliveries_due` | next attempt (i64 BE) ‖ message id | message id, while pending |
//! | `deliveries_by_request` | request id `\0` sequence | message id |
//! | `consents` | `user_id` `\0` `from` | [`ConsentRecord`], sealed: whom a user accepts requests and grants from |
//! | `token_chores` | `key_id` | empty: the key's token object may need destroying (a creation under way, a revocation not yet carried out in the token) |
//! | `meta` | name | small settings, such as the encrypted data key |
//!
//! Each record kind is declared once in [`table`]: its tree, its key and the index entries it
//! makes; [`Store::create`], [`Store::read`], [`Store::change`] and [`Store::listed`] are the
//! operations on records the appliance uses, in place of sled calls. The kinds that write
//! several records at once (a user with its first SSH key, a signing key with its first
//! authorization, an offer with its negotiation) keep their own transactions.
//!
//! Sequence numbers come from sled's monotonic id generator, so an index scan yields records in
//! creation order. Writes that touch several trees run in one transaction. sled keeps writes in
//! memory and flushes in the background; a caller whose reply depends on a write calls
//! [`Store::flush`] (an fsync, shared with concurrent callers) first.

mod approvals;
mod authenticators;
mod consents;
pub mod flusher;
mod keys;
mod negotiation;
mod pending;
pub mod records;
pub mod table;
mod webhooks;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sled::transaction::TransactionError;
use sled::{Db, Tree};

use self::flusher::Flusher;
pub use self::records::{
    ApiKeyRecord, ApiScope, ApprovalRecord, AuthenticatorKind, AuthenticatorRecord,
    AuthorizationRecord, ConsentRecord, Delivery, DeliveryKind, DeliveryState, EnrollmentKind,
    EnrollmentRecord, KeyStatus, LinkTerms, NotifyTarget, PendingRequest, REQUEST_TOTP_BUDGET,
    Record, RequestStatus, SigningKeyRecord, SshKeyRecord, TOTP_FAILURE_BUDGET,
    TOTP_LIFETIME_FAILURES, TotpState, UserRecord, Vote, WebhookEndpoint,
};
use crate::seal::{Sealer, WrappedDataKey};

/// Store failures. Internal detail for the log; users see a generic message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("{kind} record {key:?} is corrupt: {reason}")]
    Corrupt {
        kind: &'static str,
        key: String,
        reason: String,
    },
    #[error("{kind} record {key:?} has version {found}; this build reads version {supported}")]
    Version {
        kind: &'static str,
        key: String,
        found: u32,
        supported: u32,
    },
    #[error("{kind} {key:?} already exists")]
    Exists { kind: &'static str, key: String },
    #[error("{kind} {key:?} does not exist")]
    Missing { kind: &'static str, key: String },
    #[error(transparent)]
    Seal(#[from] crate::seal::Error),
    #[error("sealed records cannot be read before the data key is open")]
    NotUnsealed,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
}

/// Turns a transaction's outcome into ours.
fn settle<T>(outcome: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
    outcome.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => Error::Sled(e),
    })
}

/// Positions `from` to `from + limit` of a tree scan, each entry made an item by `read` (`None`:
/// an index entry whose record is gone), and the position of the next page if there is one.
/// Entries before `from` are passed over without `read`.
fn page_of<T>(
    entries: sled::Iter,
    from: usize,
    limit: usize,
    mut read: impl FnMut(sled::IVec, sled::IVec) -> Result<Option<T>>,
) -> Result<(Vec<T>, Option<usize>)> {
    let mut found = Vec::new();
    for (position, entry) in entries.enumerate().skip(from) {
        if position - from == limit {
            return Ok((found, Some(position)));
        }
        let (key, value) = entry?;
        found.extend(read(key, value)?);
    }
    Ok((found, None))
}

/// `owner ‖ 0 ‖ sequence`: scanning an owner's prefix yields entries in creation order.
fn index_key(owner: &str, sequence: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + 9);
    key.extend_from_slice(owner.as_bytes());
    key.push(0);
    key.extend_from_slice(&sequence.to_be_bytes());
    key
}

/// The expiry watch's key: when, then which.
fn expiry_key(expires_at: i64, id: &str) -> Vec<u8> {
    let mut key = expires_at.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

/// The appliance's database. Cloning is cheap and shares everything.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    flusher: Flusher,
    sealer: Arc<OnceLock<Sealer>>,
    users: Tree,
    ssh_keys: Tree,
    signing_keys: Tree,
    keys_by_owner: Tree,
    keys_by_public: Tree,
    authorizations: Tree,
    authorizations_by_key: Tree,
    authorizations_by_grantee: Tree,
    pending: Tree,
    pending_by_user: Tree,
    negotiations: Tree,
    offers: Tree,
    api_keys: Tree,
    api_keys_by_hash: Tree,
    api_keys_by_owner: Tree,
    approvals: Tree,
    approvals_by_user: Tree,
    /// Open requests of either kind, by expiry (the tree's name predates signature requests).
    requests_expiring: Tree,
    enrollments: Tree,
    authenticators: Tree,
    authenticators_by_user: Tree,
    passkeys_by_credential: Tree,
    webhook_endpoints: Tree,
    webhook_endpoints_by_user: Tree,
    notify_targets: Tree,
    deliveries: Tree,
    deliveries_due: Tree,
    deliveries_by_request: Tree,
    consents: Tree,
    token_chores: Tree,
    meta: Tree,
}

const DATA_KEY: &str = "seal/data-key";

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Store {
            flusher: Flusher::start(db.clone()).map_err(sled::Error::Io)?,
            sealer: Arc::new(OnceLock::new()),
            users: db.open_tree("users")?,
            ssh_keys: db.open_tree("ssh_keys")?,
            signing_keys: db.open_tree("signing_keys")?,
            keys_by_owner: db.open_tree("signing_keys_by_owner")?,
            keys_by_public: db.open_tree("signing_keys_by_public")?,
            authorizations: db.open_tree("authorizations")?,
            authorizations_by_key: db.open_tree("authorizations_by_key")?,
            authorizations_by_grantee: db.open_tree("authorizations_by_grantee")?,
            pending: db.open_tree("pending")?,
            pending_by_user: db.open_tree("pending_by_user")?,
            negotiations: db.open_tree("negotiations")?,
            offers: db.open_tree("offers")?,
            api_keys: db.open_tree("api_keys")?,
            api_keys_by_hash: db.open_tree("api_keys_by_hash")?,
            api_keys_by_owner: db.open_tree("api_keys_by_owner")?,
            approvals: db.open_tree("approvals")?,
            approvals_by_user: db.open_tree("approvals_by_user")?,
            requests_expiring: db.open_tree("approvals_expiring")?,
            enrollments: db.open_tree("enrollments")?,
            authenticators: db.open_tree("authenticators")?,
            authenticators_by_user: db.open_tree("authenticators_by_user")?,
            passkeys_by_credential: db.open_tree("passkeys_by_credential")?,
            webhook_endpoints: db.open_tree("webhook_endpoints")?,
            webhook_endpoints_by_user: db.open_tree("webhook_endpoints_by_user")?,
            notify_targets: db.open_tree("notify_targets")?,
            deliveries: db.open_tree("deliveries")?,
            deliveries_due: db.open_tree("deliveries_due")?,
            deliveries_by_request: db.open_tree("deliveries_by_request")?,
            consents: db.open_tree("consents")?,
            token_chores: db.open_tree("token_chores")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// The underlying database, for subsystems that keep their own trees (the audit log).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Makes every write so far durable (see [`flusher`] for why not sled's `flush_async`).
    pub async fn flush(&self) -> Result<()> {
        self.flusher.flush().await?;
        Ok(())
    }

    /// The encrypted data key, if one was made.
    pub fn data_key(&self) -> Result<Option<WrappedDataKey>> {
        self.meta
            .get(DATA_KEY)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                    kind: "data key",
                    key: DATA_KEY.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    /// Records a new encrypted data key; refuses to replace one.
    pub fn put_data_key(&self, key: &WrappedDataKey) -> Result<()> {
        let bytes = serde_json::to_vec(key).unwrap_or_default();
        self.meta
            .compare_and_swap(DATA_KEY, None as Option<&[u8]>, Some(bytes))?
            .map_err(|_| Error::Exists {
                kind: "data key",
                key: DATA_KEY.to_owned(),
            })?;
        self.db.flush()?;
        Ok(())
    }

    /// From now on, sealed records are sealed and opened with `sealer`.
    pub fn unseal_with(&self, sealer: Sealer) {
        let _ = self.sealer.set(sealer);
    }

    fn encode<R: Record>(&self, key: &str, record: &R) -> Result<Vec<u8>> {
        // Records are plain data (strings, numbers, maps with string keys): serialising cannot
        // fail.
        let value = serde_json::to_value(record).unwrap_or_default();
        let envelope = if R::SEALED {
            let sealer = self.sealer.get().ok_or(Error::NotUnsealed)?;
            let plain = serde_json::to_vec(&value).unwrap_or_default();
            let sealed = sealer.seal(R::KIND, key, R::VERSION, &plain)?;
            Envelope {
                v: R::VERSION,
                r: None,
                s: Some(BASE64.encode(sealed)),
            }
        } else {
            Envelope {
                v: R::VERSION,
                r: Some(value),
                s: None,
            }
        };
        Ok(serde_json::to_vec(&envelope).unwrap_or_default())
    }

    fn decode<R: Record>(&self, key: &[u8], bytes: &[u8]) -> Result<R> {
        let key = String::from_utf8_lossy(key).into_owned();
        let corrupt = |reason: String| Error::Corrupt {
            kind: R::KIND,
            key: key.clone(),
            reason,
        };
        let envelope: Envelope =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if envelope.v != R::VERSION {
            return Err(Error::Version {
                kind: R::KIND,
                key,
                found: envelope.v,
                supported: R::VERSION,
            });
        }
        let value = match (R::SEALED, envelope.r, envelope.s) {
            (false, Some(value), None) => value,
            (true, None, Some(sealed)) => {
                let sealer = self.sealer.get().ok_or(Error::NotUnsealed)?;
                let sealed = BASE64
                    .decode(sealed)
                    .map_err(|_| corrupt("sealed body is not base64".into()))?;
                let plain = sealer.open(R::KIND, &key, R::VERSION, &sealed)?;
                serde_json::from_slice(&plain).map_err(|e| corrupt(e.to_string()))?
            }
            _ => return Err(corrupt("neither a plain nor a sealed record".into())),
        };
        serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
    }

    fn get<R: Record>(&self, tree: &Tree, key: &str) -> Result<Option<R>> {
        tree.get(key)?
            .map(|bytes| self.decode(key.as_bytes(), &bytes))
            .transpose()
    }

    /// One page of [`Store::indexed`]: the records of index positions `from` to `from + limit`,
    /// and the position of the next page if there is one. Entries before `from` are skipped
    /// without reading their records.
    fn indexed_page<R: Record>(
        &self,
        index: &Tree,
        records: &Tree,
        owner: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<R>, Option<usize>)> {
        let mut prefix = owner.as_bytes().to_vec();
        prefix.push(0);
        page_of(index.scan_prefix(&prefix), from, limit, |_, id| {
            self.get(records, &String::from_utf8_lossy(&id))
        })
    }

    /// How many entries `owner` has in `index` (keys only: no record is read or unsealed).
    fn index_len(&self, index: &Tree, owner: &str) -> usize {
        let mut prefix = owner.as_bytes().to_vec();
        prefix.push(0);
        index.scan_prefix(&prefix).keys().count()
    }

    /// The records an index lists under `owner`, in creation order.
    fn indexed<R: Record>(&self, index: &Tree, records: &Tree, owner: &str) -> Result<Vec<R>> {
        let mut prefix = owner.as_bytes().to_vec();
        prefix.push(0);
        let mut found = Vec::new();
        for entry in index.scan_prefix(&prefix) {
            let (_, id) = entry?;
            if let Some(record) = self.get(records, &String::from_utf8_lossy(&id))? {
                found.push(record);
            }
        }
        Ok(found)
    }

    /// Changes the record at `key` with `change`, atomically: if another writer got there
    /// first, `change` runs again on what it wrote. `change` may refuse with its own error.
    /// Returns the record as written.
    fn modify<R, E>(
        &self,
        tree: &Tree,
        key: &str,
        mut change: impl FnMut(R) -> Result<R, E>,
    ) -> Result<R, E>
    where
        R: Record,
        E: From<Error>,
    {
        loop {
            let current = tree
                .get(key)
                .map_err(Error::from)?
                .ok_or_else(|| Error::Missing {
                    kind: R::KIND,
                    key: key.to_owned(),
                })?;
            let record: R = self.decode(key.as_bytes(), &current)?;
            let changed = change(record)?;
            let bytes = self.encode(key, &changed)?;
            match tree
                .compare_and_swap(key, Some(&current), Some(bytes))
                .map_err(Error::from)?
            {
                Ok(()) => return Ok(changed),
                Err(_) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests;

impl Store {
    /// Requests of either kind whose time is up by `now` (they may have been decided
    /// meanwhile), soonest first, at most `limit`, as `(expires_at, id)`.
    pub fn requests_expiring_by(&self, now: i64, limit: usize) -> Result<Vec<(i64, String)>> {
        let mut found = Vec::new();
        for entry in self
            .requests_expiring
            .range(..(now + 1).to_be_bytes().to_vec())
            .take(limit)
        {
            let (key, id) = entry?;
            let at = key
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_be_bytes)
                .unwrap_or(i64::MIN);
            found.push((at, String::from_utf8_lossy(&id).into_owned()));
        }
        Ok(found)
    }

    /// Takes a request off the expiry watch.
    pub fn forget_expiring(&self, expires_at: i64, id: &str) -> Result<()> {
        self.requests_expiring.remove(expiry_key(expires_at, id))?;
        Ok(())
    }
}
