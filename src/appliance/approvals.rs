//! Human approval (the SignedApproval seed): requests made over REST with an API key
//! ([`api_keys`](super::api_keys)) or over SSH by a user's own key, decisions by approvers, and
//! decisions signed by the token's decision key.
//!
//! A request names its approvers (by default the API key's owner) and a threshold (m of n).
//! Each approver counts once; the request is approved when the threshold is met and rejected by
//! the first rejection. The decision's canonical payload is fixed in the same compare-and-swap
//! that resolves the request, its audit entry is made durable, then the token signs it; Ed25519
//! is deterministic, so a signature cut short by a crash is made again, identically, on read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::api_keys::ApiCaller;
use super::requests::{HumanRequest, closed_error};
use super::{Appliance, Caller, Error};
use crate::approval::decision::{
    self, Checked, DecisionError, DecisionPayload, Method, RequestDocument, SignedDecision,
    Verdict, full_hash, metadata_sha256, short_hash,
};
use crate::audit::AuditEntry;
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::provision::KeyRole;
use crate::request::{self, RequestKind, RequestStatus};
use crate::store::{ApprovalRecord, Vote};
use crate::time;
use crate::views::{
    ApprovalView, ApproverPage, CreatedApproval, DeliveryView, TrackedApproval, VerificationView,
};

/// Longest action text.
pub const MAX_ACTION: usize = 500;
/// Largest metadata document, as JSON.
pub const MAX_APPROVAL_METADATA: usize = 4096;
/// Shortest and longest time a request may wait.
pub const TTL_RANGE: std::ops::RangeInclusive<i64> = 60..=604_800;
pub const DEFAULT_TTL: i64 = 86_400;
/// The longest one read of a request waits for its decision (`GET …?wait=`); a caller that waits
/// longer asks again.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A decided request's signed decision, and what verifying it found.
#[derive(Debug)]
struct VerifiedDecision {
    pub signed: SignedDecision,
    /// The decision key named by `signed.key_id`, if the appliance has it.
    pub public_key: Option<[u8; 32]>,
    pub checked: Result<Checked, DecisionError>,
}

/// Who asks for a decision: a user, through one of their API keys (REST) or one of their SSH
/// keys (`request-approval`, the MCP server).
#[derive(Debug, Clone, Copy)]
pub enum Requester<'a> {
    ApiKey(&'a ApiCaller),
    Ssh(&'a Caller),
}

impl Requester<'_> {
    /// The user the request belongs to.
    pub fn owner(&self) -> &str {
        match self {
            Requester::ApiKey(key) => key.owner(),
            Requester::Ssh(caller) => caller.id(),
        }
    }

    /// The credential that asked, as the request document binds it (its `api_key` member): the
    /// API key's id, or the SSH key's fingerprint (`SHA256:…`).
    fn credential(&self) -> &str {
        match self {
            Requester::ApiKey(key) => key.id(),
            Requester::Ssh(caller) => &caller.fingerprint,
        }
    }

    /// Its audit entry's `actor_key`.
    fn actor_key(&self) -> String {
        match self {
            Requester::ApiKey(key) => format!("api-key:{}", key.id()),
            Requester::Ssh(caller) => caller.fingerprint.clone(),
        }
    }
}

/// A request as the REST API receives it.
#[derive(Debug, Clone, Default)]
pub struct ApprovalInput {
    pub action: String,
    pub ttl_seconds: Option<i64>,
    pub metadata: Map<String, Value>,
    pub callback_url: Option<String>,
    /// `usr_` ids or SSH key fingerprints; default: the API key's owner.
    pub approvers: Option<Vec<String>>,
    pub threshold: Option<u32>,
    pub methods: Option<Vec<Method>>,
}

