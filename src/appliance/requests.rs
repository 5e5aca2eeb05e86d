//! Requests for a human decision, of either kind (see [`crate::request`]): finding one,
//! bringing it up to date, the expiry sweep, deciding, and its page's address. What a verdict
//! does hangs off the request's kind: for a signature, [`cosign`](super::cosign) re-checks the
//! terms and has the token sign the digest (and seal a drawn signature's envelope); for an
//! approval, [`approvals`](super::approvals) counts the vote and has the token sign the
//! decision.
//!
//! Every change to a request happens under its lock ([`super::RecordLocks`]) with its audit
//! entry durable first, and is a compare-and-swap on its record, so it resolves exactly once.

use serde_json::Value;

use super::{Appliance, Caller, Error};
use crate::approval::decision::{Method, Verdict};
use crate::audit::AuditEntry;
use crate::audit::{Action, Outcome};
use crate::request::{self, Closed, RequestId, RequestKind, RequestStatus};
use crate::time;

mod human;

pub use self::human::Request;
pub(super) use self::human::{HumanRequest, view};

/// The longest reason a decider may give.
pub const MAX_REASON: usize = 500;

/// The error for deciding a request that is `closed`.
pub(super) fn closed_error(id: &str, kind: RequestKind, closed: Closed) -> Error {
    match closed {
        Closed::Expired => Error::RequestExpired(id.to_owned()),
        Closed::Resolved(status) => Error::AlreadyResolved {
            id: id.to_owned(),
            status: status.word(kind),
        },
    }
}

/// A decider's verdict and what comes with it.
#[derive(Debug)]
pub struct Ruling {
    pub verdict: Verdict,
    /// Why, for the requester (at most [`MAX_REASON`] bytes).
    pub reason: Option<String>,
    /// A drawn signature, PNG, for a signature request's evidence envelope (made on its page).
    pub drawn: Option<Vec<u8>>,
    /// Whether the decider was shown the electronic-signature disclosure
    /// ([`crate::approval::disclosure`]): `approve --confirm` over SSH; a request's page shows
    /// it above its buttons. Approving a legal agreement needs it.
    pub consented: bool,
}

/// How the one deciding proved who they are.
#[derive(Debug)]
pub enum Proof {
    /// An SSH session: the caller's key proved them when they connected.
    Ssh(Caller),
    /// On the request's page, from a browser at `client`, where `viewer` is logged in (if
    /// anyone is).
    Page {
        credential: Credential,
        viewer: Option<String>,
        client: String,
    },
}

/// What an approver shows on a request's page.
#[derive(Debug)]
pub enum Credential {
    /// An assertion made in ceremony `ceremony` for this request and this verdict.
    Passkey { ceremony: String, credential: Value },
    /// A code from `approver`'s authenticator app.
    Totp { approver: String, code: String },
}

impl Credential {
    pub fn method(&self) -> Method {
        match self {
            Credential::Passkey { .. } => Method::Passkey,
            Credential::Totp { .. } => Method::Totp,
        }
    }
}

impl Appliance {
    /// The stored request `id` names.
    pub(super) fn stored(&self, id: &RequestId) -> Result<HumanRequest, Error> {
        let found = match id.kind() {
            RequestKind::Signature => self
                .store
                .pending(id.as_str())?
                .map(HumanRequest::Signature),
            RequestKind::Approval => self
                .store
                .approval(id.as_str())?
                .map(HumanRequest::Approval),
        };
        found.ok_or_else(|| Error::UnknownRequest(id.to_string()))
    }

    /// Brings a request up to date: expired if its time passed while it was open, its decision
    /// signed if that was cut short.
    pub(super) async fn settle(&self, request: HumanRequest) -> Result<HumanRequest, Error> {
        let request =
            if request.status() == RequestStatus::Pending && request.expires_at() <= time::now() {
                let id = RequestId::parse(request.id())
                    .ok_or_else(|| Error::Internal(format!("stored request {}", request.id())))?;
                let _held = self.request_locks.hold(id.as_str()).await?;
                let current = self.stored(&id)?;
                self.expire_held(current).await?
            } else {
                request
            };
        match request {
            HumanRequest::Approval(r)
                if r.decision_payload.is_some() && r.decision_signature.is_none() =>
            {
                Ok(HumanRequest::Approval(self.sign_decision(r).await?))
            }
            other => Ok(other),
        }
    }

