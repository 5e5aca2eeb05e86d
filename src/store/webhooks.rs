//! Webhook endpoints, notification targets, and deliveries with their schedule.

use super::engine::{Span, TreeName};
use super::records::{Delivery, DeliveryState, NotifyTarget, WebhookEndpoint};
use super::{Result, Store};

/// The schedule's key: when, then which.
pub(super) fn due_key(at: i64, id: &str) -> Vec<u8> {
    let mut key = at.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key
}

impl Store {
    /// `user_id`'s endpoints, oldest first.
    pub fn webhook_endpoints_of(&self, user_id: &str) -> Result<Vec<WebhookEndpoint>> {
        self.indexed(
            TreeName::WebhookEndpointsByUser,
            TreeName::WebhookEndpoints,
            user_id,
        )
    }

    pub fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>> {
        self.get(TreeName::WebhookEndpoints, id)
    }

    /// Removes an endpoint (its index entry is skipped from then on).
    pub fn remove_webhook_endpoint(&self, id: &str) -> Result<()> {
        self.engine
            .remove(TreeName::WebhookEndpoints, id.as_bytes())
            .map(drop)
    }

    pub fn set_notify_target(&self, target: &NotifyTarget) -> Result<()> {
        let bytes = self.encode(&target.user_id, target)?;
        self.engine
            .insert(TreeName::NotifyTargets, target.user_id.as_bytes(), &bytes)
    }

    pub fn notify_target(&self, user_id: &str) -> Result<Option<NotifyTarget>> {
        self.get(TreeName::NotifyTargets, user_id)
    }

    pub fn clear_notify_target(&self, user_id: &str) -> Result<()> {
        self.engine
            .remove(TreeName::NotifyTargets, user_id.as_bytes())
            .map(drop)
    }

    /// Pending deliveries due at or before `now`, soonest first, at most `limit`.
    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let due = Span::below((now + 1).to_be_bytes().to_vec());
        let entries = self.engine.scan(TreeName::DeliveriesDue, &due, 0, limit)?;
        let mut found = Vec::new();
        for (_, id) in entries {
            found
                .extend(self.get::<Delivery>(TreeName::Deliveries, &String::from_utf8_lossy(&id))?);
        }
        Ok(found)
    }

    /// When the next pending delivery is due, if any is.
    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        let first = self
            .engine
            .scan(TreeName::DeliveriesDue, &Span::all(), 0, 1)?;
        Ok(first.into_iter().next().and_then(|(key, _)| {
            key.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
        }))
    }

    /// Stores a delivery's new state, moving it in (or out of) the schedule.
    pub fn update_delivery(&self, before: &Delivery, after: &Delivery) -> Result<()> {
        let bytes = self.encode(&after.id, after)?;
        let trees = [TreeName::Deliveries, TreeName::DeliveriesDue];
        self.engine.transaction(&trees, |tx| {
            tx.remove(
                TreeName::DeliveriesDue,
                &due_key(before.next_attempt_at, &before.id),
            )?;
            tx.insert(TreeName::Deliveries, after.id.as_bytes(), &bytes)?;
            if after.state == DeliveryState::Pending {
                tx.insert(
                    TreeName::DeliveriesDue,
                    &due_key(after.next_attempt_at, &after.id),
                    after.id.as_bytes(),
                )?;
            }
            Ok(())
        })
    }

    /// Claims a due delivery for one attempt by moving it in the schedule to `until`, if it
    /// is still where `due` saw it: of appliances claiming it at once, one does, and if that
    /// one stops before storing the outcome, the delivery falls due again at `until` for any
    /// appliance to retry. Returns the delivery as claimed.
    pub fn claim_delivery(&self, due: &Delivery, until: i64) -> Result<Option<Delivery>> {
        let trees = [TreeName::Deliveries, TreeName::DeliveriesDue];
        let id = due.id.as_bytes();
        let was = due_key(due.next_attempt_at, &due.id);
        self.engine.transaction(&trees, |tx| {
            let (Some(_), Some(bytes)) = (
                tx.get(TreeName::DeliveriesDue, &was)?,
                tx.get(TreeName::Deliveries, id)?,
            ) else {
                return Ok(None);
            };
            let mut claimed: Delivery = self.decode(id, &bytes)?;
            if claimed.state != DeliveryState::Pending
                || claimed.next_attempt_at != due.next_attempt_at
            {
                return Ok(None);
            }
            claimed.next_attempt_at = until;
            let bytes = self.encode(&claimed.id, &claimed)?;
            tx.insert(TreeName::Deliveries, id, &bytes)?;
            tx.remove(TreeName::DeliveriesDue, &was)?;
            tx.insert(TreeName::DeliveriesDue, &due_key(until, &claimed.id), id)?;
            Ok(Some(claimed))
        })
    }

    /// The deliveries about `request_id`, oldest first.
    pub fn deliveries_of_request(&self, request_id: &str) -> Result<Vec<Delivery>> {
        self.indexed(
            TreeName::DeliveriesByRequest,
            TreeName::Deliveries,
            request_id,
        )
    }
}
