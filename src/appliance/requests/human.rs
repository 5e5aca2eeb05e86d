//! A request for a human decision, of either kind, and what the rest of the appliance asks of
//! it whatever its kind: id, status, deciders, parties, methods.

use crate::appliance::Error;
use crate::approval::decision::Method;
use crate::request::{RequestKind, RequestStatus};
use crate::store::{ApprovalRecord, PendingRequest};
use crate::views::{ApprovalView, PagedApproval, RequestView, SignatureRequestView};

/// How a signature request's principal may prove themselves: their SSH key, or on its page.
const SIGNATURE_METHODS: &[Method] = &[Method::Ssh, Method::Passkey, Method::Totp];

/// A request for a human decision, as stored. It stays inside the appliance; the fronts get
/// a [`Request`].
#[derive(Debug, Clone)]
pub(in crate::appliance) enum HumanRequest {
    /// A co-signed `sign`, waiting for its principal.
    Signature(PendingRequest),
    /// An action an API key asked its approvers about.
    Approval(ApprovalRecord),
}

impl HumanRequest {
    pub fn id(&self) -> &str {
        match self {
            HumanRequest::Signature(r) => &r.pending_id,
            HumanRequest::Approval(r) => &r.request_id,
        }
    }

    pub fn kind(&self) -> RequestKind {
        match self {
            HumanRequest::Signature(_) => RequestKind::Signature,
            HumanRequest::Approval(_) => RequestKind::Approval,
        }
    }

    pub fn status(&self) -> RequestStatus {
        match self {
            HumanRequest::Signature(r) => r.status,
            HumanRequest::Approval(r) => r.status,
        }
    }

    /// Its status in the words of its kind's seed (`denied` or `rejected`).
    pub fn status_word(&self) -> &'static str {
        self.status().word(self.kind())
    }

    pub fn created_at(&self) -> i64 {
        match self {
            HumanRequest::Signature(r) => r.created_at,
            HumanRequest::Approval(r) => r.created_at,
        }
    }

    pub fn expires_at(&self) -> i64 {
        match self {
            HumanRequest::Signature(r) => r.expires_at,
            HumanRequest::Approval(r) => r.expires_at,
        }
    }

    /// How its deciders may prove themselves.
    pub fn methods(&self) -> &[Method] {
        match self {
            HumanRequest::Signature(_) => SIGNATURE_METHODS,
            HumanRequest::Approval(r) => &r.methods,
        }
    }

    /// Wrong TOTP codes entered on its page.
    pub fn totp_failures(&self) -> u32 {
        match self {
            HumanRequest::Signature(r) => r.totp_failures,
            HumanRequest::Approval(r) => r.totp_failures,
        }
    }

    /// Who may still decide it: while it is open, its principal (unless they asked for it
    /// themselves with a person's key) or the approvers who have not voted.
    pub fn waiting_for(&self) -> Vec<String> {
        if self.status() != RequestStatus::Pending {
            return Vec::new();
        }
        match self {
            HumanRequest::Signature(r) if r.principal != r.requester || r.requested_by_agent => {
                vec![r.principal.clone()]
            }
            HumanRequest::Signature(_) => Vec::new(),
            HumanRequest::Approval(r) => r
                .approvers
                .iter()
                .filter(|a| r.awaits(a))
                .cloned()
                .collect(),
        }
    }

    /// Whether it waits for `user`'s decision.
    pub fn awaits(&self, user: &str) -> bool {
        self.waiting_for().iter().any(|w| w == user)
    }

    /// Everyone who may read it and its audit entries: who asked, and who decides.
    pub fn parties(&self) -> Vec<String> {
        let mut parties = match self {
            HumanRequest::Signature(r) => vec![r.requester.clone(), r.principal.clone()],
            HumanRequest::Approval(r) => {
                let mut all = r.approvers.clone();
                all.push(r.owner.clone());
                all
            }
        };
        parties.sort();
        parties.dedup();
        parties
    }

    /// What it asks for, in a line.
    pub fn summary(&self) -> String {
        match self {
            HumanRequest::Signature(r) => format!("Co-signature in namespace {}", r.namespace),
            HumanRequest::Approval(r) => r.action.clone(),
        }
    }

    /// The approval request this is, for code that only handles that kind.
    pub(in crate::appliance) fn into_approval(self) -> Result<ApprovalRecord, Error> {
        match self {
            HumanRequest::Approval(r) => Ok(r),
            other => Err(Error::Internal(format!(
                "{} is not an approval",
                other.id()
            ))),
        }
    }

    /// The signature request this is, for code that only handles that kind.
    pub(in crate::appliance) fn into_signature(self) -> Result<PendingRequest, Error> {
        match self {
            HumanRequest::Signature(r) => Ok(r),
            other => Err(Error::Internal(format!(
                "{} is not a signature",
                other.id()
            ))),
        }
    }
}

/// A request for a human decision, as the appliance hands it to a front: what the front may
/// ask of it, and its view. The record it holds stays inside the appliance.
#[derive(Debug, Clone)]
pub struct Request(HumanRequest);

impl From<HumanRequest> for Request {
    fn from(held: HumanRequest) -> Self {
        Request(held)
    }
}

impl Request {
    pub fn id(&self) -> &str {
        self.0.id()
    }

    pub fn kind(&self) -> RequestKind {
        self.0.kind()
    }

    pub fn status(&self) -> RequestStatus {
        self.0.status()
    }

    /// Its status in the words of its kind's seed (`denied` or `rejected`).
    pub fn status_word(&self) -> &'static str {
        self.0.status_word()
    }

    pub fn expires_at(&self) -> i64 {
        self.0.expires_at()
    }

    /// Whether it waits for `user`'s decision.
    pub fn awaits(&self, user: &str) -> bool {
        self.0.awaits(user)
    }

    /// What it asks for, in a line.
    pub fn summary(&self) -> String {
        self.0.summary()
    }

    /// How it is shown, with its page at `page`.
    pub fn view(&self, page: String) -> RequestView {
        view(&self.0, page)
    }
}

/// How `request`, whose page is at `page`, is shown.
pub(in crate::appliance) fn view(request: &HumanRequest, page: String) -> RequestView {
    match request {
        HumanRequest::Signature(r) => RequestView::Signature(SignatureRequestView::new(r, page)),
        HumanRequest::Approval(r) => RequestView::Approval(PagedApproval {
            request: ApprovalView::from(r),
            approval_url: page,
        }),
    }
}
