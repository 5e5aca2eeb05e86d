//! Negotiation logs: offers between two parties, turn by turn, each linked to the one before by
//! hash. The rules are pure ([`apply`]): given the negotiation as it stands and a proposed offer,
//! they return the negotiation and offer to record, or a [`Refusal`].
//!
//! - Two parties, named by the offers (`--from founder`). A party is bound to the SSH identity
//!   that first spoke for it; nobody else speaks for it, and one identity speaks for one party.
//! - Turns alternate: the same party never makes two offers in a row.
//! - Rounds count offers from 0, one per turn; an offer must carry the next round.
//! - The first offer is an `offer`; `counter` answers; `accept` and `reject` end it.
//! - Each offer's hash covers its content and the previous offer's hash. A client that names
//!   the head it answers (`--previous-hash`) is refused if another offer got there first; of two
//!   offers racing on one head, exactly one is recorded.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

/// What an offer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OfferType {
    Offer,
    Counter,
    Accept,
    Reject,
}

/// Where a negotiation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NegotiationStatus {
    Open,
    Accepted,
    Rejected,
}

/// A party and the user who speaks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub name: String,
    pub user_id: String,
}

/// A negotiation's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiationRecord {
    pub negotiation_id: String,
    pub parties: Vec<Party>,
    /// The round the next offer must carry.
    pub next_round: u64,
    /// The party that spoke last.
    pub last_from: String,
    /// The hash of the last offer, hex.
    pub head: String,
    pub status: NegotiationStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One recorded offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRecord {
    pub negotiation_id: String,
    pub round: u64,
    pub from: String,
    pub speaker: String,
    pub offer_type: OfferType,
    pub metadata: Map<String, Value>,
    /// The hash of the offer this one answers, hex (none for round 0).
    pub previous_hash: Option<String>,
    pub time: i64,
    /// SHA-256 over the canonical JSON of every other field, hex.
    pub hash: String,
}

/// An offer as proposed.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub negotiation_id: String,
    pub round: u64,
    pub from: String,
    pub offer_type: OfferType,
    pub metadata: Map<String, Value>,
    /// The head the client answers, if it names one.
    pub previous_hash: Option<String>,
}

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "unknown negotiation {0} (a new negotiation starts without a negotiation id: the \
         appliance assigns it)"
    )]
    Unknown(String),
    #[error("not a party: {0}")]
    NotAParty(String),
    #[error("not your turn: {0} made the last offer")]
    NotYourTurn(String),
    #[error("wrong round: the next offer is round {expected}, not {got}")]
    WrongRound { expected: u64, got: u64 },
    #[error("stale head: the negotiation's last offer is {head}, not {given}")]
    StaleHead { head: String, given: String },
    #[error("the negotiation is already {0}")]
    Closed(&'static str),
    /// A field of the offer is wrong here; `reason` reads after the field's name.
    #[error("{field} {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unknown(_) => "unknown_negotiation",
            Refusal::NotAParty(_) => "not_a_party",
            Refusal::NotYourTurn(_) => "not_your_turn",
            Refusal::WrongRound { .. } => "wrong_round",
            Refusal::StaleHead { .. } => "stale_head",
            Refusal::Closed(_) => "negotiation_closed",
            Refusal::Invalid { .. } => "invalid_argument",
        }
    }
}

impl OfferRecord {
    /// The hash of everything but the hash field.
    fn compute_hash(&self) -> String {
        let mut content = serde_json::to_value(self).unwrap_or_default();
        if let Value::Object(map) = &mut content {
            map.remove("hash");
        }
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        crate::hex::encode(&Sha256::digest(bytes))
    }

    /// Whether the stored hash covers the stored content.
    pub fn hash_holds(&self) -> bool {
        self.hash == self.compute_hash()
    }
}

/// Applies `proposal` by `speaker` to the negotiation `current` (`None`: not started).
pub fn apply(
    current: Option<&NegotiationRecord>,
    proposal: &Proposal,
    speaker: &str,
    now: i64,
) -> Result<(NegotiationRecord, OfferRecord), Refusal> {
    let mut next = match current {
        None => {
            if proposal.round != 0 {
                return Err(Refusal::Unknown(proposal.negotiation_id.clone()));
            }
            if proposal.offer_type != OfferType::Offer {
                return Err(Refusal::Invalid {
                    field: "type",
                    reason: "is offer when a negotiation opens".to_owned(),
                });
            }
            NegotiationRecord {
                negotiation_id: proposal.negotiation_id.clone(),
                parties: Vec::new(),
                next_round: 0,
                last_from: String::new(),
                head: String::new(),
                status: NegotiationStatus::Open,
                created_at: now,
                updated_at: now,
            }
        }
        Some(state) => state.clone(),
    };
    match next.status {
        NegotiationStatus::Open => {}
        NegotiationStatus::Accepted => return Err(Refusal::Closed("accepted")),
        NegotiationStatus::Rejected => return Err(Refusal::Closed("rejected")),
    }
    match next.parties.iter().find(|p| p.name == proposal.from) {
        Some(party) if party.user_id != speaker => {
            return Err(Refusal::NotAParty(format!(
                "{} is spoken for by another identity",
                proposal.from
            )));
        }
        Some(_) => {}
        None => {
            if let Some(own) = next.parties.iter().find(|p| p.user_id == speaker) {
                return Err(Refusal::NotAParty(format!(
                    "you speak for {} in this negotiation",
                    own.name
                )));
            }
            if next.parties.len() == 2 {
                return Err(Refusal::NotAParty(format!(
                    "{} is not one of the two parties",
                    proposal.from
                )));
            }
            next.parties.push(Party {
                name: proposal.from.clone(),
                user_id: speaker.to_owned(),
            });
        }
    }
    if next.last_from == proposal.from {
        return Err(Refusal::NotYourTurn(proposal.from.clone()));
    }
    if proposal.round != next.next_round {
        return Err(Refusal::WrongRound {
            expected: next.next_round,
            got: proposal.round,
        });
    }
    if let Some(given) = proposal.previous_hash.as_ref().filter(|g| **g != next.head) {
        return Err(Refusal::StaleHead {
            head: next.head.clone(),
            given: given.clone(),
        });
    }
    if current.is_some() && proposal.offer_type == OfferType::Offer {
        // An answer is a counter, an accept or a reject; a fresh offer mid-way is a counter.
        return Err(Refusal::Invalid {
            field: "type",
            reason: "is counter, accept or reject in an answer".to_owned(),
        });
    }
    let mut offer = OfferRecord {
        negotiation_id: next.negotiation_id.clone(),
        round: proposal.round,
        from: proposal.from.clone(),
        speaker: speaker.to_owned(),
        offer_type: proposal.offer_type,
        metadata: proposal.metadata.clone(),
        previous_hash: (!next.head.is_empty()).then(|| next.head.clone()),
        time: now,
        hash: String::new(),
    };
    offer.hash = offer.compute_hash();
    next.next_round += 1;
    next.last_from = proposal.from.clone();
    next.head = offer.hash.clone();
    next.updated_at = now;
    next.status = match proposal.offer_type {
        OfferType::Accept => NegotiationStatus::Accepted,
        OfferType::Reject => NegotiationStatus::Rejected,
        OfferType::Offer | OfferType::Counter => NegotiationStatus::Open,
    };
    Ok((next, offer))
}

#[cfg(test)]
mod tests;
