//! Webhooks out of the appliance: each decision (or expiry) on an approval request goes to the
//! request's `callback_url` and to its owner's endpoints; each new request of either kind goes
//! to its deciders' notification URLs, with the addresses of their pages. Deliveries are stored before the
//! first attempt; [`Appliance::run_deliveries`] attempts them as they fall due, signs each
//! attempt with the token (its audit entry first), and retries with backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use super::quota::{Counted, Rated};
use super::requests::HumanRequest;
use super::{Appliance, Caller, Error};
use crate::audit::AuditEntry;
use crate::audit::{Action, Outcome};
use crate::ids::IdKind;
use crate::request::RequestStatus;
use crate::store::{
    ApprovalRecord, Delivery, DeliveryKind, DeliveryState, NotifyTarget, WebhookEndpoint,
};
use crate::time;
use crate::views::{ApprovalView, DecisionEvent, DestinationView, RequestedData, RequestedEvent};
use crate::views::{EndpointView, NotifyTargetView};
use crate::webhook::client::{self, DeliveryError, Target};
use crate::webhook::{self as hooks, next_delay};

/// Deliveries attempted at once.
const BATCH: usize = 16;
/// The longest the delivery loop sleeps without looking (expiries are found this way too).
const IDLE: Duration = Duration::from_secs(5);
/// How long an appliance holds a delivery it claimed before another may attempt it: longer
/// than an attempt takes (the POST's whole budget, the token's signature, the outcome stored).
const CLAIM_SECONDS: i64 = 60;

impl Appliance {
    /// Checks a URL a user gives for webhooks: its form, and where its host resolves now.
    pub(super) async fn check_destination(
        &self,
        field: &'static str,
        url: &str,
    ) -> Result<(), Error> {
        let invalid = |e: DeliveryError| Error::Invalid {
            field,
            reason: format!("is refused: {e}"),
        };
        let target = Target::parse(url).map_err(invalid)?;
        match target.resolve(&self.settings.webhook_policy).await {
            Ok(_) => Ok(()),
            // A name that does not resolve today may tomorrow; the delivery will say.
            Err(DeliveryError::Dns(_)) => Ok(()),
            // A well-formed URL that leads where webhooks may not go.
            Err(e) => Err(Error::Unprocessable {
                field,
                reason: format!("is refused: {e}"),
            }),
        }
    }

    /// Registers an endpoint that receives the decisions on `caller`'s approval requests.
    pub async fn add_webhook_endpoint(
        &self,
        caller: &Caller,
        url: &str,
    ) -> Result<EndpointView, Error> {
        self.check_destination("url", url).await?;
        let held = self.store.webhook_endpoints_of(caller.id())?.len();
        self.quotas.check_count(Counted::Webhooks, held)?;
        self.quotas.charge(caller.id(), Rated::WebhookChanges)?;
        let endpoint = WebhookEndpoint {
            id: self.new_id(IdKind::WebhookEndpoint).await?,
            user_id: caller.id().to_owned(),
            url: url.to_owned(),
            created_at: time::now(),
        };
        let mut entry = self.entry(caller, Action::WebhookEndpointAdd, Outcome::Done);
        entry.reason = Some(endpoint.id.clone());
        self.record(entry).await?;
        self.store.create(&endpoint)?;
        self.store.flush().await?;
        Ok(EndpointView::from(&endpoint))
    }

    pub fn webhook_endpoints(&self, caller: &Caller) -> Result<Vec<EndpointView>, Error> {
        let endpoints = self.store.webhook_endpoints_of(caller.id())?;
        Ok(endpoints.iter().map(EndpointView::from).collect())
    }

