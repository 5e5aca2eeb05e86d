//! Record kinds declared once: the tree a kind lives in, each record's key, and the index
//! entries it makes when it is created. On top of that, the operations the appliance uses:
//! [`Store::create`], [`Store::read`], [`Store::change`] (compare-and-swap) and
//! [`Store::listed`] (scan an index). They say what happens to records, not how sled does it,
//! so that both engines ([`super::engine`]) offer the same operations.

pub use super::engine::TreeName;
use super::engine::TxError;
use super::records::{
    ApiKeyRecord, ApprovalRecord, AuthenticatorKind, AuthenticatorRecord, AuthorizationRecord,
    CeremonyRecord, Delivery, EnrollmentRecord, LoginSession, PendingRequest, Record,
    WebhookEndpoint,
};
use super::{Error, Result, Store, expiry_key, index_key};

/// One entry a new record puts in an index.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Listed under `owner`, in creation order (`owner ‖ 0 ‖ sequence → key`).
    Under(TreeName, String),
    /// `key → record key`, refused if another record has it; `kind` names it in the error.
    Unique(TreeName, Vec<u8>, &'static str),
    /// `key → record key`, in the order of `key` (a schedule).
    At(TreeName, Vec<u8>),
}

impl Entry {
    fn tree(&self) -> TreeName {
        match self {
            Entry::Under(tree, _) | Entry::Unique(tree, _, _) | Entry::At(tree, _) => *tree,
        }
    }
}

/// A record kind and where it lives.
pub trait Table: Record {
    const TREE: TreeName;
    /// The record's key in its tree.
    fn key(&self) -> String;
    /// The index entries it makes when created.
    fn entries(&self) -> Vec<Entry> {
        Vec::new()
    }
}

impl Store {
    /// Records a new record and its index entries, in one transaction; refuses one whose key,
    /// or a unique index entry, is taken.
    pub fn create<R: Table>(&self, record: &R) -> Result<()> {
        let key = record.key();
        let bytes = self.encode(&key, record)?;
        let entries = record.entries();
        let sequence = self.engine.sequence()?;
        let mut trees = vec![R::TREE];
        for entry in &entries {
            if !trees.contains(&entry.tree()) {
                trees.push(entry.tree());
            }
        }
        let taken = |kind: &'static str, key: String| TxError::Abort(Error::Exists { kind, key });
        self.engine.transaction(&trees, |tx| {
            if tx.get(R::TREE, key.as_bytes())?.is_some() {
                return Err(taken(R::KIND, key.clone()));
            }
            for entry in &entries {
                match entry {
                    Entry::Under(index, owner) => {
                        tx.insert(*index, &index_key(owner, sequence), key.as_bytes())?;
                    }
                    Entry::Unique(index, unique, kind) => {
                        if tx.get(*index, unique)?.is_some() {
                            return Err(taken(kind, String::from_utf8_lossy(unique).into()));
                        }
                        tx.insert(*index, unique, key.as_bytes())?;
                    }
                    Entry::At(index, at) => tx.insert(*index, at, key.as_bytes())?,
                }
            }
            tx.insert(R::TREE, key.as_bytes(), &bytes)
        })
    }

    /// The record of kind `R` under `key`.
    pub fn read<R: Table>(&self, key: &str) -> Result<Option<R>> {
        self.get(R::TREE, key)
    }

    /// Changes the record of kind `R` under `key` by compare-and-swap (see [`Store::modify`]):
    /// `change` may run more than once, and sees the latest record each time.
    pub fn change<R: Table, E: From<Error>>(
        &self,
        key: &str,
        change: impl FnMut(R) -> Result<R, E>,
    ) -> Result<R, E> {
        self.modify(R::TREE, key, change)
    }

    /// The records of kind `R` that index `index` lists under `owner`, in creation order.
    pub fn listed<R: Table>(&self, index: TreeName, owner: &str) -> Result<Vec<R>> {
        self.indexed(index, R::TREE, owner)
    }

    /// One page of [`Store::listed`]: positions `from` to `from + limit`, and the next page's
    /// position if there is one.
    pub fn listed_page<R: Table>(
        &self,
        index: TreeName,
        owner: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<R>, Option<usize>)> {
        self.indexed_page(index, R::TREE, owner, from, limit)
    }

    /// How many records `owner` has listed in `index` (nothing is read or unsealed).
    pub fn listed_len(&self, index: TreeName, owner: &str) -> Result<usize> {
        self.index_len(index, owner)
    }
}

impl Table for PendingRequest {
    const TREE: TreeName = TreeName::Pending;
    fn key(&self) -> String {
        self.pending_id.clone()
    }
    /// Listed under its requester and its principal, and watched for its expiry.
    fn entries(&self) -> Vec<Entry> {
        let mut entries = vec![Entry::Under(
            TreeName::PendingByUser,
            self.requester.clone(),
        )];
        if self.principal != self.requester {
            entries.push(Entry::Under(
                TreeName::PendingByUser,
                self.principal.clone(),
            ));
        }
        entries.push(Entry::At(
            TreeName::RequestsExpiring,
            expiry_key(self.expires_at, &self.pending_id),
        ));
        entries
    }
}