impl Appliance {
    /// Records a request for a human decision; returns it, where to poll it, and each
    /// approver's page, in the order of `approvers` (the first is the seed's `approval_url`).
    /// A page's address is a pointer: nothing in it stands for the approver.
    pub async fn request_approval(
        &self,
        requester: Requester<'_>,
        input: ApprovalInput,
    ) -> Result<CreatedApproval, Error> {
        let owner = requester.owner();
        let invalid = |m: String| Error::InvalidArgument(m);
        // Counted as sent (as the schema's maxLength counts), then trimmed.
        let action = input.action.trim();
        if action.is_empty() || input.action.chars().count() > MAX_ACTION {
            return Err(invalid(format!("action is 1 to {MAX_ACTION} characters")));
        }
        let ttl = input.ttl_seconds.unwrap_or(DEFAULT_TTL);
        if !TTL_RANGE.contains(&ttl) {
            return Err(invalid(format!(
                "ttl_seconds is {} to {}",
                TTL_RANGE.start(),
                TTL_RANGE.end()
            )));
        }
        if serde_json::to_vec(&input.metadata).map_or(0, |v| v.len()) > MAX_APPROVAL_METADATA {
            return Err(Error::Unprocessable {
                field: "metadata",
                reason: format!("is at most {MAX_APPROVAL_METADATA} bytes"),
            });
        }
        if let Some(url) = &input.callback_url {
            // A URL the delivery could not use (a port past 65535, say) is refused like one that
            // leads inside: no pattern states every such rule.
            self.check_destination("callback_url", url)
                .await
                .map_err(|e| match e {
                    Error::Invalid { field, reason } => Error::Unprocessable { field, reason },
                    other => other,
                })?;
        }
        self.quotas
            .charge(owner, super::quota::Rated::ApprovalRequests)?;
        let named = input.approvers.unwrap_or_else(|| vec![owner.to_owned()]);
        if let Some(bad) = named.iter().find(|n| !is_user_name(n)) {
            return Err(invalid(format!(
                "approvers names {bad:?}, which is neither a user id (usr_…) nor an SSH key \
                 fingerprint (SHA256:…)"
            )));
        }
        let mut approvers = Vec::new();
        for name in named {
            let user = self.user_named(&name)?;
            self.check_consent(&user, owner)?;
            if !approvers.contains(&user) {
                approvers.push(user);
            }
        }
        if approvers.is_empty() || approvers.len() > 20 {
            return Err(invalid("approvers lists 1 to 20 users".into()));
        }
        let threshold = input.threshold.unwrap_or(1);
        if threshold == 0 || threshold as usize > approvers.len() {
            return Err(Error::Unprocessable {
                field: "threshold",
                reason: format!("is 1 to {} here (the number of approvers)", approvers.len()),
            });
        }
        let mut methods = input
            .methods
            .unwrap_or_else(|| vec![Method::Passkey, Method::Totp]);
        methods.dedup();
        if methods.is_empty() {
            return Err(invalid("methods names at least one method".into()));
        }
        let now = time::now();
        let record = ApprovalRecord {
            request_id: self.new_id(IdKind::Approval).await?,
            api_key: requester.credential().to_owned(),
            owner: owner.to_owned(),
            action: action.to_owned(),
            metadata: input.metadata,
            callback_url: input.callback_url,
            approvers,
            threshold,
            methods,
            retired_links: (),
            totp_failures: 0,
            created_at: now,
            expires_at: now + ttl,
            status: RequestStatus::Pending,
            votes: Vec::new(),
            decision_payload: None,
            decision_signature: None,
            decision_key_id: None,
            decided_at: None,
        };
        let mut entry = approval_entry(
            &record,
            owner,
            &requester.actor_key(),
            Action::ApprovalRequest,
            Outcome::Pending,
        );
        if let Requester::ApiKey(key) = requester {
            entry.api_key_id = Some(key.id().to_owned());
        }
        entry.metadata_sha256 = Some(super::metadata_hash(&record.metadata));
        self.record(entry).await?;
        self.store.create(&record)?;
        self.store.flush().await?;
        let pages: Vec<ApproverPage> = record
            .approvers
            .iter()
            .map(|approver| ApproverPage {
                approver: approver.clone(),
                url: self.page_url(&record.request_id, Some(approver)),
            })
            .collect();
        self.notify_deciders(&HumanRequest::Approval(record.clone()))
            .await?;
        Ok(CreatedApproval {
            request: ApprovalView::from(&record),
            status_url: format!(
                "{}/api/v1/approvals/{}",
                self.settings.approval_base, record.request_id
            ),
            approval_url: pages.first().map(|page| page.url.clone()),
            approval_urls: pages,
        })
    }

