//! The engines under the store: ordered maps of byte keys to byte values ("trees"), with
//! compare-and-swap, range scans, transactions across trees and a sequence. [`Sled`] keeps them
//! in an embedded database on one machine; [`Postgres`](super::postgres::Postgres) keeps them in
//! one table of a PostgreSQL database that several appliances share. Records reach an engine
//! already encoded (and sealed, for sealed kinds), so neither sees what a sealed record says.

use std::ops::Bound;

use sled::Transactional as _;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::flusher::Flusher;
use super::postgres::{self, Postgres};
use super::{Error, Result};

/// The trees the store keeps (see the table in [`crate::store`]). Their names are the sled
/// trees' names and the `tree` column's values in PostgreSQL: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeName {
    Users,
    SshKeys,
    SigningKeys,
    SigningKeysByOwner,
    SigningKeysByPublic,
    Authorizations,
    AuthorizationsByKey,
    AuthorizationsByGrantee,
    Pending,
    PendingByUser,
    Negotiations,
    Offers,
    ApiKeys,
    ApiKeysByHash,
    ApiKeysByOwner,
    Approvals,
    ApprovalsByUser,
    /// Open requests of either kind, by expiry.
    RequestsExpiring,
    Enrollments,
    Authenticators,
    AuthenticatorsByUser,
    PasskeysByCredential,
    WebhookEndpoints,
    WebhookEndpointsByUser,
    NotifyTargets,
    Deliveries,
    DeliveriesDue,
    DeliveriesByRequest,
    Consents,
    TokenChores,
    Meta,
    LoginSessions,
    LoginSessionsExpiring,
    Ceremonies,
    CeremoniesBySource,
    CeremoniesExpiring,
    Rates,
    Leases,
    /// Signing keys wrapped under the group's wrap key, for the other appliances' tokens.
    CarriedKeys,
}

impl TreeName {
    pub const ALL: [TreeName; 39] = [
        TreeName::Users,
        TreeName::SshKeys,
        TreeName::SigningKeys,
        TreeName::SigningKeysByOwner,
        TreeName::SigningKeysByPublic,
        TreeName::Authorizations,
        TreeName::AuthorizationsByKey,
        TreeName::AuthorizationsByGrantee,
        TreeName::Pending,
        TreeName::PendingByUser,
        TreeName::Negotiations,
        TreeName::Offers,
        TreeName::ApiKeys,
        TreeName::ApiKeysByHash,
        TreeName::ApiKeysByOwner,
        TreeName::Approvals,
        TreeName::ApprovalsByUser,
        TreeName::RequestsExpiring,
        TreeName::Enrollments,
        TreeName::Authenticators,
        TreeName::AuthenticatorsByUser,
        TreeName::PasskeysByCredential,
        TreeName::WebhookEndpoints,
        TreeName::WebhookEndpointsByUser,
        TreeName::NotifyTargets,
        TreeName::Deliveries,
        TreeName::DeliveriesDue,
        TreeName::DeliveriesByRequest,
        TreeName::Consents,
        TreeName::TokenChores,
        TreeName::Meta,
        TreeName::LoginSessions,
        TreeName::LoginSessionsExpiring,
        TreeName::Ceremonies,
        TreeName::CeremoniesBySource,
        TreeName::CeremoniesExpiring,
        TreeName::Rates,
        TreeName::Leases,
        TreeName::CarriedKeys,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TreeName::Users => "users",
            TreeName::SshKeys => "ssh_keys",
            TreeName::SigningKeys => "signing_keys",
            TreeName::SigningKeysByOwner => "signing_keys_by_owner",
            TreeName::SigningKeysByPublic => "signing_keys_by_public",
            TreeName::Authorizations => "authorizations",
            TreeName::AuthorizationsByKey => "authorizations_by_key",
            TreeName::AuthorizationsByGrantee => "authorizations_by_grantee",
            TreeName::Pending => "pending",
            TreeName::PendingByUser => "pending_by_user",
            TreeName::Negotiations => "negotiations",
            TreeName::Offers => "offers",
            TreeName::ApiKeys => "api_keys",
            TreeName::ApiKeysByHash => "api_keys_by_hash",
            TreeName::ApiKeysByOwner => "api_keys_by_owner",
            TreeName::Approvals => "approvals",
            TreeName::ApprovalsByUser => "approvals_by_user",
            // The name predates signature requests.
            TreeName::RequestsExpiring => "approvals_expiring",
            TreeName::Enrollments => "enrollments",
            TreeName::Authenticators => "authenticators",
            TreeName::AuthenticatorsByUser => "authenticators_by_user",
            TreeName::PasskeysByCredential => "passkeys_by_credential",
            TreeName::WebhookEndpoints => "webhook_endpoints",
            TreeName::WebhookEndpointsByUser => "webhook_endpoints_by_user",
            TreeName::NotifyTargets => "notify_targets",
            TreeName::Deliveries => "deliveries",
            TreeName::DeliveriesDue => "deliveries_due",
            TreeName::DeliveriesByRequest => "deliveries_by_request",
            TreeName::Consents => "consents",
            TreeName::TokenChores => "token_chores",
            TreeName::Meta => "meta",
            TreeName::LoginSessions => "login_sessions",
            TreeName::LoginSessionsExpiring => "login_sessions_expiring",
            TreeName::Ceremonies => "ceremonies",
            TreeName::CeremoniesBySource => "ceremonies_by_source",
            TreeName::CeremoniesExpiring => "ceremonies_expiring",
            TreeName::Rates => "rates",
            TreeName::Leases => "leases",
            TreeName::CarriedKeys => "carried_keys",
        }
    }
}