    /// Marks an open request whose time is up expired, its entry first, and announces it; the
    /// caller holds the request's lock, so nothing else changes it meanwhile.
    pub(super) async fn expire_held(&self, request: HumanRequest) -> Result<HumanRequest, Error> {
        let now = time::now();
        if request.status() != RequestStatus::Pending || request.expires_at() > now {
            return Ok(request);
        }
        let mut entry = AuditEntry {
            time: now,
            result: Outcome::Expired,
            actor_key: "appliance".into(),
            readers: request.parties(),
            ..AuditEntry::default()
        };
        entry.about_request(request.id());
        match &request {
            HumanRequest::Signature(r) => {
                entry.action = Action::CosignExpired;
                entry.actor = "appliance".into();
                entry.key_id = Some(r.key_id.clone());
            }
            HumanRequest::Approval(r) => {
                entry.action = Action::ApprovalExpired;
                entry.actor = r.owner.clone();
            }
        }
        self.record(entry).await?;
        let expire = |status: &mut RequestStatus, at: &mut Option<i64>| {
            if *status == RequestStatus::Pending {
                *status = RequestStatus::Expired;
                *at = Some(now);
            }
        };
        let expired = match request {
            HumanRequest::Signature(r) => {
                HumanRequest::Signature(self.store.update_pending(&r.pending_id, |mut r| {
                    expire(&mut r.status, &mut r.resolved_at);
                    Ok::<_, Error>(r)
                })?)
            }
            HumanRequest::Approval(r) => {
                HumanRequest::Approval(self.store.update_approval(&r.request_id, |mut r| {
                    expire(&mut r.status, &mut r.decided_at);
                    Ok::<_, Error>(r)
                })?)
            }
        };
        self.store.flush().await?;
        self.announce(&expired).await?;
        self.request_changed();
        Ok(expired)
    }

