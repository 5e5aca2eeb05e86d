//! How requests for a human decision are shown: approval requests (over REST, SSH and in
//! webhooks) and co-signed requests (over SSH).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::approval::decision::{DecisionPayload, Jwk, Method, Verdict};
use crate::request::{RequestKind, RequestStatus};
use crate::store::{ApprovalRecord, Delivery, DeliveryState, PendingRequest};
use crate::time;

/// An approval request: what it asks, who decides, their votes and, once signed, its decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Approval)]
pub struct ApprovalView {
    /// `apr_…`
    pub id: String,
    pub status: RequestStatus,
    pub action: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub callback_url: Option<String>,
    pub approvers: Vec<String>,
    pub threshold: u32,
    pub methods: Vec<Method>,
    pub votes: Vec<VoteView>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
    /// Wrong TOTP codes entered on the request's page; after 3 it takes only passkeys.
    pub totp_failures: u32,
    pub decision: Option<DecisionView>,
}

/// One approver's vote.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Vote)]
pub struct VoteView {
    pub approver: String,
    pub decision: Verdict,
    pub method: Method,
    #[schema(format = DateTime)]
    pub at: String,
    pub reason: Option<String>,
}

/// A decision the token signed.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Decision)]
pub struct DecisionView {
    /// `dec_…`
    pub id: String,
    pub decision: Verdict,
    pub method: Method,
    /// Canonical JSON (RFC 8785) of {v, rid, did, approver, action, decision, method, ts, exp,
    /// nonce} (the seed's version 1 fields) and, in version 2, request_sha256, action_sha256,
    /// metadata_sha256 and approver_sha256 (full SHA-256 bindings), base64.
    #[schema(content_encoding = "base64")]
    pub signed_payload: String,
    /// Ed25519 over the payload's bytes, base64.
    #[schema(content_encoding = "base64")]
    pub signature: String,
    /// The `kid` of the decision key in the JWKS.
    pub key_id: Option<String>,
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
}

impl From<&ApprovalRecord> for ApprovalView {
    fn from(r: &ApprovalRecord) -> Self {
        let decision = match (&r.decision_payload, &r.decision_signature) {
            (Some(payload), Some(signature)) => BASE64
                .decode(payload)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<DecisionPayload>(&bytes).ok())
                .map(|p| DecisionView {
                    id: p.did,
                    decision: p.decision,
                    method: p.method,
                    signed_payload: payload.clone(),
                    signature: signature.clone(),
                    key_id: r.decision_key_id.clone(),
                    decided_at: r.decided_at.map(time::rfc3339),
                }),
            _ => None,
        };
        ApprovalView {
            id: r.request_id.clone(),
            status: r.status,
            action: r.action.clone(),
            metadata: r.metadata.clone(),
            callback_url: r.callback_url.clone(),
            approvers: r.approvers.clone(),
            threshold: r.threshold,
            methods: r.methods.clone(),
            votes: r
                .votes
                .iter()
                .map(|v| VoteView {
                    approver: v.approver.clone(),
                    decision: v.verdict,
                    method: v.method,
                    at: time::rfc3339(v.at),
                    reason: v.reason.clone(),
                })
                .collect(),
            created_at: time::rfc3339(r.created_at),
            expires_at: time::rfc3339(r.expires_at),
            decided_at: r.decided_at.map(time::rfc3339),
            totp_failures: r.totp_failures,
            decision,
        }
    }
}

/// An approval request with the address of its page (over SSH, to an approver or its owner).
#[derive(Debug, Clone, Serialize)]
pub struct PagedApproval {
    #[serde(flatten)]
    pub request: ApprovalView,
    /// The request's page; addressed to the reader where they decide it.
    pub approval_url: String,
}

/// An approver's page, as a new request's reply lists them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApproverPage {
    pub approver: String,
    #[schema(format = Uri)]
    pub url: String,
}

/// The reply to a new approval request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedApproval {
    #[serde(flatten)]
    pub request: ApprovalView,
    /// The first approver's page. An address, not a credential: the approver proves
    /// themselves there.
    #[schema(format = Uri)]
    pub approval_url: Option<String>,
    /// Where the request's status and decision are read (with the API key).
    #[schema(format = Uri)]
    pub status_url: String,
    /// Every approver's page.
    pub approval_urls: Vec<ApproverPage>,
}

/// A webhook delivery of a request's decision.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryView {
    /// `msg_…`, the `webhook-id`.
    pub id: String,
    pub url: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The last attempt's HTTP status, or why there was none.
    pub last_result: Option<String>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id.clone(),
            url: d.url.clone(),
            state: d.state,
            attempts: d.attempts,
            last_result: d.last_result.clone(),
        }
    }
}

/// An approval request as its owner reads it, with its decision's webhook deliveries.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TrackedApproval {
    #[serde(flatten)]
    pub request: ApprovalView,
    pub webhooks: Vec<DeliveryView>,
}

