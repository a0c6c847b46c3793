//! Status events out: a background task that sends the outbox's due deliveries to the
//! tenants' event endpoints as Standard-Webhooks-signed JSON POSTs (`webhook-id` = the
//! event id, stable across retries, so receivers deduplicate), at least once.
//!
//! It runs on its own task with its own HTTP client (through the SSRF guard), at most
//! `events.max_in_flight` POSTs at a time, and never in the dispatcher's or the doors'
//! way: a dead endpoint costs only its own retries. A failed attempt is retried on the
//! dispatcher's retry schedule with jitter, later when the endpoint asks (`Retry-After`);
//! when retries run out the delivery is `Failed` (replayable); an endpoint that answered
//! nothing but failures for `events.disable_after_ms` is disabled, with a log event and
//! a metric. `410 Gone` fails the delivery at once, as Standard Webhooks asks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::EventsConfig;
use crate::dispatch::policy::RetryPolicy;
use crate::metrics::Metrics;
use crate::providers::guard::{Destinations, refusal_in};
use crate::providers::http::{build_guarded_client, retry_after, snippet};
use crate::providers::webhook::{decode_secret, sign};
use crate::service::events::Events;
use crate::store::sql::delivery::rfc3339;
use crate::store::{Attempt, AttemptResult, DueDelivery, Store, StoreError};

pub struct EventSender {
    store: Arc<dyn Store>,
    clock: SharedClock,
    /// Resolves through the SSRF guard, no proxy, no redirects.
    client: reqwest::Client,
    destinations: Arc<Destinations>,
    retry: RetryPolicy,
    config: EventsConfig,
    metrics: Arc<Metrics>,
    /// Signals a change that may have enqueued events (in this process); the poll
    /// covers the rest.
    signals: Events,
}

impl EventSender {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        config: EventsConfig,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
        signals: Events,
    ) -> anyhow::Result<EventSender> {
        let destinations = Arc::new(Destinations::new(config.allow_http, &config.allowed_networks)?);
        let client = build_guarded_client(Duration::from_millis(config.timeout_ms), destinations.clone())?;
        Ok(EventSender { store, clock, client, destinations, retry, config, metrics, signals })
    }

    /// Sends until `shutdown`; a failing database only delays.
    pub async fn run_until_stopped(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        loop {
            let sent = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %crate::error::error_chain(&e), "sending status events failed");
                    0
                }
            };
            if sent > 0 {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.signals.wait_for_events() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Claims what is due, sends it (at most `max_in_flight` at once), records the
    /// attempts; how many were sent.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let lease_until = now + i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX / 2);
        let due = self.store.claim_event_deliveries(now, lease_until, self.config.max_in_flight.max(1)).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let attempts = futures_util::future::join_all(due.iter().map(|d| self.attempt(d))).await;
        let n = attempts.len();
        let disable_before = self.clock.now_ms() - i64::try_from(self.config.disable_after_ms).unwrap_or(i64::MAX / 2);
        for disabled in self.store.record_event_attempts(&attempts, disable_before).await? {
            self.metrics.count_endpoint_disabled();
            tracing::warn!(
                tenant = %disabled.tenant,
                endpoint = %disabled.id,
                name = %disabled.name,
                after_ms = self.config.disable_after_ms,
                "event endpoint disabled: every delivery failed for too long; re-enable it with UpdateEventEndpoint"
            );
        }
        Ok(n)
    }

    /// One POST, and what it came to.
    async fn attempt(&self, due: &DueDelivery) -> AttemptResult {
        let attempt = match self.post(due).await {
            Ok(()) => Attempt::Delivered,
            Err(Failure::Gone(error)) => Attempt::Failed { error },
            Err(Failure::Again { error, retry_after }) => {
                let attempts = u32::try_from(due.attempts).unwrap_or(u32::MAX).saturating_add(1);
                match self.retry.next_delay_ms(attempts, retry_after, rand::random::<f64>()) {
                    Some(delay) => Attempt::Retry { at_ms: self.clock.now_ms() + delay as i64, error },
                    None => Attempt::Failed { error },
                }
            }
        };
        let outcome = match &attempt {
            Attempt::Delivered => "delivered",
            Attempt::Retry { .. } => "retry",
            Attempt::Failed { .. } => "failed",
        };
        self.metrics.count_event(outcome);
        AttemptResult {
            event_id: due.event_id.clone(),
            endpoint_id: due.endpoint_id.clone(),
            attempt,
            now_ms: self.clock.now_ms(),
        }
    }

    async fn post(&self, due: &DueDelivery) -> Result<(), Failure> {
        let again = |error: String| Failure::Again { error, retry_after: None };
        let url = reqwest::Url::parse(&due.url).map_err(|e| again(format!("the endpoint URL does not parse: {e}")))?;
        self.destinations.check_url(&url).map_err(|refused| again(refused.0))?;
        let key = decode_secret(&due.secret, "event_endpoints.secret").map_err(|e| again(e.to_string()))?;
        let data: serde_json::Value =
            serde_json::from_str(&due.data).map_err(|e| again(format!("stored event data does not parse: {e}")))?;
        let body = serde_json::to_vec(&serde_json::json!({
            "type": due.event_type,
            "timestamp": rfc3339(due.created_ms),
            "data": data,
        }))
        .map_err(|e| again(e.to_string()))?;
        let timestamp = self.clock.now_ms() / 1000;
        let signature = sign(&key, &due.event_id, timestamp, &body);
        let response = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &due.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| match refusal_in(&e) {
                Some(refused) => again(refused.0.clone()),
                None => again(format!("cannot reach the endpoint: {}", crate::error::error_chain(&e))),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let wait = retry_after(response.headers(), SystemTime::now());
        let answer = response.bytes().await.unwrap_or_default();
        let error = format!("HTTP {status}: {}", snippet(&answer));
        if status == reqwest::StatusCode::GONE {
            return Err(Failure::Gone(error));
        }
        Err(Failure::Again { error, retry_after: wait })
    }
}

enum Failure {
    /// 410: the endpoint asks not to be sent this again.
    Gone(String),
    Again {
        error: String,
        retry_after: Option<Duration>,
    },
}
