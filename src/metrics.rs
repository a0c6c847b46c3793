//! Prometheus metrics: one `Metrics` value (shared as `Arc<Metrics>`) owns the registry
//! and every series; the doors, the dispatcher and the telemetry layer update it, and
//! `GET /metrics` renders it in the text exposition format. Gauges that mirror the
//! database (requests by status, queue depth, in progress, pool use) are read at scrape
//! time, so they are exact and cost nothing between scrapes. No globals: a second `App`
//! in the same process (tests) has its own registry. Labels carry only bounded values
//! (method names, codes, route templates, reason codes), never ids or caller input.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::domain::model::ProviderName;
use crate::store::{PoolStats, QueueStats};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
    /// The gRPC status code name (`OK`, `INVALID_ARGUMENT`, …).
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/services/data/{version}/…`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `failed`, `retry` or `waiting`.
    pub outcome: &'static str,
    /// The failure or wait reason code; `none` for deliveries, `Transient` for retries.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiptLabels {
    /// `twilio`, `whatsapp` or `webhook`.
    pub provider: &'static str,
    /// `applied` (the state moved), `unchanged` (a duplicate or a late report) or
    /// `unknown` (no message of the channel has that id).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `delivered`, `retry` or `failed` (retries ran out, or 410 Gone).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: &'static str,
    /// `success`, `transient`, `permanent` or `timeout`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    /// The waiting reason (`SessionActive`, `SessionOpen`).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to ~33 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    rpc_requests: Family<RpcLabels, Counter>,
    rpc_duration: HistogramFamily<RpcLabels>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpLabels>,
    send_requests: Family<StatusLabels, Gauge>,
    queue_depth: Gauge,
    in_progress: Gauge,
    in_progress_limit: Gauge,
    oldest_due_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    expired_leases: Gauge,
    held_messages: Family<WaitLabels, Gauge>,
    messages: Family<OutcomeLabels, Counter>,
    receipts: Family<ReceiptLabels, Counter>,
    events: Family<EventLabels, Counter>,
    endpoints_disabled: Counter,
    provider_duration: HistogramFamily<ProviderLabels>,
    retries: Counter,
    lease_takeovers: Counter,
    pool_connections: Family<PoolLabels, Gauge>,
    /// Shared with the span export processor, which counts what it drops.
    spans_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every series, registered once. `spans_dropped` is the counter the span export
    /// queue increments (`telemetry::Telemetry::spans_dropped`); `in_progress_limit` is
    /// `dispatch.max_in_progress_requests`.
    pub fn new(spans_dropped: Counter, in_progress_limit: u32) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let m = Metrics {
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(latency_histogram),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            send_requests: Family::default(),
            queue_depth: Gauge::default(),
            in_progress: Gauge::default(),
            in_progress_limit: Gauge::default(),
            oldest_due_age: Gauge::default(),
            expired_leases: Gauge::default(),
            held_messages: Family::default(),
            messages: Family::default(),
            receipts: Family::default(),
            events: Family::default(),
            endpoints_disabled: Counter::default(),
            provider_duration: Family::new_with_constructor(latency_histogram),
            retries: Counter::default(),
            lease_takeovers: Counter::default(),
            pool_connections: Family::default(),
            spans_dropped,
            registry: Registry::default(),
        };
        m.in_progress_limit.set(i64::from(in_progress_limit));
        registry.register(
            "convmsg_rpc_requests",
            "gRPC calls by service, method and status code",
            m.rpc_requests.clone(),
        );
        registry.register("convmsg_rpc_duration_seconds", "gRPC call latency", m.rpc_duration.clone());
        registry.register("convmsg_http_requests", "REST calls by method, route and status", m.http_requests.clone());
        registry.register("convmsg_http_request_duration_seconds", "REST call latency", m.http_duration.clone());
        registry.register("convmsg_send_requests", "Send requests by status", m.send_requests.clone());
        registry.register("convmsg_queue_depth", "Pending send requests (due now or later)", m.queue_depth.clone());
        registry.register(
            "convmsg_in_progress_requests",
            "Send requests leased and in progress",
            m.in_progress.clone(),
        );
        registry.register(
            "convmsg_in_progress_limit",
            "The most send requests in progress at once, across replicas",
            m.in_progress_limit.clone(),
        );
        registry.register(
            "convmsg_queue_oldest_due_age_seconds",
            "How long the oldest due Pending request has waited since it became due (0 when none is due)",
            m.oldest_due_age.clone(),
        );
        registry.register(
            "convmsg_expired_leases",
            "In-progress requests whose lease expired and that no replica has taken over yet",
            m.expired_leases.clone(),
        );
        registry.register(
            "convmsg_held_messages",
            "Messages held by session gating, by waiting reason",
            m.held_messages.clone(),
        );
        registry.register("convmsg_messages", "Message outcomes recorded, by outcome and reason", m.messages.clone());
        registry.register(
            "convmsg_receipts",
            "Delivery receipts received, by provider and what they came to (unknown: no such message)",
            m.receipts.clone(),
        );
        registry.register("convmsg_events", "Status event deliveries attempted, by outcome", m.events.clone());
        registry.register(
            "convmsg_event_endpoints_disabled",
            "Event endpoints disabled because every delivery failed for events.disable_after_ms",
            m.endpoints_disabled.clone(),
        );
        registry.register(
            "convmsg_provider_duration_seconds",
            "Provider call latency by provider and outcome",
            m.provider_duration.clone(),
        );
        registry.register(
            "convmsg_message_retries",
            "Transient failures scheduled for another attempt",
            m.retries.clone(),
        );
        registry.register(
            "convmsg_lease_takeovers",
            "Claims of in-progress requests whose lease had expired (another replica died)",
            m.lease_takeovers.clone(),
        );
        registry.register(
            "convmsg_db_pool_connections",
            "Database pool connections by state",
            m.pool_connections.clone(),
        );
        registry.register(
            "convmsg_trace_spans_dropped",
            "Spans dropped because the export queue was full",
            m.spans_dropped.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// A registry of its own, for code run without an `App` (unit tests, tools).
    pub fn detached() -> Arc<Metrics> {
        Metrics::new(Counter::default(), 0)
    }

    pub fn observe_rpc(&self, service: &str, method: &str, code: &str, elapsed: Duration) {
        let labels = RpcLabels { service: service.to_owned(), method: method.to_owned(), code: code.to_owned() };
        self.rpc_requests.get_or_create(&labels).inc();
        self.rpc_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels { method: method.to_owned(), route: route.to_owned(), status };
        self.http_requests.get_or_create(&labels).inc();
        self.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    pub fn count_message(&self, outcome: &'static str, reason: &'static str) {
        self.messages.get_or_create(&OutcomeLabels { outcome, reason }).inc();
    }

    pub fn count_receipt(&self, provider: ProviderName, outcome: &'static str) {
        self.receipts.get_or_create(&ReceiptLabels { provider: provider.as_str(), outcome }).inc();
    }

    pub fn count_event(&self, outcome: &'static str) {
        self.events.get_or_create(&EventLabels { outcome }).inc();
    }

    pub fn count_endpoint_disabled(&self) {
        self.endpoints_disabled.inc();
    }

    pub fn observe_provider(&self, provider: ProviderName, outcome: &'static str, elapsed: Duration) {
        self.provider_duration
            .get_or_create(&ProviderLabels { provider: provider.as_str(), outcome })
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_retry(&self) {
        self.retries.inc();
    }

    pub fn count_takeovers(&self, n: u64) {
        self.lease_takeovers.inc_by(n);
    }

    /// Refreshes the database-backed gauges (called at scrape time, `now_ms` on the
    /// service's clock).
    pub fn set_queue(&self, stats: &QueueStats, now_ms: i64) {
        let gauge = |status| self.send_requests.get_or_create(&StatusLabels { status }).clone();
        gauge("Pending").set(stats.pending as i64);
        gauge("InProgress").set(stats.in_progress as i64);
        gauge("Completed").set(stats.completed as i64);
        self.queue_depth.set(stats.pending as i64);
        self.in_progress.set(stats.leased as i64);
        self.expired_leases.set(stats.expired_leases as i64);
        let age_ms = stats.oldest_due_ms.map(|due| (now_ms - due).max(0)).unwrap_or(0);
        self.oldest_due_age.set(age_ms as f64 / 1000.0);
        self.held_messages.clear();
        for (reason, n) in &stats.held_by_reason {
            self.held_messages.get_or_create(&WaitLabels { reason: reason.as_str() }).set(*n as i64);
        }
    }

    pub fn set_pool(&self, stats: PoolStats) {
        self.pool_connections.get_or_create(&PoolLabels { state: "idle" }).set(i64::from(stats.idle));
        self.pool_connections.get_or_create(&PoolLabels { state: "in_use" }).set(i64::from(stats.in_use));
    }

    /// The text exposition (OpenMetrics text, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reason::WaitReason;

    #[test]
    fn the_exposition_names_every_series_with_its_suffix() {
        let metrics = Metrics::detached();
        metrics.observe_rpc("convmsg.v1.ConversationMessages", "SendConversationMessages", "OK", Duration::ZERO);
        metrics.count_message("failed", "InvalidRecipient");
        let stats = QueueStats {
            pending: 3,
            in_progress: 2,
            completed: 9,
            leased: 1,
            expired_leases: 1,
            oldest_due_ms: Some(1_000),
            held_by_reason: vec![(WaitReason::SessionActive, 4)],
        };
        metrics.set_queue(&stats, 3_500);
        metrics.set_pool(PoolStats { idle: 2, in_use: 1 });
        let text = metrics.render();
        for needle in [
            "convmsg_rpc_requests_total{service=\"convmsg.v1.ConversationMessages\",method=\"SendConversationMessages\",code=\"OK\"} 1",
            "convmsg_rpc_duration_seconds_bucket",
            "convmsg_messages_total{outcome=\"failed\",reason=\"InvalidRecipient\"} 1",
            "convmsg_send_requests{status=\"Pending\"} 3",
            "convmsg_queue_depth 3",
            "convmsg_in_progress_requests 1",
            "convmsg_expired_leases 1",
            "convmsg_queue_oldest_due_age_seconds 2.5",
            "convmsg_held_messages{reason=\"SessionActive\"} 4",
            "convmsg_db_pool_connections{state=\"in_use\"} 1",
            "convmsg_trace_spans_dropped_total 0",
            "convmsg_lease_takeovers_total 0",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