    /// [`Appliance::approval_for_key`], once the request is decided or expired, or after `wait`
    /// (at most [`MAX_WAIT`]) if it is still pending then (see [`Appliance::read_until_decided`]).
    pub async fn wait_for_approval(
        &self,
        key: &ApiCaller,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<TrackedApproval, Error> {
        self.read_until_decided(
            wait,
            || self.approval_for_key(key, id),
            |tracked| tracked.request.status,
        )
        .await
    }

    /// A request made through `key`'s owner, marked expired if its time has passed, with its
    /// decision's webhook deliveries.
    pub async fn approval_for_key(
        &self,
        key: &ApiCaller,
        id: &str,
    ) -> Result<TrackedApproval, Error> {
        let request = match self.store.approval(id)? {
            Some(r) if r.owner == key.owner() => self.settle_approval(r).await?,
            _ => return Err(Error::UnknownRequest(id.to_owned())),
        };
        let webhooks = self.decision_deliveries(&request.request_id)?;
        Ok(TrackedApproval {
            request: ApprovalView::from(&request),
            webhooks: webhooks.iter().map(DeliveryView::from).collect(),
        })
    }

    /// Brings an approval request up to date (see [`Appliance::settle`]).
    pub(super) async fn settle_approval(
        &self,
        request: ApprovalRecord,
    ) -> Result<ApprovalRecord, Error> {
        self.settle(HumanRequest::Approval(request))
            .await?
            .into_approval()
    }

    /// An approver's vote, however they proved themselves. Under the request's lock: the vote
    /// is checked and its outcome worked out, its audit entry made durable, and only then is it
    /// stored; a failed entry leaves the request as it was.
    pub(super) async fn vote(
        &self,
        approver: &Caller,
        id: &str,
        verdict: Verdict,
        method: Method,
        reason: Option<String>,
    ) -> Result<ApprovalRecord, Error> {
        // Someone else's or an unknown request costs no token call (the lock re-reads it).
        let unknown = || Error::UnknownRequest(id.to_owned());
        match self.store.approval(id)? {
            Some(r) if r.approvers.iter().any(|a| a == approver.id()) => {}
            _ => return Err(unknown()),
        }
        // The nonce and the decision id from one token call, outside the lock.
        let random: [u8; 32] = self.token.random().await?;
        let (nonce, did_bits) = random.split_at(16);
        let ballot = Ballot {
            approver: approver.id(),
            verdict,
            method,
            reason: reason.as_deref(),
            did: IdKind::Decision.make(did_bits.try_into().expect("16 bytes")),
            nonce: crate::hex::encode(nonce),
            at: time::now(),
        };
        let held = self.request_locks.hold(id).await?;
        let request = self.store.approval(id)?.ok_or_else(unknown)?;
        let request = self
            .expire_held(HumanRequest::Approval(request))
            .await?
            .into_approval()?;
        if !request.methods.contains(&method) {
            return Err(Error::MethodNotAllowed {
                method: method.as_str(),
                url: self.page_url(id, None),
            });
        }
        let outcome = ballot.cast(request)?;
        let result = if outcome.decision_payload.is_some() {
            Outcome::from_status(outcome.status.word(RequestKind::Approval))
        } else {
            Outcome::Voted
        };
        let mut entry = approval_entry(
            &outcome,
            approver.id(),
            &approver.fingerprint,
            Action::ApprovalVote,
            result,
        );
        entry.reason = Some(format!("{}:{}", verdict_name(verdict), method.as_str()));
        self.record(entry).await?;
        let decided = self.store.update_approval(id, |r| ballot.cast(r))?;
        self.store.flush().await?;
        drop(held);
        self.settle_approval(decided).await
    }

    /// Signs a resolved request's fixed payload with the token's decision key: the audit
    /// entry first, then the token.
    pub(super) async fn sign_decision(
        &self,
        request: ApprovalRecord,
    ) -> Result<ApprovalRecord, Error> {
        let payload = request
            .decision_payload
            .as_deref()
            .and_then(|p| BASE64.decode(p).ok())
            .ok_or_else(|| {
                Error::Internal(format!("request {} has no payload", request.request_id))
            })?;
        let entry = approval_entry(
            &request,
            &request.owner,
            "appliance",
            Action::ApprovalDecisionSigned,
            Outcome::from_status(request.status.word(RequestKind::Approval)),
        );
        self.record(entry).await?;
        let (signature, kid) = self.sign_with_decision_key(payload).await?;
        let first = std::cell::Cell::new(false);
        let signed = self.store.update_approval(&request.request_id, |mut r| {
            first.set(r.decision_signature.is_none());
            r.decision_signature
                .get_or_insert_with(|| signature.clone());
            r.decision_key_id.get_or_insert_with(|| kid.clone());
            Ok::<_, Error>(r)
        })?;
        self.store.flush().await?;
        if first.get() {
            self.announce_decision(&signed).await?;
        }
        Ok(signed)
    }

    /// Checks request `id`'s decision against the appliance's own decision keys (never a key
    /// the request carries). `valid` says the signature checks out (the seed's meaning);
    /// `approved` says that it does and that what it signs is an approval of this request,
    /// made before it expired, so a client reading one field cannot take a rejection for an
    /// approval.
    pub async fn verify_approval(&self, id: &str) -> Result<VerificationView, Error> {
        let (request, decision) = self.decision_of(id).await?;
        let mut reply = VerificationView {
            id: request.request_id.clone(),
            valid: false,
            approved: false,
            status: request.status,
            decision: None,
            method: None,
            payload: None,
            signed_payload: None,
            signature: None,
            key_id: None,
            public_key: None,
            jwks_url: None,
            reason: None,
        };
        let Some(VerifiedDecision {
            signed,
            public_key,
            checked,
        }) = decision
        else {
            let status = request.status.word(RequestKind::Approval);
            reply.reason = Some(format!("the request is {status} and has no decision"));
            return Ok(reply);
        };
        let payload = BASE64
            .decode(&signed.signed_payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok());
        reply.approved = checked.as_ref().is_ok_and(|c| {
            c.payload.decision == Verdict::Approved
                && c.payload.rid == request.request_id
                && c.payload.ts <= c.payload.exp
        });
        reply.valid = checked.is_ok();
        reply.decision = member(&payload, "decision");
        reply.method = member(&payload, "method");
        reply.public_key = public_key.map(|k| decision::jwk(&signed.key_id, &k));
        reply.payload = payload;
        reply.signed_payload = Some(signed.signed_payload);
        reply.signature = Some(signed.signature);
        reply.key_id = Some(signed.key_id);
        reply.jwks_url = Some(format!(
            "{}/.well-known/jwks.json",
            self.settings.approval_base
        ));
        if let Err(error) = checked {
            reply.reason = Some(error.to_string());
        }
        Ok(reply)
    }

    /// A request, and its decision with what checking it against the appliance's own decision
    /// keys found (none while it is pending, or if it expired).
    async fn decision_of(
        &self,
        id: &str,
    ) -> Result<(ApprovalRecord, Option<VerifiedDecision>), Error> {
        let request = match self.store.approval(id)? {
            Some(request) if IdKind::Approval.matches(id) => self.settle_approval(request).await?,
            _ => return Err(Error::UnknownRequest(id.to_owned())),
        };
        let (Some(payload), Some(signature), Some(key_id)) = (
            request.decision_payload.clone(),
            request.decision_signature.clone(),
            request.decision_key_id.clone(),
        ) else {
            return Ok((request, None));
        };
        let signed = SignedDecision {
            signed_payload: payload,
            signature,
            key_id,
        };
        let keys = self.decision_keys();
        let checked = crate::approval::decision::verify(&signed, &keys);
        if let Err(error) = &checked {
            tracing::error!(%error, request = id, "a stored decision does not verify");
        }
        let public_key = keys
            .into_iter()
            .find(|(kid, _)| *kid == signed.key_id)
            .map(|(_, key)| key);
        let verified = VerifiedDecision {
            signed,
            public_key,
            checked,
        };
        Ok((request, Some(verified)))
    }

    /// The decision keys, as `(kid, public key)`: every generation, retired ones included, so
    /// that decisions made before a rotation still verify.
    pub fn decision_keys(&self) -> Vec<(String, [u8; 32])> {
        self.appliance_keys
            .iter()
            .filter(|k| k.role == KeyRole::Decision)
            .map(|k| (k.fingerprint.clone(), k.key.public_key))
            .collect()
    }

    /// [`Appliance::decision_keys`] as a JWK set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> crate::views::Jwks {
        let keys = self
            .decision_keys()
            .iter()
            .map(|(kid, key)| decision::jwk(kid, key))
            .collect();
        crate::views::Jwks { keys }
    }
}

