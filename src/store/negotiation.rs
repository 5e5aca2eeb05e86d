//! Negotiations and their offers.

use super::engine::{Span, TreeName};
use super::{Result, Store};
use crate::negotiation::{NegotiationRecord, OfferRecord};

fn offer_key(negotiation_id: &str, round: u64) -> Vec<u8> {
    let mut key = negotiation_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&round.to_be_bytes());
    key
}

/// The offers of a negotiation, by round.
fn offers_span(negotiation_id: &str) -> Span {
    let mut prefix = negotiation_id.as_bytes().to_vec();
    prefix.push(0);
    Span::prefix(&prefix)
}

impl Store {
    /// A negotiation as stored, with its raw bytes for [`Store::record_offer`].
    pub fn negotiation(
        &self,
        negotiation_id: &str,
    ) -> Result<Option<(Vec<u8>, NegotiationRecord)>> {
        match self
            .engine
            .get(TreeName::Negotiations, negotiation_id.as_bytes())?
        {
            Some(raw) => {
                let record = self.decode(negotiation_id.as_bytes(), &raw)?;
                Ok(Some((raw, record)))
            }
            None => Ok(None),
        }
    }

    /// Records `offer` and the negotiation after it, if the negotiation is still what `prior`
    /// says it was (`None`: it did not exist). Returns whether it was recorded: of two offers
    /// made against the same state, one is.
    pub fn record_offer(
        &self,
        prior: Option<&Vec<u8>>,
        negotiation: &NegotiationRecord,
        offer: &OfferRecord,
    ) -> Result<bool> {
        let id = negotiation.negotiation_id.as_bytes();
        let key = offer_key(&negotiation.negotiation_id, offer.round);
        let negotiation_bytes = self.encode(&negotiation.negotiation_id, negotiation)?;
        let offer_bytes = self.encode(&String::from_utf8_lossy(&key), offer)?;
        let trees = [TreeName::Negotiations, TreeName::Offers];
        self.engine.transaction(&trees, |tx| {
            if tx.get(TreeName::Negotiations, id)?.as_ref() != prior {
                return Ok(false);
            }
            tx.insert(TreeName::Negotiations, id, &negotiation_bytes)?;
            tx.insert(TreeName::Offers, &key, &offer_bytes)?;
            Ok(true)
        })
    }

    /// Offers `from` to `from + limit` (rounds in order), and the next page's position.
    pub fn offers_page(
        &self,
        negotiation_id: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<OfferRecord>, Option<usize>)> {
        let mut entries = self.engine.scan(
            TreeName::Offers,
            &offers_span(negotiation_id),
            from,
            limit.saturating_add(1),
        )?;
        let next = (entries.len() > limit).then_some(from + limit);
        entries.truncate(limit);
        let offers = entries
            .into_iter()
            .map(|(key, raw)| self.decode(&key, &raw))
            .collect::<Result<_>>()?;
        Ok((offers, next))
    }

    /// Every offer of a negotiation, by round.
    pub fn offers(&self, negotiation_id: &str) -> Result<Vec<OfferRecord>> {
        self.every(TreeName::Offers, &offers_span(negotiation_id))
    }
}