impl Table for ApprovalRecord {
    const TREE: TreeName = TreeName::Approvals;
    fn key(&self) -> String {
        self.request_id.clone()
    }
    /// Listed under its owner and each approver (once each), and watched for its expiry.
    fn entries(&self) -> Vec<Entry> {
        let mut listed: Vec<&String> = self.approvers.iter().chain([&self.owner]).collect();
        listed.sort();
        listed.dedup();
        let mut entries: Vec<Entry> = listed
            .into_iter()
            .map(|user| Entry::Under(TreeName::ApprovalsByUser, user.clone()))
            .collect();
        entries.push(Entry::At(
            TreeName::RequestsExpiring,
            expiry_key(self.expires_at, &self.request_id),
        ));
        entries
    }
}

impl Table for ApiKeyRecord {
    const TREE: TreeName = TreeName::ApiKeys;
    fn key(&self) -> String {
        self.id.clone()
    }
    /// Findable by the SHA-256 of its secret, and listed under its owner.
    fn entries(&self) -> Vec<Entry> {
        vec![
            Entry::Unique(
                TreeName::ApiKeysByHash,
                self.key_sha256.as_bytes().to_vec(),
                ApiKeyRecord::KIND,
            ),
            Entry::Under(TreeName::ApiKeysByOwner, self.owner.clone()),
        ]
    }
}

impl Table for AuthorizationRecord {
    const TREE: TreeName = TreeName::Authorizations;
    fn key(&self) -> String {
        self.authorization_id.clone()
    }
    /// Listed under its key and its grantee.
    fn entries(&self) -> Vec<Entry> {
        vec![
            Entry::Under(TreeName::AuthorizationsByKey, self.key_id.clone()),
            Entry::Under(TreeName::AuthorizationsByGrantee, self.grantee.clone()),
        ]
    }
}

impl Table for EnrollmentRecord {
    const TREE: TreeName = TreeName::Enrollments;
    /// Kept under the SHA-256 of its link's token; the token is only in the link.
    fn key(&self) -> String {
        self.token_sha256.clone()
    }
}

impl Table for AuthenticatorRecord {
    const TREE: TreeName = TreeName::Authenticators;
    fn key(&self) -> String {
        self.id.clone()
    }
    /// Listed under its user; a passkey is also findable by its credential id, which must not
    /// be registered already.
    fn entries(&self) -> Vec<Entry> {
        let mut entries = vec![Entry::Under(
            TreeName::AuthenticatorsByUser,
            self.user_id.clone(),
        )];
        if let AuthenticatorKind::Passkey { credential_id, .. } = &self.kind {
            entries.push(Entry::Unique(
                TreeName::PasskeysByCredential,
                credential_id.as_bytes().to_vec(),
                "passkey credential",
            ));
        }
        entries
    }
}

impl Table for WebhookEndpoint {
    const TREE: TreeName = TreeName::WebhookEndpoints;
    fn key(&self) -> String {
        self.id.clone()
    }
    fn entries(&self) -> Vec<Entry> {
        vec![Entry::Under(
            TreeName::WebhookEndpointsByUser,
            self.user_id.clone(),
        )]
    }
}

impl Table for Delivery {
    const TREE: TreeName = TreeName::Deliveries;
    fn key(&self) -> String {
        self.id.clone()
    }
    /// Scheduled for its first attempt, and listed under its request.
    fn entries(&self) -> Vec<Entry> {
        vec![
            Entry::At(
                TreeName::DeliveriesDue,
                super::webhooks::due_key(self.next_attempt_at, &self.id),
            ),
            Entry::Under(TreeName::DeliveriesByRequest, self.request_id.clone()),
        ]
    }
}

impl Table for LoginSession {
    const TREE: TreeName = TreeName::LoginSessions;
    fn key(&self) -> String {
        self.cookie_sha256.clone()
    }
    /// Watched for its expiry, when it is removed.
    fn entries(&self) -> Vec<Entry> {
        vec![Entry::At(
            TreeName::LoginSessionsExpiring,
            expiry_key(self.expires_at, &self.cookie_sha256),
        )]
    }
}

impl Table for CeremonyRecord {
    const TREE: TreeName = TreeName::Ceremonies;
    fn key(&self) -> String {
        self.id.clone()
    }
    /// Listed under its source in the order of expiry, and watched for its expiry.
    fn entries(&self) -> Vec<Entry> {
        vec![
            Entry::At(
                TreeName::CeremoniesBySource,
                super::ceremonies::by_source_key(&self.source, self.expires_at, &self.id),
            ),
            Entry::At(
                TreeName::CeremoniesExpiring,
                expiry_key(self.expires_at, &self.id),
            ),
        ]
    }
}