/// A range of keys: `from` to `to`, each end included, excluded or open.
#[derive(Debug, Clone)]
pub struct Span {
    pub from: Bound<Vec<u8>>,
    pub to: Bound<Vec<u8>>,
}

impl Span {
    pub fn all() -> Self {
        Span {
            from: Bound::Unbounded,
            to: Bound::Unbounded,
        }
    }

    /// The keys that start with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        // The first key after every key with the prefix: the prefix without its trailing 0xff
        // bytes, its last byte raised by one (none if the prefix is all 0xff).
        let mut end = prefix.to_vec();
        while end.last() == Some(&0xff) {
            end.pop();
        }
        let to = match end.last_mut() {
            Some(last) => {
                *last += 1;
                Bound::Excluded(end)
            }
            None => Bound::Unbounded,
        };
        Span {
            from: Bound::Included(prefix.to_vec()),
            to,
        }
    }

    /// The keys before `end`.
    pub fn below(end: Vec<u8>) -> Self {
        Span {
            from: Bound::Unbounded,
            to: Bound::Excluded(end),
        }
    }

    /// The rest of the span after `key`.
    fn after(&self, key: Vec<u8>) -> Self {
        Span {
            from: Bound::Excluded(key),
            to: self.to.clone(),
        }
    }
}

/// Entries as a scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// How many entries a full walk reads at a time.
const WALK_BATCH: usize = 256;

/// The store's engine.
#[derive(Debug, Clone)]
pub enum Engine {
    Sled(Sled),
    Postgres(Postgres),
}

/// sled: one tree per [`TreeName`], in [`TreeName::ALL`]'s order.
#[derive(Debug, Clone)]
pub struct Sled {
    db: sled::Db,
    flusher: Flusher,
    trees: Vec<sled::Tree>,
}

impl Sled {
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let db = sled::Config::new().path(path).open()?;
        let trees = TreeName::ALL
            .iter()
            .map(|name| db.open_tree(name.name()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sled {
            flusher: Flusher::start(db.clone()).map_err(sled::Error::Io)?,
            db,
            trees,
        })
    }

