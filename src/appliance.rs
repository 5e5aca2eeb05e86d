//! What the appliance does, independent of how a request arrived: identify callers; create keys
//! and grant, list and revoke authorizations; sign (or queue for a co-signer); approve and deny;
//! log negotiation offers; serve audit proofs.
//!
//! Order of work wherever a signature is made: decide, append the audit entry (durable), check
//! the key and authorization once more, then ask the token. A signature never leaves without its
//! entry on disk, and a revocation recorded before that last check stops it.
//!
//! - [`keys`](self::keys): keys and authorizations;
//! - [`signing`](self::signing): sign and verify;
//! - [`requests`](self::requests): requests for a human decision, of either kind: lookup,
//!   expiry, one `decide`, page addresses;
//! - [`cosign`](self::cosign): what a verdict does to a signature request (re-check, sign,
//!   seal the evidence);
//! - [`api_keys`](self::api_keys): API keys for the REST API;
//! - [`approvals`](self::approvals): approval requests, votes, signed decisions;
//! - [`negotiate`](self::negotiate): negotiation offers and history;
//! - [`authn`](self::authn): approvers' passkeys and TOTP secrets, and their ceremonies;
//! - [`consent`](self::consent): whom each user accepts requests and grants from;
//! - [`browser`](self::browser): what a browser may see of a request and decide;
//! - [`webhooks`](self::webhooks): decisions and notifications out, signed and retried;
//! - [`audit_view`](self::audit_view): checkpoints, proofs and entries, as each caller may see
//!   them.

mod api_keys;
mod approvals;
mod audit_view;
mod authn;
mod browser;
mod consent;
mod cosign;
mod error;
mod keys;
mod links;
mod locks;
mod negotiate;
pub mod quota;
mod requests;
mod signing;
mod webhooks;

use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

pub use self::api_keys::{API_KEY_PREFIX, ApiCaller};
pub use self::approvals::{
    ApprovalInput, DEFAULT_TTL, MAX_ACTION, MAX_APPROVAL_METADATA, MAX_WAIT, Requester,
};
pub use self::authn::{Authenticated, ENROLLMENT_TTL};
pub use self::browser::{AgreedTerms, RequestPage, SigningTerms};
pub use self::error::Error;
pub use self::keys::{Grant, Role};
pub use self::links::{LINK_TTL, MAX_KEY_LABEL, MAX_SSH_KEYS, already_identifies};
use self::locks::RecordLocks;
pub use self::requests::{Credential, MAX_REASON, Proof, Request, Ruling};
pub use self::signing::{SignInput, SignOutcome, Verified};
use crate::audit::{Action, AuditEntry, AuditLog, Outcome};
use crate::hsm::Token;
use crate::ids::IdKind;
use crate::policy::Evaluation;
use crate::provision::{ApplianceKey, KeyRole};
/// Words the fronts use, defined with the records that keep them.
pub use crate::store::{ApiScope, DeliveryState, KeyStatus, REQUEST_TOTP_BUDGET, TotpState};
use crate::store::{SigningKeyRecord, SshKeyRecord, Store, UserRecord};
use crate::time;

/// The largest payload `sign` and `verify` accept.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The largest `--metadata` document.
pub const MAX_METADATA: usize = 64 * 1024;

/// The most one page of a listing holds.
pub const MAX_PAGE: usize = 1000;

/// A page of a listing: positions `from` to `from + limit` (a reply's `next` is the position
/// of the page after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub from: usize,
    pub limit: usize,
}

impl Page {
    /// A page of at most [`MAX_PAGE`].
    pub fn new(from: usize, limit: usize) -> Result<Self, Error> {
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::Invalid {
                field: "limit",
                reason: format!("is 1 to {MAX_PAGE}"),
            });
        }
        Ok(Page { from, limit })
    }

    /// The first page, as large as pages go.
    pub fn first() -> Self {
        Page {
            from: 0,
            limit: MAX_PAGE,
        }
    }

    /// Pages over two listings one after the other, the first `first_len` positions long and
    /// the second `second_len`; each reads only its own part of the page.
    fn two_part<A, B>(
        self,
        (first_len, first): (usize, impl FnOnce(usize, usize) -> Listing<A>),
        (second_len, second): (usize, impl FnOnce(usize, usize) -> Listing<B>),
    ) -> TwoPart<A, B> {
        let mut a = Vec::new();
        if self.from < first_len {
            let (items, next) = first(self.from, self.limit)?;
            if next.is_some() {
                return Ok((items, Vec::new(), next));
            }
            a = items;
        }
        let room = self.limit - first_len.saturating_sub(self.from).min(self.limit);
        let from = self.from.saturating_sub(first_len);
        if room == 0 {
            return Ok((a, Vec::new(), (from < second_len).then_some(first_len)));
        }
        let (b, next) = second(from, room)?;
        Ok((a, b, next.map(|n| first_len + n)))
    }
}