/// What checking a request's decision found.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Verification)]
pub struct VerificationView {
    pub id: String,
    /// The signature checks out under the appliance's decision key (a rejection can be valid).
    pub valid: bool,
    /// Valid, and an approval of this request made before it expired.
    pub approved: bool,
    pub status: RequestStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The signed payload, decoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(content_encoding = "base64")]
    pub signed_payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(content_encoding = "base64")]
    pub signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The decision key, if the appliance has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Jwk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = Uri)]
    pub jwks_url: Option<String>,
    /// Why it is not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A co-signed request as its requester and its principal see it (the sshsign seed's words:
/// `pending_id`, `denied`).
#[derive(Debug, Clone, Serialize)]
pub struct SignatureRequestView {
    pub pending_id: String,
    pub status: &'static str,
    pub key_id: String,
    pub authorization_id: String,
    pub requester: String,
    pub principal: String,
    pub namespace: String,
    pub payload_sha512: String,
    pub metadata: Map<String, Value>,
    pub context: Map<String, Value>,
    pub require_signature: bool,
    pub warnings: Vec<String>,
    /// Made with an agent's key (see the README: several SSH keys).
    pub requested_by_agent: bool,
    /// Where the principal decides it.
    pub approval_url: String,
    pub created_at: String,
    pub expires_at: String,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<String>,
    pub reason: Option<String>,
    /// The armored SSHSIG, once made.
    pub signature: Option<String>,
    pub evidence: Option<EvidenceView>,
}

/// An evidence envelope and the token's seal over it.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceView {
    /// The envelope's exact bytes, base64.
    pub envelope: String,
    /// `sha256:…` of those bytes.
    pub sha256: String,
    pub seal: Option<String>,
    pub key_id: Option<String>,
}

impl SignatureRequestView {
    /// `r`, whose page is at `page`.
    pub fn new(r: &PendingRequest, page: String) -> Self {
        SignatureRequestView {
            pending_id: r.pending_id.clone(),
            status: r.status.word(RequestKind::Signature),
            key_id: r.key_id.clone(),
            authorization_id: r.authorization_id.clone(),
            requester: r.requester.clone(),
            principal: r.principal.clone(),
            namespace: r.namespace.clone(),
            payload_sha512: r.payload_sha512.clone(),
            metadata: r.metadata.clone(),
            context: r.context.clone(),
            require_signature: r.require_signature,
            warnings: r.warnings.clone(),
            requested_by_agent: r.requested_by_agent,
            approval_url: page,
            created_at: time::rfc3339(r.created_at),
            expires_at: time::rfc3339(r.expires_at),
            resolved_by: r.resolved_by.clone(),
            resolved_at: r.resolved_at.map(time::rfc3339),
            reason: r.reason.clone(),
            signature: r.signature.clone(),
            evidence: r.evidence.as_ref().map(|envelope| EvidenceView {
                sha256: BASE64
                    .decode(envelope)
                    .map(|bytes| crate::approval::envelope::sha256_tag(&bytes))
                    .unwrap_or_default(),
                envelope: envelope.clone(),
                seal: r.evidence_seal.clone(),
                key_id: r.evidence_key_id.clone(),
            }),
        }
    }
}

/// A request for a human decision, of either kind, as one reader sees it: the fields of its
/// kind's seed, and its page.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum RequestView {
    Signature(SignatureRequestView),
    Approval(PagedApproval),
}

impl RequestView {
    pub fn id(&self) -> &str {
        match self {
            RequestView::Signature(r) => &r.pending_id,
            RequestView::Approval(r) => &r.request.id,
        }
    }

    /// Its status in the words of its kind's seed.
    pub fn status_word(&self) -> &'static str {
        match self {
            RequestView::Signature(r) => r.status,
            RequestView::Approval(r) => r.request.status.word(RequestKind::Approval),
        }
    }
}

/// `pending`: what the caller must decide and what they wait on.
#[derive(Debug, Clone, Serialize)]
pub struct PendingList {
    /// Signature requests waiting for the caller, their principal.
    pub to_decide: Vec<SignatureRequestView>,
    /// Signature requests the caller made.
    pub requested: Vec<SignatureRequestView>,
    /// Approval requests waiting for the caller's vote, with the page addressed to them.
    pub approvals: Vec<PagedApproval>,
    /// `--from` for the next page; null on the last.
    pub next: Option<usize>,
}

/// `approve` of a legal agreement without `--confirm`: what approving means, and the terms.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentDisclosure {
    pub consent_required: bool,
    pub pending_id: String,
    /// The request's type (its namespace).
    pub doc_type: String,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub disclosure: String,
    /// The disclosure's version, named in the approval's audit entry.
    pub version: &'static str,
}
