//! What webhooks carry: a request's decision or expiry (to its callback and its owner's
//! endpoints), and a new request (to a decider's notification URL). Every body says where it
//! was sent and whose endpoint that is, so a receiver can refuse one meant for another URL.

use serde::Serialize;
use utoipa::ToSchema;

use super::ApprovalView;

/// Where a delivery was sent.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Destination)]
pub struct DestinationView {
    /// `whk_…` for an owner's endpoint, `callback` for the request's callback_url, `notify`
    /// for a user's notification URL.
    pub endpoint: String,
    #[schema(format = Uri)]
    pub url: String,
}

/// A request's decision or expiry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DecisionEvent {
    /// `approval.decided` or `approval.expired`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub destination: DestinationView,
    /// The user whose endpoint it is (the request's owner).
    pub owner: String,
    pub data: ApprovalView,
}

/// A new request that waits for the receiver's user (Slack and ntfy show `text`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestedEvent {
    pub text: String,
    /// `approval.requested` or `cosign.requested`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub data: RequestedData,
    pub destination: DestinationView,
    /// The user whose notification URL it is.
    pub owner: String,
}

/// The request a notification is about.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestedData {
    pub id: String,
    /// An approval request's action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A co-signed request's namespace and requester.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The receiver's page for it: an address, not a credential.
    #[schema(format = Uri)]
    pub approval_url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}