/// One page read from the store, and where the next starts.
type Listing<T> = Result<(Vec<T>, Option<usize>), crate::store::Error>;

/// A page over two listings: the first's part, the second's, and where the next page starts.
type TwoPart<A, B> = Result<(Vec<A>, Vec<B>, Option<usize>), Error>;

/// A user connected with a given SSH key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub(crate) user: UserRecord,
    pub fingerprint: String,
    /// Whether the key is an agent's (see [`links`]).
    pub agent: bool,
}

impl Caller {
    pub fn id(&self) -> &str {
        &self.user.user_id
    }

    /// When this user first connected (Unix seconds).
    pub fn registered_at(&self) -> i64 {
        self.user.created_at
    }
}

/// Settings the appliance's behaviour depends on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where approval links point: `https://sign.example.com` or `http://127.0.0.1:8443`.
    pub approval_base: String,
    /// How long a co-signed request waits by default.
    pub pending_ttl: i64,
    /// Where webhooks may go.
    pub webhook_policy: crate::webhook::ssrf::Policy,
    /// The wait before a failed webhook's first retry (it doubles after each).
    pub webhook_retry: std::time::Duration,
    /// Quotas per identity and in all.
    pub quotas: quota::QuotaSettings,
    /// How many objects the token holds, when it has a fixed number.
    pub token_objects: Option<TokenObjects>,
    /// With several appliances on one store: how keys made here reach the others' tokens.
    pub carry: Option<Carry>,
}

/// How signing keys travel between the tokens of appliances that share a store: wrapped under
/// the group's wrap key (the one of `provision wrap-key` and backups), kept in the store, and
/// brought into another appliance's token, protected as `export` says, the first time it signs
/// with one.
#[derive(Debug, Clone)]
pub struct Carry {
    pub wrap_key: crate::hsm::ObjectId,
    pub export: crate::hsm::KeyExport,
}

/// A token's fixed room for objects (a YubiHSM 2 holds 256), and how many of them one signing
/// key takes (a PKCS#11 key pair is two objects in most tokens, one on a YubiHSM 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenObjects {
    pub capacity: usize,
    pub per_key: usize,
}

impl TokenObjects {
    /// Signing keys the appliance may create: the capacity, less room for its own keys (its
    /// `own_keys` Ed25519 keys and its seal key) twice over, to rotate each one, and one object
    /// for the token's login (a YubiHSM 2 authentication key).
    pub fn key_limit(self, own_keys: usize) -> usize {
        let per_key = self.per_key.max(1);
        let reserved = 2 * (own_keys * per_key + 1) + 1;
        self.capacity.saturating_sub(reserved) / per_key
    }
}

/// The WebAuthn relying party for the appliance's public URL: its host is the RP id, the URL
/// the only origin.
fn webauthn(base: &str) -> Result<webauthn_rs::Webauthn, Error> {
    let origin = url::Url::parse(base)
        .map_err(|e| Error::InvalidArgument(format!("public URL {base:?}: {e}")))?;
    let host = origin
        .host_str()
        .ok_or_else(|| Error::InvalidArgument(format!("public URL {base:?} has no host")))?
        .to_owned();
    webauthn_rs::WebauthnBuilder::new(&host, &origin)
        .and_then(|b| b.rp_name("sshsign").build())
        .map_err(|e| Error::InvalidArgument(format!("WebAuthn for {base:?}: {e}")))
}

