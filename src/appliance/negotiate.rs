//! Negotiation offers and history.

use super::{Appliance, Caller, Error, metadata_hash};
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::negotiation::{self, NegotiationRecord, OfferRecord, Proposal, Refusal};
use crate::time;

impl Appliance {
    /// Records an offer. `proposal.negotiation_id` empty: a new negotiation (round 0) with a
    /// fresh id from the appliance; a client never names a negotiation that does not exist yet,
    /// so nobody can take an id before the party meant to use it. Every attempt is an audit
    /// entry; an offer is recorded only after its entry.
    pub async fn log_offer(
        &self,
        caller: &Caller,
        mut proposal: Proposal,
    ) -> Result<(NegotiationRecord, OfferRecord), Error> {
        let assigned = proposal.negotiation_id.is_empty();
        if assigned {
            proposal.negotiation_id = self.new_id(IdKind::Negotiation).await?;
        }
        let id = proposal.negotiation_id.clone();
        let mut entry = self.entry(caller, Action::Offer, Outcome::default());
        entry.negotiation_id = Some(id.clone());
        entry.metadata_sha256 = Some(metadata_hash(&proposal.metadata));
        let current = self.store.negotiation(&id)?;
        let outcome = match &current {
            None if !assigned => Err(Refusal::Unknown(id.clone())),
            current => negotiation::apply(
                current.as_ref().map(|(_, record)| record),
                &proposal,
                caller.id(),
                time::now(),
            ),
        };
        if let Some((_, record)) = &current {
            entry
                .readers
                .extend(record.parties.iter().map(|p| p.user_id.clone()));
        }
        let (next, offer) = match outcome {
            Ok(applied) => applied,
            Err(refusal) => {
                entry.result = Outcome::Refused;
                entry.reason = Some(refusal.code().to_owned());
                self.record(entry).await?;
                return Err(refusal.into());
            }
        };
        entry.result = Outcome::Recorded;
        entry.round = Some(offer.round);
        entry.offer_hash = Some(offer.hash.clone());
        self.record(entry.clone()).await?;
        let prior = current.as_ref().map(|(raw, _)| raw);
        if !self.store.record_offer(prior, &next, &offer)? {
            // Another offer got there first: say precisely why this one no longer applies.
            let now_stored = self.store.negotiation(&id)?;
            let refusal = negotiation::apply(
                now_stored.as_ref().map(|(_, record)| record),
                &proposal,
                caller.id(),
                time::now(),
            )
            .err()
            .unwrap_or(Refusal::StaleHead {
                head: now_stored.map(|(_, r)| r.head).unwrap_or_default(),
                given: next.head.clone(),
            });
            entry.result = Outcome::Refused;
            entry.reason = Some(refusal.code().to_owned());
            self.record(entry).await?;
            return Err(refusal.into());
        }
        self.store.flush().await?;
        Ok((next, offer))
    }

    /// A negotiation and its offers, for its parties only.
    pub fn history(
        &self,
        caller: &Caller,
        negotiation_id: &str,
        page: super::Page,
    ) -> Result<(NegotiationRecord, Vec<OfferRecord>, Option<usize>), Error> {
        let unknown = || Error::Negotiation(Refusal::Unknown(negotiation_id.to_owned()));
        let (_, record) = self
            .store
            .negotiation(negotiation_id)?
            .ok_or_else(unknown)?;
        if !record.parties.iter().any(|p| p.user_id == caller.id()) {
            return Err(Error::Negotiation(Refusal::NotAParty(
                "only the parties read a negotiation's history".to_owned(),
            )));
        }
        let (offers, next) = self
            .store
            .offers_page(negotiation_id, page.from, page.limit)?;
        Ok((record, offers, next))
    }
}
