//! Durable state: users and their SSH keys, signing keys, authorizations, co-signed requests,
//! negotiations, approvals, webhooks, and a little metadata. It lives in sled on one machine, or
//! in PostgreSQL when several appliances share it ([`engine`]); either way as the trees below,
//! ordered maps of byte keys to byte values (in PostgreSQL, ranges of one table).
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
//! | `login_sessions` | SHA-256 of the session cookie, hex | [`LoginSession`] |
//! | `login_sessions_expiring` | expiry (i64 BE) ‖ cookie SHA-256 | cookie SHA-256, until the session is removed |
//! | `ceremonies` | ceremony id | [`CeremonyRecord`], sealed |
//! | `ceremonies_by_source` | source `\0` expiry (i64 BE) ‖ ceremony id | ceremony id |
//! | `ceremonies_expiring` | expiry (i64 BE) ‖ ceremony id | ceremony id |
//! | `rates` | scope `\0` key (a user, an address) | when the key's next request is due under its rate limit: ms since the epoch, u64 BE |
//! | `leases` | a record id | which appliance holds the record's lock (16 bytes) and until when (ms since the epoch, u64 BE): only where several share the store |
//!
//! Each record kind is declared once in [`table`]: its tree, its key and the index entries it
//! makes; [`Store::create`], [`Store::read`], [`Store::change`] and [`Store::listed`] are the
//! operations on records the appliance uses, in place of engine calls. The kinds that write
//! several records at once (a user with its first SSH key, a signing key with its first
//! authorization, an offer with its negotiation) keep their own transactions ([`engine::Engine::transaction`]).
//!
//! Sequence numbers come from the engine's monotonic sequence (sled's id generator, or a
//! PostgreSQL sequence every appliance shares), so an index scan yields records in creation
//! order. Writes that touch several trees run in one transaction. sled keeps writes in memory
//! and flushes in the background; a caller whose reply depends on a write calls
//! [`Store::flush`] (an fsync, shared with concurrent callers) first. PostgreSQL's writes are
//! durable once committed.

mod approvals;
mod authenticators;
mod carried;
mod ceremonies;
mod consents;
pub mod engine;
pub mod flusher;
mod keys;
mod leases;
mod negotiation;
mod pending;
pub mod postgres;
mod rates;
pub mod records;
mod sessions;
pub mod table;
mod webhooks;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

pub use self::carried::CarriedKey;
use self::engine::{Engine, Span, TreeName};
pub use self::records::{
    ApiKeyRecord, ApiScope, ApprovalRecord, AuthenticatorKind, AuthenticatorRecord,
    AuthorizationRecord, CeremonyRecord, ConsentRecord, Delivery, DeliveryKind, DeliveryState,
    EnrollmentKind, EnrollmentRecord, KeyStatus, LinkTerms, LoginSession, NotifyTarget,
    PendingRequest, REQUEST_TOTP_BUDGET, Record, RequestStatus, SigningKeyRecord, SshKeyRecord,
    TOTP_FAILURE_BUDGET, TOTP_LIFETIME_FAILURES, TotpState, UserRecord, Vote, WebhookEndpoint,
};
use crate::seal::{Sealer, WrappedDataKey};

/// Store failures. Internal detail for the log; users see a generic message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    #[error("database: {}", with_causes(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("database: {0}")]
    Database(String),
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

/// An error and the errors under it, `: `-separated (PostgreSQL's connection errors keep the
/// reason, such as the certificate's, one level down).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
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
    engine: Engine,
    sealer: Arc<OnceLock<Sealer>>,
}

const DATA_KEY: &str = "seal/data-key";

