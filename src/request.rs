//! The request model: a request for a human decision, whatever it asks for. Pure: no store, no
//! token; [`appliance`](crate::appliance) keeps the records and acts on them.
//!
//! A request asks for one of two things ([`RequestKind`]):
//!
//! - a **signature**: a co-signed `sign` (`pnd_…`). The token signs the payload's digest under
//!   the request's authorization once its principal approves (with a drawn signature sealed into
//!   an evidence envelope where the authorization asks for one);
//! - an **approval**: an action an API key asked people about (`apr_…`). The token signs the
//!   decision once its approvers' votes meet the threshold, or on the first rejection.
//!
//! Both move through one state machine ([`RequestStatus`]): `pending`, then exactly one of
//! `approved`, `rejected` or `expired`, by compare-and-swap on the record. The words on the wire
//! are the seeds' own ([`RequestStatus::word`]): the sshsign seed says `denied` where the
//! SignedApproval seed says `rejected`.
//!
//! Ids keep the prefixes they always had; [`RequestId::parse`] turns one into its kind, once,
//! where it enters.

use serde::{Deserialize, Serialize};

use crate::approval::decision::Verdict;
use crate::ids::IdKind;

/// What a request asks its deciders for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// A signature over a digest under an authorization (`pnd_`): decided by the principal.
    Signature,
    /// An approval of an action (`apr_`): decided by approvers, m of n.
    Approval,
}

/// A request's id, parsed into its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId {
    kind: RequestKind,
    id: String,
}

impl RequestId {
    /// The request `text` names, if it has the shape of a request id (whether it exists is the
    /// store's business).
    pub fn parse(text: &str) -> Option<RequestId> {
        let kind = if IdKind::Pending.matches(text) {
            RequestKind::Signature
        } else if IdKind::Approval.matches(text) {
            RequestKind::Approval
        } else {
            return None;
        };
        Some(RequestId {
            kind,
            id: text.to_owned(),
        })
    }

    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// Where a request stands. Every change leaves `Pending`, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    Pending,
    Approved,
    /// The sshsign seed's `denied`; records of signature requests store that word.
    #[serde(alias = "denied")]
    Rejected,
    Expired,
}

impl RequestStatus {
    /// The word for this status on a request of `kind`, the same over SSH, REST, pages,
    /// webhooks and in errors.
    pub fn word(self, kind: RequestKind) -> &'static str {
        match (self, kind) {
            (RequestStatus::Pending, _) => "pending",
            (RequestStatus::Approved, _) => "approved",
            (RequestStatus::Rejected, RequestKind::Signature) => "denied",
            (RequestStatus::Rejected, RequestKind::Approval) => "rejected",
            (RequestStatus::Expired, _) => "expired",
        }
    }

    /// The status a verdict leads to.
    pub fn of(verdict: Verdict) -> RequestStatus {
        match verdict {
            Verdict::Approved => RequestStatus::Approved,
            Verdict::Rejected => RequestStatus::Rejected,
        }
    }
}

/// Where a request stands at `now`: an open request whose time is up is expired, whether or
/// not that has been recorded yet.
pub fn standing(status: RequestStatus, expires_at: i64, now: i64) -> RequestStatus {
    match status {
        RequestStatus::Pending if expires_at <= now => RequestStatus::Expired,
        status => status,
    }
}

/// Why a request cannot be decided now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    Expired,
    Resolved(RequestStatus),
}

/// Whether a request in `status`, expiring at `expires_at`, can still be decided at `now`.
pub fn open(status: RequestStatus, expires_at: i64, now: i64) -> Result<(), Closed> {
    match standing(status, expires_at, now) {
        RequestStatus::Pending => Ok(()),
        RequestStatus::Expired => Err(Closed::Expired),
        status => Err(Closed::Resolved(status)),
    }
}

/// What the votes cast so far (`approvals` of them approving) and a new `verdict` make of a
/// request needing `threshold` approvals: resolved by the first rejection or by the
/// approval that meets the threshold, else still pending.
pub fn tally(approvals: usize, threshold: u32, verdict: Verdict) -> RequestStatus {
    match verdict {
        Verdict::Rejected => RequestStatus::Rejected,
        Verdict::Approved if approvals + 1 >= threshold as usize => RequestStatus::Approved,
        Verdict::Approved => RequestStatus::Pending,
    }
}