    fn tree(&self, name: TreeName) -> &sled::Tree {
        let at = TreeName::ALL.iter().position(|n| *n == name).unwrap_or(0);
        &self.trees[at]
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

impl Engine {
    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Engine::Sled(s) => Ok(s.tree(tree).get(key)?.map(|v| v.to_vec())),
            Engine::Postgres(p) => p.get(tree, key),
        }
    }

    pub fn insert(&self, tree: TreeName, key: &[u8], value: &[u8]) -> Result<()> {
        match self {
            Engine::Sled(s) => s
                .tree(tree)
                .insert(key, value)
                .map(drop)
                .map_err(Into::into),
            Engine::Postgres(p) => p.insert(tree, key, value),
        }
    }

    /// Removes `key`; says whether it was there.
    pub fn remove(&self, tree: TreeName, key: &[u8]) -> Result<bool> {
        match self {
            Engine::Sled(s) => Ok(s.tree(tree).remove(key)?.is_some()),
            Engine::Postgres(p) => p.remove(tree, key),
        }
    }

    /// Sets `key` to `new` (`None`: removes it) if it is `old` now (`None`: absent); says whether
    /// it did.
    pub fn compare_and_swap(
        &self,
        tree: TreeName,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        match self {
            Engine::Sled(s) => Ok(s.tree(tree).compare_and_swap(key, old, new)?.is_ok()),
            Engine::Postgres(p) => p.compare_and_swap(tree, key, old, new),
        }
    }

    /// The entries of `span` in key order, after passing over the first `skip`, at most `limit`.
    pub fn scan(&self, tree: TreeName, span: &Span, skip: usize, limit: usize) -> Result<Entries> {
        match self {
            Engine::Sled(s) => s
                .tree(tree)
                .range::<Vec<u8>, _>((span.from.clone(), span.to.clone()))
                .skip(skip)
                .take(limit)
                .map(|entry| {
                    let (k, v) = entry?;
                    Ok((k.to_vec(), v.to_vec()))
                })
                .collect(),
            Engine::Postgres(p) => p.scan(tree, span, skip, limit),
        }
    }

