//! Negotiations and their offers.

use sled::IVec;
use sled::Transactional as _;

use super::{Result, Store, settle};
use crate::negotiation::{NegotiationRecord, OfferRecord};

fn offer_key(negotiation_id: &str, round: u64) -> Vec<u8> {
    let mut key = negotiation_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&round.to_be_bytes());
    key
}

impl Store {
    /// A negotiation as stored, with its raw bytes for [`Store::record_offer`].
    pub fn negotiation(&self, negotiation_id: &str) -> Result<Option<(IVec, NegotiationRecord)>> {
        match self.negotiations.get(negotiation_id)? {
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
        prior: Option<&IVec>,
        negotiation: &NegotiationRecord,
        offer: &OfferRecord,
    ) -> Result<bool> {
        let id = negotiation.negotiation_id.as_str();
        let key = offer_key(id, offer.round);
        let negotiation_bytes = self.encode(id, negotiation)?;
        let offer_bytes = self.encode(&String::from_utf8_lossy(&key), offer)?;
        let outcome = (&self.negotiations, &self.offers).transaction(|(negotiations, offers)| {
            if negotiations.get(id)?.as_ref() != prior {
                return Ok(false);
            }
            negotiations.insert(id, negotiation_bytes.clone())?;
            offers.insert(key.as_slice(), offer_bytes.clone())?;
            Ok(true)
        });
        settle(outcome)
    }

    /// Every offer of a negotiation, by round.
    /// Offers `from` to `from + limit` (rounds in order), and the next page's position.
    pub fn offers_page(
        &self,
        negotiation_id: &str,
        from: usize,
        limit: usize,
    ) -> Result<(Vec<OfferRecord>, Option<usize>)> {
        let mut prefix = negotiation_id.as_bytes().to_vec();
        prefix.push(0);
        super::page_of(self.offers.scan_prefix(&prefix), from, limit, |key, raw| {
            self.decode(&key, &raw).map(Some)
        })
    }

    pub fn offers(&self, negotiation_id: &str) -> Result<Vec<OfferRecord>> {
        let mut prefix = negotiation_id.as_bytes().to_vec();
        prefix.push(0);
        self.offers
            .scan_prefix(&prefix)
            .map(|item| {
                let (key, raw) = item?;
                self.decode(&key, &raw)
            })
            .collect()
    }
}