/// One approver's vote, ready to be cast on a request.
struct Ballot<'a> {
    approver: &'a str,
    verdict: Verdict,
    method: Method,
    reason: Option<&'a str>,
    /// The decision's id and nonce, should this vote resolve the request.
    did: String,
    nonce: String,
    at: i64,
}

impl Ballot<'_> {
    /// The request with this vote cast: resolved, with its decision payload fixed, when the
    /// vote meets the threshold or rejects. The same request gives the same result, so it is
    /// worked out once for the audit entry and again as the store's change.
    fn cast(&self, mut r: ApprovalRecord) -> Result<ApprovalRecord, Error> {
        let id = r.request_id.clone();
        request::open(r.status, r.expires_at, self.at)
            .map_err(|closed| closed_error(&id, RequestKind::Approval, closed))?;
        if r.votes.iter().any(|v| v.approver == self.approver) {
            return Err(Error::AlreadyVoted(id));
        }
        let approvals = r
            .votes
            .iter()
            .filter(|v| v.verdict == Verdict::Approved)
            .count();
        r.votes.push(Vote {
            approver: self.approver.to_owned(),
            verdict: self.verdict,
            method: self.method,
            at: self.at,
            reason: self.reason.map(str::to_owned),
        });
        let outcome = match request::tally(approvals, r.threshold, self.verdict) {
            RequestStatus::Pending => None,
            status => Some(status),
        };
        if let Some(status) = outcome {
            let payload = DecisionPayload {
                v: decision::VERSION,
                rid: r.request_id.clone(),
                did: self.did.clone(),
                approver: short_hash(self.approver),
                action: short_hash(&r.action),
                decision: self.verdict,
                method: self.method,
                ts: self.at,
                exp: r.expires_at,
                nonce: self.nonce.clone(),
                request_sha256: Some(crate::hex::encode(&Sha256::digest(request_document(&r)))),
                action_sha256: Some(full_hash(&r.action)),
                metadata_sha256: Some(metadata_sha256(&r.metadata)),
                approver_sha256: Some(full_hash(self.approver)),
            };
            r.status = status;
            r.decided_at = Some(self.at);
            r.decision_payload = Some(BASE64.encode(payload.canonical()));
        }
        Ok(r)
    }
}