    pub async fn remove_webhook_endpoint(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<EndpointView, Error> {
        let endpoint = match self.store.webhook_endpoint(id)? {
            Some(e) if e.user_id == caller.id() => e,
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown webhook endpoint {id}"
                )));
            }
        };
        let mut entry = self.entry(caller, Action::WebhookEndpointRemove, Outcome::Done);
        entry.reason = Some(endpoint.id.clone());
        self.record(entry).await?;
        self.store.remove_webhook_endpoint(id)?;
        self.store.flush().await?;
        Ok(EndpointView::from(&endpoint))
    }

    /// Sets (or, with `None`, clears) where `caller` hears of requests waiting for them.
    pub async fn set_notify_target(
        &self,
        caller: &Caller,
        url: Option<&str>,
    ) -> Result<NotifyTargetView, Error> {
        if let Some(url) = url {
            self.check_destination("url", url).await?;
        }
        self.quotas.charge(caller.id(), Rated::WebhookChanges)?;
        let target = url.map(|url| NotifyTarget {
            user_id: caller.id().to_owned(),
            url: url.to_owned(),
            updated_at: time::now(),
        });
        let result = if target.is_some() {
            Outcome::Set
        } else {
            Outcome::Cleared
        };
        self.record(self.entry(caller, Action::NotifyTarget, result))
            .await?;
        match &target {
            Some(target) => self.store.set_notify_target(target)?,
            None => self.store.clear_notify_target(caller.id())?,
        }
        self.store.flush().await?;
        Ok(NotifyTargetView::from(target.as_ref()))
    }

    pub fn notify_target(&self, caller: &Caller) -> Result<NotifyTargetView, Error> {
        let target = self.store.notify_target(caller.id())?;
        Ok(NotifyTargetView::from(target.as_ref()))
    }

    /// Stores a delivery of `body` to `url` and wakes the delivery loop. Each body names its
    /// destination and the destination's owner ([`DestinationView`]), inside what is signed,
    /// so a receiver refuses a delivery replayed to it that was meant for another endpoint or
    /// another user.
    async fn enqueue(
        &self,
        kind: DeliveryKind,
        url: &str,
        body: &impl Serialize,
        request_id: &str,
        readers: Vec<String>,
    ) -> Result<(), Error> {
        let now = time::now();
        let body = serde_json::to_string(body)
            .map_err(|e| Error::Internal(format!("a webhook body: {e}")))?;
        let delivery = Delivery {
            id: self.new_id(IdKind::Message).await?,
            kind,
            url: url.to_owned(),
            body,
            request_id: request_id.to_owned(),
            readers,
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
            state: DeliveryState::Pending,
            last_result: None,
            finished_at: None,
        };
        self.store.create(&delivery)?;
        self.store.flush().await?;
        self.deliveries_due.notify_one();
        Ok(())
    }

    /// The deliveries of an approval request's decision, to its callback and its owner's
    /// endpoints, for the request's owner.
    pub(super) fn decision_deliveries(&self, request_id: &str) -> Result<Vec<Delivery>, Error> {
        Ok(self
            .store
            .deliveries_of_request(request_id)?
            .into_iter()
            .filter(|d| d.kind == DeliveryKind::Decision)
            .collect())
    }

    /// Tells whoever asked how a request ended: an approval's callback and its owner's
    /// endpoints. A signature request's requester learns it from `get-envelope` (or from
    /// `sign --wait`), so it has nothing to announce.
    pub(super) async fn announce(&self, request: &HumanRequest) -> Result<(), Error> {
        match request {
            HumanRequest::Approval(r) => self.announce_decision(r).await,
            HumanRequest::Signature(_) => Ok(()),
        }
    }

    /// Tells an approval request's callback and its owner's endpoints how it ended.
    pub(super) async fn announce_decision(&self, request: &ApprovalRecord) -> Result<(), Error> {
        let kind = match request.status {
            RequestStatus::Expired => "approval.expired",
            RequestStatus::Pending => return Ok(()),
            _ => "approval.decided",
        };
        let data = ApprovalView::from(request);
        // The request's own callback, then the owner's endpoints (each URL once).
        let mut targets: Vec<(String, String)> = request
            .callback_url
            .iter()
            .map(|url| ("callback".to_owned(), url.clone()))
            .collect();
        for endpoint in self.store.webhook_endpoints_of(&request.owner)? {
            if !targets.iter().any(|(_, url)| *url == endpoint.url) {
                targets.push((endpoint.id, endpoint.url));
            }
        }
        for (endpoint, url) in targets {
            let event = DecisionEvent {
                kind,
                timestamp: time::rfc3339(time::now()),
                destination: DestinationView {
                    endpoint,
                    url: url.clone(),
                },
                owner: request.owner.clone(),
                data: data.clone(),
            };
            let readers = vec![request.owner.clone()];
            self.enqueue(
                DeliveryKind::Decision,
                &url,
                &event,
                &request.request_id,
                readers,
            )
            .await?;
        }
        Ok(())
    }

    /// Tells each of a new request's deciders who set a notification URL that it waits for
    /// them, with the address of their page (nothing in it stands for them).
    pub(super) async fn notify_deciders(&self, request: &HumanRequest) -> Result<(), Error> {
        for decider in request.waiting_for() {
            let Some(target) = self.store.notify_target(&decider)? else {
                continue;
            };
            let link = self.page_url(request.id(), Some(&decider));
            let (text, kind, data) = match request {
                HumanRequest::Signature(r) => (
                    format!("Co-signature requested ({}): {link}", r.namespace),
                    "cosign.requested",
                    RequestedData {
                        id: r.pending_id.clone(),
                        action: None,
                        namespace: Some(r.namespace.clone()),
                        requester: Some(r.requester.clone()),
                        approval_url: link,
                        expires_at: time::rfc3339(r.expires_at),
                    },
                ),
                HumanRequest::Approval(r) => (
                    format!("Approval requested: {}\n{link}", r.action),
                    "approval.requested",
                    RequestedData {
                        id: r.request_id.clone(),
                        action: Some(r.action.clone()),
                        namespace: None,
                        requester: None,
                        approval_url: link,
                        expires_at: time::rfc3339(r.expires_at),
                    },
                ),
            };
            let event = RequestedEvent {
                text,
                kind,
                data,
                destination: DestinationView {
                    endpoint: "notify".to_owned(),
                    url: target.url.clone(),
                },
                owner: decider.clone(),
            };
            let readers = vec![decider.clone()];
            self.enqueue(
                DeliveryKind::Notification,
                &target.url,
                &event,
                request.id(),
                readers,
            )
            .await?;
        }
        Ok(())
    }

    /// Attempts deliveries as they fall due, and settles requests whose time ran out (which
    /// announces their expiry), until `stop` resolves.
    pub async fn run_deliveries(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(error) = self.expire_due().await {
                tracing::error!(%error, "settling expired approval requests");
            }
            let wait = match self.deliver_due().await {
                Ok(()) => self
                    .store
                    .next_delivery_at()
                    .ok()
                    .flatten()
                    .map(time::until)
                    .map_or(IDLE, |d| d.min(IDLE)),
                Err(error) => {
                    tracing::error!(%error, "webhook deliveries");
                    IDLE
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = self.deliveries_due.notified() => {}
                () = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
            }
        }
    }

    /// Attempts every delivery due now, a batch at a time.
    async fn deliver_due(self: &Arc<Self>) -> Result<(), Error> {
        loop {
            let due = self.store.due_deliveries(time::now(), BATCH)?;
            if due.is_empty() {
                return Ok(());
            }
            let mut attempts = tokio::task::JoinSet::new();
            let until = time::now().saturating_add(CLAIM_SECONDS);
            for delivery in due {
                // Another appliance sharing the store may have claimed it first.
                let Some(claimed) = self.store.claim_delivery(&delivery, until)? else {
                    continue;
                };
                let appliance = Arc::clone(self);
                attempts.spawn(async move { appliance.attempt(claimed).await });
            }
            if attempts.is_empty() {
                return Ok(());
            }
            while let Some(done) = attempts.join_next().await {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "a webhook delivery failed"),
                    Err(error) => tracing::error!(%error, "a webhook delivery task failed"),
                }
            }
        }
    }

    /// One attempt: the audit entry, the token's signature, the POST, the outcome stored.
    async fn attempt(&self, delivery: Delivery) -> Result<(), Error> {
        let now = time::now();
        let attempt = delivery.attempts + 1;
        let mut entry = delivery_entry(&delivery, Action::WebhookSend, Outcome::Sending);
        entry.reason = Some(format!("attempt {attempt}"));
        self.record(entry).await?;
        let content = hooks::signed_content(&delivery.id, now, delivery.body.as_bytes());
        let outcome = match self.sign_with_decision_key(content).await {
            Ok((signature, _)) => {
                let headers = [
                    ("webhook-id", delivery.id.clone()),
                    ("webhook-timestamp", now.to_string()),
                    ("webhook-signature", format!("v1a,{signature}")),
                ];
                match Target::parse(&delivery.url) {
                    Ok(target) => {
                        let body = Bytes::from(delivery.body.clone());
                        client::post(&target, &self.settings.webhook_policy, &headers, body).await
                    }
                    Err(e) => Err(e),
                }
            }
            // Standard Webhooks signs the whole body: a device with a message limit never will.
            Err(Error::Token(e @ crate::hsm::Error::MessageTooLong { .. })) => {
                Err(DeliveryError::Unsignable(e.to_string()))
            }
            Err(Error::Token(e)) => Err(DeliveryError::Unsigned(e.to_string())),
            Err(other) => return Err(other),
        };
        let (state, result) = match &outcome {
            Ok(status @ 200..=299) => (DeliveryState::Delivered, status.to_string()),
            Ok(410) => (DeliveryState::Gone, "410".to_owned()),
            Ok(status) => (DeliveryState::Pending, status.to_string()),
            Err(
                e @ (DeliveryError::Refused { .. }
                | DeliveryError::Url(_)
                | DeliveryError::Unsignable(_)),
            ) => (DeliveryState::Failed, e.to_string()),
            Err(e) => (DeliveryState::Pending, e.to_string()),
        };
        let mut after = delivery.clone();
        after.attempts = attempt;
        after.last_result = Some(result.clone());
        after.state = state;
        if state == DeliveryState::Pending {
            match next_delay(attempt, self.settings.webhook_retry) {
                Some(delay) => {
                    // `now` counts whole seconds and this moment may lie late in its second;
                    // one second more makes the wait at least `delay`, never less.
                    let secs = i64::try_from(delay.as_secs()).unwrap_or(i64::MAX);
                    after.next_attempt_at = now.saturating_add(secs).saturating_add(1);
                }
                None => after.state = DeliveryState::Failed,
            }
        }
        if after.state != DeliveryState::Pending {
            after.finished_at = Some(now);
        }
        self.store.update_delivery(&delivery, &after)?;
        self.store.flush().await?;
        if after.state != DeliveryState::Pending {
            let mut entry = delivery_entry(
                &after,
                Action::WebhookDelivery,
                Outcome::from_status(after.state.as_str()),
            );
            entry.reason = Some(result);
            self.record(entry).await?;
        } else {
            tracing::info!(id = %after.id, attempt, %result, "webhook delivery will be retried");
        }
        Ok(())
    }
}

fn delivery_entry(delivery: &Delivery, action: Action, result: Outcome) -> AuditEntry {
    let mut entry = AuditEntry {
        time: time::now(),
        action,
        result,
        actor: "appliance".to_owned(),
        actor_key: delivery.id.clone(),
        readers: delivery.readers.clone(),
        ..AuditEntry::default()
    };
    entry.about_request(&delivery.request_id);
    entry
}