impl Store {
    /// The store in a sled database at `path`, on this machine.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Store::on(Engine::Sled(engine::Sled::open(path)?)))
    }

    /// The store in a PostgreSQL database, shared with other appliances.
    pub fn open_postgres(settings: &postgres::Settings) -> Result<Self> {
        Ok(Store::on(Engine::Postgres(postgres::Postgres::open(
            settings,
        )?)))
    }

    fn on(engine: Engine) -> Self {
        Store {
            engine,
            sealer: Arc::new(OnceLock::new()),
        }
    }

    /// The engine under the store.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The sled database, when the store is in one (it may still hold the audit log of versions
    /// before the tiles).
    pub fn sled(&self) -> Option<&sled::Db> {
        self.engine.sled()
    }

    /// Makes every write so far durable (see [`flusher`] for how sled's are).
    pub async fn flush(&self) -> Result<()> {
        self.engine.flush().await
    }

    /// The encrypted data key, if one was made.
    pub fn data_key(&self) -> Result<Option<WrappedDataKey>> {
        self.engine
            .get(TreeName::Meta, DATA_KEY.as_bytes())?
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
        let made = self.engine.compare_and_swap(
            TreeName::Meta,
            DATA_KEY.as_bytes(),
            None,
            Some(&bytes),
        )?;
        if !made {
            return Err(Error::Exists {
                kind: "data key",
                key: DATA_KEY.to_owned(),
            });
        }
        self.engine.flush_now()
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

    fn get<R: Record>(&self, tree: TreeName, key: &str) -> Result<Option<R>> {
        self.engine
            .get(tree, key.as_bytes())?
            .map(|bytes| self.decode(key.as_bytes(), &bytes))
            .transpose()
    }

    /// One page of [`Store::indexed`]: the records of index positions `from` to `from + limit`,
    /// and the position of the next page if there is one. Entries before `from` are skipped
    /// without reading their records.
    fn indexed_page<R: Record>(
        &self,
        index: TreeName,
        records: TreeName,
        owner: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<R>, Option<usize>)> {
        let mut entries =
            self.engine
                .scan(index, &owner_span(owner), from, limit.saturating_add(1))?;
        let next = (entries.len() > limit).then_some(from + limit);
        entries.truncate(limit);
        let mut found = Vec::new();
        for (_, id) in entries {
            found.extend(self.get(records, &String::from_utf8_lossy(&id))?);
        }
        Ok((found, next))
    }

    /// How many entries `owner` has in `index` (keys only: no record is read or unsealed).
    fn index_len(&self, index: TreeName, owner: &str) -> Result<usize> {
        self.engine.count(index, &owner_span(owner))
    }

    /// The records an index lists under `owner`, in creation order.
    fn indexed<R: Record>(
        &self,
        index: TreeName,
        records: TreeName,
        owner: &str,
    ) -> Result<Vec<R>> {
        let mut ids = Vec::new();
        self.engine.walk(index, &owner_span(owner), |_, id| {
            ids.push(String::from_utf8_lossy(&id).into_owned());
            Ok(())
        })?;
        let mut found = Vec::new();
        for id in ids {
            found.extend(self.get(records, &id)?);
        }
        Ok(found)
    }

    /// Every record of a tree that holds only records of kind `R`, in key order.
    fn every<R: Record>(&self, tree: TreeName, span: &Span) -> Result<Vec<R>> {
        let mut found = Vec::new();
        self.engine.walk(tree, span, |key, value| {
            found.push(self.decode(&key, &value)?);
            Ok(())
        })?;
        Ok(found)
    }

    /// Changes the record at `key` with `change`, atomically: if another writer got there
    /// first, `change` runs again on what it wrote. `change` may refuse with its own error.
    /// Returns the record as written.
    fn modify<R, E>(
        &self,
        tree: TreeName,
        key: &str,
        mut change: impl FnMut(R) -> Result<R, E>,
    ) -> Result<R, E>
    where
        R: Record,
        E: From<Error>,
    {
        loop {
            let current = self
                .engine
                .get(tree, key.as_bytes())?
                .ok_or_else(|| Error::Missing {
                    kind: R::KIND,
                    key: key.to_owned(),
                })?;
            let record: R = self.decode(key.as_bytes(), &current)?;
            let changed = change(record)?;
            let bytes = self.encode(key, &changed)?;
            if self
                .engine
                .compare_and_swap(tree, key.as_bytes(), Some(&current), Some(&bytes))?
            {
                return Ok(changed);
            }
        }
    }
}

/// The keys an index lists under `owner`.
fn owner_span(owner: &str) -> Span {
    let mut prefix = owner.as_bytes().to_vec();
    prefix.push(0);
    Span::prefix(&prefix)
}

#[cfg(test)]
mod tests;

impl Store {
    /// Requests of either kind whose time is up by `now` (they may have been decided
    /// meanwhile), soonest first, at most `limit`, as `(expires_at, id)`.
    pub fn requests_expiring_by(&self, now: i64, limit: usize) -> Result<Vec<(i64, String)>> {
        let due = Span::below((now + 1).to_be_bytes().to_vec());
        let entries = self
            .engine
            .scan(TreeName::RequestsExpiring, &due, 0, limit)?;
        Ok(entries
            .into_iter()
            .map(|(key, id)| {
                let at = key
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(i64::from_be_bytes)
                    .unwrap_or(i64::MIN);
                (at, String::from_utf8_lossy(&id).into_owned())
            })
            .collect())
    }

    /// Takes a request off the expiry watch.
    pub fn forget_expiring(&self, expires_at: i64, id: &str) -> Result<()> {
        self.engine
            .remove(TreeName::RequestsExpiring, &expiry_key(expires_at, id))?;
        Ok(())
    }
}
