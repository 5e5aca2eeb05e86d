//! How a request is shown, the same over REST (to its owner) and SSH (to its approvers).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::decision::DecisionPayload;
use crate::store::ApprovalRecord;
use crate::time;

/// A request, its votes and, once signed, its decision.
pub fn approval_json(r: &ApprovalRecord) -> Value {
    let decision = match (&r.decision_payload, &r.decision_signature) {
        (Some(payload), Some(signature)) => {
            let parsed: Option<DecisionPayload> = BASE64
                .decode(payload)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok());
            parsed.map(|p| {
                json!({
                    "id": p.did,
                    "decision": p.decision,
                    "method": p.method,
                    "signed_payload": payload,
                    "signature": signature,
                    "key_id": r.decision_key_id,
                    "decided_at": r.decided_at.map(time::rfc3339),
                })
            })
        }
        _ => None,
    };
    json!({
        "id": r.request_id,
        "status": r.status.word(crate::request::RequestKind::Approval),
        "action": r.action,
        "metadata": r.metadata,
        "callback_url": r.callback_url,
        "approvers": r.approvers,
        "threshold": r.threshold,
        "methods": r.methods,
        "votes": r.votes.iter().map(|v| json!({
            "approver": v.approver,
            "decision": v.verdict,
            "method": v.method,
            "at": time::rfc3339(v.at),
            "reason": v.reason,
        })).collect::<Vec<_>>(),
        "created_at": time::rfc3339(r.created_at),
        "expires_at": time::rfc3339(r.expires_at),
        "decided_at": r.decided_at.map(time::rfc3339),
        "totp_failures": r.totp_failures,
        "decision": decision,
    })
}
