//! How negotiations and their offers are shown.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::negotiation::{NegotiationRecord, NegotiationStatus, OfferRecord, OfferType};
use crate::time;

/// A party, and the user who speaks for it.
#[derive(Debug, Clone, Serialize)]
pub struct PartyView {
    pub name: String,
    pub user_id: String,
}

/// A negotiation's state.
#[derive(Debug, Clone, Serialize)]
pub struct NegotiationView {
    pub negotiation_id: String,
    pub status: NegotiationStatus,
    pub parties: Vec<PartyView>,
    pub next_round: u64,
    pub last_from: String,
    /// The hash of the last offer, hex.
    pub head: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&NegotiationRecord> for NegotiationView {
    fn from(n: &NegotiationRecord) -> Self {
        NegotiationView {
            negotiation_id: n.negotiation_id.clone(),
            status: n.status,
            parties: n
                .parties
                .iter()
                .map(|p| PartyView {
                    name: p.name.clone(),
                    user_id: p.user_id.clone(),
                })
                .collect(),
            next_round: n.next_round,
            last_from: n.last_from.clone(),
            head: n.head.clone(),
            created_at: time::rfc3339(n.created_at),
            updated_at: time::rfc3339(n.updated_at),
        }
    }
}

/// One offer in a negotiation's hash chain.
#[derive(Debug, Clone, Serialize)]
pub struct OfferView {
    pub negotiation_id: String,
    pub round: u64,
    pub from: String,
    pub speaker: String,
    #[serde(rename = "type")]
    pub offer_type: OfferType,
    pub metadata: Map<String, Value>,
    pub previous_hash: Option<String>,
    pub hash: String,
    pub time: String,
}

impl From<&OfferRecord> for OfferView {
    fn from(o: &OfferRecord) -> Self {
        OfferView {
            negotiation_id: o.negotiation_id.clone(),
            round: o.round,
            from: o.from.clone(),
            speaker: o.speaker.clone(),
            offer_type: o.offer_type,
            metadata: o.metadata.clone(),
            previous_hash: o.previous_hash.clone(),
            hash: o.hash.clone(),
            time: time::rfc3339(o.time),
        }
    }
}

/// `log-offer`: the offer recorded, and the negotiation after it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedOffer {
    #[serde(flatten)]
    pub offer: OfferView,
    pub negotiation: NegotiationView,
}

/// `history`: the negotiation, its offers, and whether their hash chain holds.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryView {
    pub negotiation: NegotiationView,
    pub offers: Vec<OfferView>,
    /// Whether each offer on this page holds its own hash.
    pub chain_intact: bool,
    /// `--from` for the next page of offers; null on the last.
    pub next: Option<usize>,
}