    /// Settles requests whose time is up, so their expiry is recorded and announced even if
    /// nobody looks at them; removes login sessions, passkey ceremonies and rate timestamps
    /// whose time is up; takes the quotas' counts from a shared store again.
    pub(super) async fn expire_due(&self) -> Result<(), Error> {
        for (at, id) in self.store.requests_expiring_by(time::now(), 256)? {
            if let Some(parsed) = RequestId::parse(&id) {
                match self.stored(&parsed) {
                    Ok(request) => {
                        self.settle(request).await?;
                    }
                    Err(Error::UnknownRequest(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            self.store.forget_expiring(at, &id)?;
        }
        self.store.remove_expired_login_sessions(time::now(), 256)?;
        self.store.remove_expired_ceremonies(time::now(), 256)?;
        self.quotas.tidy(time::now())?;
        Ok(())
    }

    /// One page of the requests of either kind `user` asked for or may decide (signature
    /// requests first, then approval requests, each oldest first), brought up to date; and
    /// where the next page starts.
    pub async fn requests_of(
        &self,
        user: &str,
        page: super::Page,
    ) -> Result<(Vec<Request>, Option<usize>), Error> {
        use crate::store::table::TreeName;
        let (signatures, approvals, next) = page.two_part(
            (
                self.store.listed_len(TreeName::PendingByUser, user)?,
                |from, limit| {
                    self.store
                        .listed_page(TreeName::PendingByUser, user, from, limit)
                },
            ),
            (
                self.store.listed_len(TreeName::ApprovalsByUser, user)?,
                |from, limit| {
                    self.store
                        .listed_page(TreeName::ApprovalsByUser, user, from, limit)
                },
            ),
        )?;
        let mut list = Vec::new();
        for r in signatures {
            list.push(self.settle(HumanRequest::Signature(r)).await?);
        }
        for r in approvals {
            list.push(self.settle(HumanRequest::Approval(r)).await?);
        }
        list.sort_by_key(HumanRequest::created_at);
        Ok((list.into_iter().map(Request::from).collect(), next))
    }

    /// Request `id` as `caller`, one of its parties, sees it: up to date and, for an approved
    /// signature, with its evidence sealed and its signature made (now, if an earlier attempt
    /// was cut short). Anyone else is told it does not exist.
    pub async fn request_for(&self, caller: &Caller, id: &str) -> Result<Request, Error> {
        let unknown = || Error::UnknownRequest(id.to_owned());
        let parsed = RequestId::parse(id).ok_or_else(unknown)?;
        let request = self.stored(&parsed)?;
        if !request.parties().iter().any(|p| p == caller.id()) {
            return Err(unknown());
        }
        match self.settle(request).await? {
            HumanRequest::Signature(r) => self
                .finish_signature(caller, r)
                .await
                .map(|r| HumanRequest::Signature(r).into()),
            other => Ok(other.into()),
        }
    }

    /// [`Appliance::request_for`], once the request is decided or expired, or after `wait` (at
    /// most [`MAX_WAIT`](super::MAX_WAIT)) if it is still pending then.
    pub async fn wait_for_request(
        &self,
        caller: &Caller,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<Request, Error> {
        self.read_until_decided(wait, || self.request_for(caller, id), Request::status)
            .await
    }

    /// Reads a request with `read` until it is no longer pending, or until `wait` (at most
    /// [`MAX_WAIT`](super::MAX_WAIT)) is up. Waits without polling the store: a decision made
    /// here wakes it; it also looks again every few seconds, for an expiry (noticed when read)
    /// and a decision made by another appliance sharing the store.
    pub(super) async fn read_until_decided<T, F>(
        &self,
        wait: std::time::Duration,
        read: impl Fn() -> F,
        status: impl Fn(&T) -> RequestStatus,
    ) -> Result<T, Error>
    where
        F: std::future::Future<Output = Result<T, Error>>,
    {
        const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + wait.min(super::MAX_WAIT);
        loop {
            // Subscribed before the read, so that a change right after it is not missed.
            let mut changed = self.requests_changed.subscribe();
            let read = read().await?;
            let now = tokio::time::Instant::now();
            if status(&read) != RequestStatus::Pending || now >= deadline {
                return Ok(read);
            }
            tokio::select! {
                _ = changed.changed() => {}
                () = tokio::time::sleep_until(deadline.min(now + LOOK_AGAIN)) => {}
            }
        }
    }

    /// Decides request `id`, whatever it asks for, as whoever `proof` proves. Over SSH the
    /// caller is who they connected as; on a page, the approver's own passkey assertion (made
    /// for this request and this verdict) or TOTP code names them, and they must be one the
    /// page lets decide.
    pub async fn decide(
        &self,
        id: &RequestId,
        ruling: Ruling,
        proof: Proof,
    ) -> Result<Request, Error> {
        if ruling.reason.as_ref().is_some_and(|r| r.len() > MAX_REASON) {
            return Err(Error::Invalid {
                field: "reason",
                reason: format!("is at most {MAX_REASON} bytes"),
            });
        }
        if ruling.drawn.is_some() && id.kind() == RequestKind::Approval {
            return Err(Error::InvalidArgument(
                "this request takes no drawn signature".into(),
            ));
        }
        // A drawing that is not a well-formed PNG is refused before a proof is spent; it is
        // decoded only after the proof, by the evidence envelope.
        if let Some(png) = &ruling.drawn {
            crate::approval::envelope::check_image_structure(png)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        }
        let (caller, method, page_proof) = match proof {
            Proof::Ssh(_) if ruling.drawn.is_some() => {
                return Err(Error::InvalidArgument(format!(
                    "a drawn signature is made on the request's page: {}",
                    self.page_url(id.as_str(), None)
                )));
            }
            Proof::Ssh(caller) => {
                caller.person("deciding a request")?;
                (caller, Method::Ssh, None)
            }
            Proof::Page {
                credential,
                viewer,
                client,
            } => {
                let method = credential.method();
                let page = self.page_to_decide(id, viewer.as_deref(), method).await?;
                if let HumanRequest::Signature(r) = &page.held
                    && ruling.verdict == Verdict::Approved
                    && r.require_signature
                    && ruling.drawn.is_none()
                {
                    return Err(Error::SignatureRequired {
                        url: self.page_url(id.as_str(), None),
                    });
                }
                let (caller, authenticator) = self
                    .prove(credential, id, ruling.verdict, &page, &client)
                    .await?;
                (caller, method, Some((authenticator, client)))
            }
        };
        let decided = match (id.kind(), ruling.verdict) {
            (RequestKind::Signature, Verdict::Approved) => {
                let capture = ruling.drawn.zip(page_proof).map(|(image_png, (aut, ip))| {
                    super::cosign::Capture {
                        image_png,
                        method,
                        authenticator: aut,
                        signer_ip: ip,
                    }
                });
                self.approve_signature(&caller, id.as_str(), capture, method, ruling.consented)
                    .await
                    .map(HumanRequest::Signature)
            }
            (RequestKind::Signature, Verdict::Rejected) => self
                .reject_signature(&caller, id.as_str(), ruling.reason, method)
                .await
                .map(HumanRequest::Signature),
            (RequestKind::Approval, verdict) => self
                .vote(&caller, id.as_str(), verdict, method, ruling.reason)
                .await
                .map(HumanRequest::Approval),
        };
        if decided.is_ok() {
            self.request_changed();
        }
        decided.map(Request::from)
    }

    /// Wakes whoever waits on a request (see [`Appliance::read_until_decided`]).
    pub(super) fn request_changed(&self) {
        self.requests_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The appliance's public base URL (`https://sign.example.com`).
    pub fn approval_base(&self) -> &str {
        &self.settings.approval_base
    }

    /// A request's page, optionally addressed to one of its deciders (who still proves
    /// themselves there: the address is a pointer, not a credential).
    pub fn page_url(&self, id: &str, addressed_to: Option<&str>) -> String {
        let base = &self.settings.approval_base;
        match addressed_to {
            Some(user) => format!("{base}/approve/{id}?as={user}"),
            None => format!("{base}/approve/{id}"),
        }
    }
}

/// Whether the request `request` stands open at `now`, as an error naming it if not.
pub(super) fn check_open(request: &HumanRequest, now: i64) -> Result<(), Error> {
    request::open(request.status(), request.expires_at(), now)
        .map_err(|closed| closed_error(request.id(), request.kind(), closed))
}