/// How signature requests' records spell their status: `denied` for a rejection, as they
/// always have, so records on disk read and write the same.
pub mod signature_words {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use super::{RequestKind, RequestStatus};

    pub fn serialize<S: Serializer>(status: &RequestStatus, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(status.word(RequestKind::Signature))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RequestStatus, D::Error> {
        RequestStatus::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_into_their_kind_once() {
        let pnd = IdKind::Pending.make([1; 16]);
        let apr = IdKind::Approval.make([2; 16]);
        assert_eq!(
            RequestId::parse(&pnd).map(|r| r.kind()),
            Some(RequestKind::Signature)
        );
        assert_eq!(
            RequestId::parse(&apr).map(|r| r.kind()),
            Some(RequestKind::Approval)
        );
        for other in [
            IdKind::SigningKey.make([3; 16]),
            "pnd_".to_owned(),
            format!("{apr}x"),
            apr.to_uppercase(),
            String::new(),
        ] {
            assert_eq!(RequestId::parse(&other), None, "{other}");
        }
    }

    #[test]
    fn each_seed_keeps_its_word_for_a_rejection() {
        use RequestKind::*;
        use RequestStatus::*;
        assert_eq!(Rejected.word(Signature), "denied");
        assert_eq!(Rejected.word(Approval), "rejected");
        for kind in [Signature, Approval] {
            assert_eq!(Pending.word(kind), "pending");
            assert_eq!(Approved.word(kind), "approved");
            assert_eq!(Expired.word(kind), "expired");
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Stored {
        #[serde(with = "signature_words")]
        status: RequestStatus,
    }

    #[test]
    fn signature_records_read_and_write_the_words_on_disk() {
        for (status, word) in [
            (RequestStatus::Pending, "pending"),
            (RequestStatus::Approved, "approved"),
            (RequestStatus::Rejected, "denied"),
            (RequestStatus::Expired, "expired"),
        ] {
            let json = format!(r#"{{"status":"{word}"}}"#);
            let read: Stored = serde_json::from_str(&json).expect("reads");
            assert_eq!(read.status, status);
            assert_eq!(serde_json::to_string(&read).expect("writes"), json);
        }
        // Approval records always said `rejected`.
        let approval: RequestStatus = serde_json::from_str(r#""rejected""#).expect("reads");
        assert_eq!(approval, RequestStatus::Rejected);
        assert_eq!(
            serde_json::to_string(&approval).expect("writes"),
            r#""rejected""#
        );
        assert!(serde_json::from_str::<Stored>(r#"{"status":"refused"}"#).is_err());
    }

    #[test]
    fn a_request_closes_once_its_time_is_up() {
        assert_eq!(open(RequestStatus::Pending, 100, 99), Ok(()));
        assert_eq!(open(RequestStatus::Pending, 100, 100), Err(Closed::Expired));
        assert_eq!(open(RequestStatus::Expired, 100, 50), Err(Closed::Expired));
        assert_eq!(
            open(RequestStatus::Approved, 100, 50),
            Err(Closed::Resolved(RequestStatus::Approved))
        );
        // A decided request stays decided after its time.
        assert_eq!(
            standing(RequestStatus::Rejected, 100, 500),
            RequestStatus::Rejected
        );
    }

    #[test]
    fn the_first_rejection_or_the_threshold_resolves() {
        use Verdict::*;
        let cases = [
            // (approvals so far, threshold, verdict, outcome)
            (0, 1, Approved, RequestStatus::Approved),
            (0, 2, Approved, RequestStatus::Pending),
            (1, 2, Approved, RequestStatus::Approved),
            (1, 3, Approved, RequestStatus::Pending),
            (0, 1, Rejected, RequestStatus::Rejected),
            (2, 3, Rejected, RequestStatus::Rejected),
        ];
        for (approvals, threshold, verdict, outcome) in cases {
            assert_eq!(
                tally(approvals, threshold, verdict),
                outcome,
                "{approvals} of {threshold}, then {verdict:?}"
            );
        }
    }
}