    /// Every entry of `span`, in key order, `visit`ed a batch at a time.
    pub fn walk(
        &self,
        tree: TreeName,
        span: &Span,
        mut visit: impl FnMut(Vec<u8>, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut span = span.clone();
        loop {
            let batch = self.scan(tree, &span, 0, WALK_BATCH)?;
            let full = batch.len() == WALK_BATCH;
            let mut last = None;
            for (key, value) in batch {
                last = Some(key.clone());
                visit(key, value)?;
            }
            match last {
                Some(key) if full => span = span.after(key),
                _ => return Ok(()),
            }
        }
    }

    /// How many keys `span` holds (keys only: no value is read).
    pub fn count(&self, tree: TreeName, span: &Span) -> Result<usize> {
        match self {
            Engine::Sled(s) => Ok(s
                .tree(tree)
                .range::<Vec<u8>, _>((span.from.clone(), span.to.clone()))
                .keys()
                .count()),
            Engine::Postgres(p) => p.count(tree, span),
        }
    }

    /// A number greater than every one this engine gave before (across appliances, for
    /// PostgreSQL): index entries sort in creation order by it.
    pub fn sequence(&self) -> Result<u64> {
        match self {
            Engine::Sled(s) => Ok(s.db.generate_id()?),
            Engine::Postgres(p) => p.sequence(),
        }
    }

    /// Makes every write so far durable. PostgreSQL's are, once committed.
    pub async fn flush(&self) -> Result<()> {
        match self {
            Engine::Sled(s) => Ok(s.flusher.flush().await?),
            Engine::Postgres(_) => Ok(()),
        }
    }

    /// [`Engine::flush`] on the calling thread, for start-up.
    pub fn flush_now(&self) -> Result<()> {
        match self {
            Engine::Sled(s) => s.db.flush().map(drop).map_err(Into::into),
            Engine::Postgres(_) => Ok(()),
        }
    }

    /// Runs `work` in one transaction over `trees` (the only trees it may touch), all of it or
    /// none. `work` runs again if another writer got in its way, so it must not act outside
    /// the transaction; it stops everything by returning [`TxError::Abort`].
    pub fn transaction<T>(
        &self,
        trees: &[TreeName],
        work: impl Fn(&Tx<'_>) -> Result<T, TxError>,
    ) -> Result<T> {
        match self {
            Engine::Sled(s) => {
                let handles: Vec<&sled::Tree> = trees.iter().map(|name| s.tree(*name)).collect();
                let outcome = handles.as_slice().transaction(|views| {
                    let tx = Tx::Sled {
                        names: trees,
                        views,
                    };
                    work(&tx).map_err(|e| match e {
                        TxError::Abort(e) => ConflictableTransactionError::Abort(e),
                        TxError::Sled(e) => e.into(),
                        TxError::Postgres(e) => {
                            ConflictableTransactionError::Abort(Error::Postgres(e))
                        }
                    })
                });
                outcome.map_err(|e| match e {
                    TransactionError::Abort(e) => e,
                    TransactionError::Storage(e) => Error::Sled(e),
                })
            }
            Engine::Postgres(p) => p.transaction(|tx| work(&Tx::Postgres(tx))),
        }
    }

    /// The sled database, if that is the engine (the audit log's trees from before the tiles).
    pub fn sled(&self) -> Option<&sled::Db> {
        match self {
            Engine::Sled(s) => Some(s.db()),
            Engine::Postgres(_) => None,
        }
    }
}

/// A transaction under way (see [`Engine::transaction`]).
pub enum Tx<'a> {
    Sled {
        names: &'a [TreeName],
        views: &'a [TransactionalTree],
    },
    Postgres(&'a postgres::Transaction<'a>),
}

/// Why a transaction's work stopped.
#[derive(Debug)]
pub enum TxError {
    /// The work refused: the transaction is rolled back and this is its outcome.
    Abort(Error),
    /// sled: another writer got in the way (the work runs again), or storage failed.
    Sled(UnabortableTransactionError),
    /// PostgreSQL: a serialization failure (the work runs again), or another failure.
    Postgres(postgres::DbError),
}

impl From<Error> for TxError {
    fn from(e: Error) -> Self {
        TxError::Abort(e)
    }
}

impl From<UnabortableTransactionError> for TxError {
    fn from(e: UnabortableTransactionError) -> Self {
        TxError::Sled(e)
    }
}

/// The view of `tree` in a sled transaction opened over `names`.
fn view<'v>(
    names: &[TreeName],
    views: &'v [TransactionalTree],
    tree: TreeName,
) -> Result<&'v TransactionalTree, TxError> {
    names
        .iter()
        .position(|n| *n == tree)
        .and_then(|at| views.get(at))
        .ok_or_else(|| {
            TxError::Abort(Error::Corrupt {
                kind: "transaction",
                key: tree.name().to_owned(),
                reason: "the transaction was not opened over this tree".to_owned(),
            })
        })
}

impl Tx<'_> {
    pub fn get(&self, tree: TreeName, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        match self {
            Tx::Sled { names, views } => {
                Ok(view(names, views, tree)?.get(key)?.map(|v| v.to_vec()))
            }
            Tx::Postgres(tx) => tx.get(tree, key).map_err(TxError::Postgres),
        }
    }

    pub fn insert(&self, tree: TreeName, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        match self {
            Tx::Sled { names, views } => {
                view(names, views, tree)?.insert(key, value)?;
                Ok(())
            }
            Tx::Postgres(tx) => tx.insert(tree, key, value).map_err(TxError::Postgres),
        }
    }

    pub fn remove(&self, tree: TreeName, key: &[u8]) -> Result<(), TxError> {
        match self {
            Tx::Sled { names, views } => {
                view(names, views, tree)?.remove(key)?;
                Ok(())
            }
            Tx::Postgres(tx) => tx.remove(tree, key).map_err(TxError::Postgres),
        }
    }
}