/// The running appliance's state, shared by every connection.
#[derive(Debug)]
pub struct Appliance {
    token: Token,
    store: Store,
    appliance_keys: Vec<ApplianceKey>,
    audit: Arc<AuditLog>,
    settings: Settings,
    authn: authn::Authn,
    /// Woken when a webhook delivery is stored.
    deliveries_due: tokio::sync::Notify,
    /// Counts the requests decided or expired here, so that a caller waiting on one (`?wait=`)
    /// wakes when it changes.
    requests_changed: tokio::sync::watch::Sender<u64>,
    /// Serialises the changes to one request, so each change's audit entry, written before the
    /// change, says what the change will be.
    request_locks: RecordLocks,
    quotas: quota::Quotas,
    /// One key brought in from the store at a time.
    carry_lock: tokio::sync::Mutex<()>,
}

impl Appliance {
    pub fn new(
        token: Token,
        store: Store,
        appliance_keys: Vec<ApplianceKey>,
        audit: Arc<AuditLog>,
        settings: Settings,
    ) -> Result<Arc<Self>, Error> {
        let webauthn = webauthn(&settings.approval_base)?;
        let key_limit = settings
            .token_objects
            .map(|t| t.key_limit(appliance_keys.len()));
        let quotas = quota::Quotas::new(
            settings.quotas.clone(),
            store.clone(),
            store.count_users()?,
            store.count_live_signing_keys()?,
            key_limit,
        );
        let request_locks = RecordLocks::new(&store);
        Ok(Arc::new(Appliance {
            token,
            store,
            appliance_keys,
            audit,
            settings,
            authn: authn::Authn::new(webauthn),
            deliveries_due: tokio::sync::Notify::new(),
            requests_changed: tokio::sync::watch::Sender::new(0),
            request_locks,
            quotas,
            carry_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// The store, for tests and benchmarks that check what was written. The fronts never
    /// reach it: they ask the appliance's methods.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The audit log, for tests and benchmarks (see [`Appliance::store`]).
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The appliance's own keys (public halves and token handles).
    pub fn appliance_keys(&self) -> &[ApplianceKey] {
        &self.appliance_keys
    }

    /// Whether the token can prove that it generated keys (no device call).
    pub fn attestation_support(&self) -> crate::attestation::Support {
        crate::attestation::Support::of(self.token.blocking())
    }

    /// The key that verifies the audit log's checkpoints, as a note verifier key.
    pub fn audit_verifier_key(&self) -> String {
        self.audit.verifier_key()
    }

    /// This appliance's cosigner key, where several share the audit log.
    pub fn audit_cosigner_key(&self) -> Option<String> {
        self.audit.cosigner_key()
    }

    /// The notes handing the audit log from each checkpoint key to the next.
    pub fn audit_handovers(&self) -> Vec<String> {
        self.audit.handovers().to_vec()
    }

    /// Whether each token answers (one live call each: a random draw), with what the primary
    /// is and how busy the tokens have been.
    pub async fn token_health(
        &self,
    ) -> Result<
        (
            crate::hsm::TokenDescription,
            Vec<crate::hsm::TokenHealth>,
            crate::hsm::TokenUsage,
        ),
        Error,
    > {
        let tokens = self.token.call(|hsm| Ok(hsm.health())).await?;
        Ok((self.token.blocking().describe(), tokens, self.token.usage()))
    }

    /// The audit log's size, where its full check stands, and its tile cache's use and budget
    /// (bytes).
    pub fn audit_health(&self) -> crate::views::AuditHealthView {
        let (cache_bytes, cache_budget) = self.audit.store().cache_use();
        crate::views::AuditHealthView {
            entries: self.audit.head().size,
            check: self.audit.integrity(),
            cache_bytes,
            cache_budget,
        }
    }

    /// A fresh 256-bit secret from the token's RNG, base64url: a login session's cookie.
    pub async fn session_secret(&self) -> Result<secrecy::SecretString, Error> {
        let random: [u8; 32] = self.token.random().await?;
        Ok(secrecy::SecretString::from(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random),
        ))
    }

    /// Live signing keys, and the most the token may hold (None: the token sets no limit).
    pub fn key_usage(&self) -> (usize, Option<usize>) {
        self.quotas.key_usage()
    }

    /// The user an SSH key belongs to, if it belongs to anyone.
    pub fn known(&self, key: &ssh_key::PublicKey) -> Result<Option<Caller>, Error> {
        let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        let Some(known) = self.store.ssh_key(&fingerprint)? else {
            return Ok(None);
        };
        let user = self.store.user(&known.user_id)?.ok_or_else(|| {
            Error::Internal(format!("SSH key {fingerprint} names a missing user"))
        })?;
        Ok(Some(Caller {
            user,
            fingerprint,
            agent: known.agent,
        }))
    }

    /// Whether the appliance has room for another identity (checked when an unknown key
    /// authenticates; [`Appliance::identify`] counts it when it registers).
    pub fn admits_new_identity(&self) -> Result<(), Error> {
        self.quotas.admits_user()
    }

    /// The user an SSH key belongs to, registering a new user (connected from `from`) the
    /// first time a key connects.
    pub async fn identify(
        &self,
        key: &ssh_key::PublicKey,
        from: std::net::IpAddr,
    ) -> Result<Caller, Error> {
        if let Some(caller) = self.known(key)? {
            return Ok(caller);
        }
        let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
        self.quotas.register(from)?;
        let now = time::now();
        let user = UserRecord {
            user_id: self.new_id(IdKind::User).await?,
            created_at: now,
            ssh_keys: vec![fingerprint.clone()],
        };
        let ssh_key = SshKeyRecord {
            fingerprint: fingerprint.clone(),
            user_id: user.user_id.clone(),
            public_key: key
                .to_openssh()
                .map_err(|e| Error::Internal(e.to_string()))?,
            registered_at: now,
            agent: false,
            label: None,
        };
        let new_id = user.user_id.clone();
        let user = self.store.register(user, ssh_key)?;
        if user.user_id != new_id {
            // Another first command of this key registered it first (two channels at once).
            self.quotas.unregister();
            return self.known(key)?.ok_or_else(|| {
                Error::Internal(format!("SSH key {fingerprint} vanished as it registered"))
            });
        }
        self.store.flush().await?;
        tracing::info!(user = %user.user_id, %fingerprint, "user registered");
        Ok(Caller {
            user,
            fingerprint,
            agent: false,
        })
    }

    /// Has the token sign `message` with the decision key (whose audit entry the caller has
    /// made durable); returns the signature, base64, and the key's id.
    async fn sign_with_decision_key(&self, message: Vec<u8>) -> Result<(String, String), Error> {
        let key = crate::provision::active(&self.appliance_keys, KeyRole::Decision)
            .ok_or_else(|| Error::Internal("no decision key".into()))?;
        let object_id = key.key.object_id.clone();
        let signature = self
            .token
            .call(move |hsm| hsm.sign(&object_id, &message))
            .await?;
        let signature = base64::engine::general_purpose::STANDARD.encode(signature);
        Ok((signature, key.fingerprint.clone()))
    }

    /// A fresh identifier from the token's RNG.
    async fn new_id(&self, kind: IdKind) -> Result<String, Error> {
        Ok(kind.make(self.token.random().await?))
    }

    /// An audit entry for something `caller` did.
    fn entry(&self, caller: &Caller, action: Action, result: Outcome) -> AuditEntry {
        AuditEntry {
            time: time::now(),
            action,
            result,
            actor: caller.id().to_owned(),
            actor_key: caller.fingerprint.clone(),
            readers: vec![caller.id().to_owned()],
            ..AuditEntry::default()
        }
    }

    /// Appends an entry; returns once it is durable.
    async fn record(&self, mut entry: AuditEntry) -> Result<u64, Error> {
        entry.readers.sort();
        entry.readers.dedup();
        self.audit
            .append(&entry)
            .await
            .map_err(Error::AuditUnavailable)
    }
}

/// The checks made, as the audit entry lists them: `az_…:check=pass|fail`, without details.
fn rules_summary(evaluated: &[Evaluation]) -> Vec<String> {
    evaluated
        .iter()
        .flat_map(|e| {
            e.checks.iter().map(move |c| {
                let outcome = if c.passed { "pass" } else { "fail" };
                format!("{}:{}={outcome}", e.authorization_id, c.check)
            })
        })
        .collect()
}

/// SHA-256 of a JSON object as canonical JSON (sorted keys, numbers as written), hex.
fn metadata_hash(metadata: &Map<String, Value>) -> String {
    let bytes = serde_json::to_vec(metadata).unwrap_or_default();
    crate::hex::encode(&Sha256::digest(bytes))
}

fn corrupt(key: &SigningKeyRecord) -> Error {
    Error::Internal(format!("signing key record {} is corrupt", key.key_id))
}