/// Member `name` of a decoded payload, if it has one of the expected type.
fn member<T: serde::de::DeserializeOwned>(payload: &Option<Value>, name: &str) -> Option<T> {
    payload
        .as_ref()
        .and_then(|p| serde_json::from_value(p[name].clone()).ok())
}

/// The canonical JSON of a request as its approvers see it, which decisions bind.
pub fn request_document(r: &ApprovalRecord) -> Vec<u8> {
    decision::request_document(&RequestDocument {
        id: &r.request_id,
        action: &r.action,
        metadata: &r.metadata,
        requester: &r.owner,
        api_key: &r.api_key,
        approvers: &r.approvers,
        threshold: r.threshold,
        methods: &r.methods,
        created_at: r.created_at,
        expires_at: r.expires_at,
    })
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approved => "approved",
        Verdict::Rejected => "rejected",
    }
}

fn approval_entry(
    request: &ApprovalRecord,
    actor: &str,
    actor_key: &str,
    action: Action,
    result: Outcome,
) -> AuditEntry {
    let mut readers = request.approvers.clone();
    readers.push(request.owner.clone());
    readers.push(actor.to_owned());
    AuditEntry {
        time: time::now(),
        action,
        result,
        actor: actor.to_owned(),
        actor_key: actor_key.to_owned(),
        readers,
        request_id: Some(request.request_id.clone()),
        ..AuditEntry::default()
    }
}

/// A user id (`usr_` and 26 base32 characters) or an SSH key fingerprint (`SHA256:` and 43
/// unpadded base64 characters), as the API's schema states them.
fn is_user_name(name: &str) -> bool {
    IdKind::User.matches(name)
        || name.strip_prefix("SHA256:").is_some_and(|b64| {
            b64.len() == 43
                && b64
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        })
}
