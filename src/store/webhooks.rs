//! Webhook endpoints, notification targets, and deliveries with their schedule.

use sled::Transactional as _;

use super::records::{Delivery, DeliveryState, NotifyTarget, WebhookEndpoint};
use super::{Result, Store, settle};

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
            &self.webhook_endpoints_by_user,
            &self.webhook_endpoints,
            user_id,
        )
    }

    pub fn webhook_endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>> {
        self.get(&self.webhook_endpoints, id)
    }

    /// Removes an endpoint (its index entry is skipped from then on).
    pub fn remove_webhook_endpoint(&self, id: &str) -> Result<()> {
        self.webhook_endpoints.remove(id)?;
        Ok(())
    }

    pub fn set_notify_target(&self, target: &NotifyTarget) -> Result<()> {
        let bytes = self.encode(&target.user_id, target)?;
        self.notify_targets
            .insert(target.user_id.as_bytes(), bytes)?;
        Ok(())
    }

    pub fn notify_target(&self, user_id: &str) -> Result<Option<NotifyTarget>> {
        self.get(&self.notify_targets, user_id)
    }

    pub fn clear_notify_target(&self, user_id: &str) -> Result<()> {
        self.notify_targets.remove(user_id)?;
        Ok(())
    }

    /// Pending deliveries due at or before `now`, soonest first, at most `limit`.
    pub fn due_deliveries(&self, now: i64, limit: usize) -> Result<Vec<Delivery>> {
        let mut found = Vec::new();
        for entry in self
            .deliveries_due
            .range(..(now + 1).to_be_bytes().to_vec())
        {
            let (_, id) = entry?;
            if let Some(delivery) =
                self.get::<Delivery>(&self.deliveries, &String::from_utf8_lossy(&id))?
            {
                found.push(delivery);
            }
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// When the next pending delivery is due, if any is.
    pub fn next_delivery_at(&self) -> Result<Option<i64>> {
        Ok(self.deliveries_due.first()?.and_then(|(key, _)| {
            key.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_be_bytes)
        }))
    }

    /// Stores a delivery's new state, moving it in (or out of) the schedule.
    pub fn update_delivery(&self, before: &Delivery, after: &Delivery) -> Result<()> {
        let bytes = self.encode(&after.id, after)?;
        let outcome = (&self.deliveries, &self.deliveries_due).transaction(|(deliveries, due)| {
            due.remove(due_key(before.next_attempt_at, &before.id))?;
            deliveries.insert(after.id.as_bytes(), bytes.clone())?;
            if after.state == DeliveryState::Pending {
                due.insert(
                    due_key(after.next_attempt_at, &after.id),
                    after.id.as_bytes(),
                )?;
            }
            Ok(())
        });
        settle(outcome)
    }

    /// The deliveries about `request_id`, oldest first.
    pub fn deliveries_of_request(&self, request_id: &str) -> Result<Vec<Delivery>> {
        self.indexed(&self.deliveries_by_request, &self.deliveries, request_id)
    }
}
