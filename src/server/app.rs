//! The application: opens the store, applies the config's declarations, binds the one
//! listener (port 0 works; `local_addr` tells the port) and serves gRPC and the HTTP
//! endpoints on it, in plain text or TLS, until told to stop — then shuts down in the
//! order a rolling update needs (see `run_until_stopped`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use http::StatusCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::Layer;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, RetentionConfig};
use crate::dispatch::Dispatcher;
use crate::events::EventSender;
use crate::grpc::admin::MessagingAdminApi;
use crate::grpc::pb::conversation_messages_server::ConversationMessagesServer;
use crate::grpc::pb::messaging_admin_server::MessagingAdminServer;
use crate::grpc::{self, ConversationMessagesApi, pb};
use crate::metrics::Metrics;
use crate::providers::{Provider, Providers};
use crate::rest;
use crate::server::admission::AdmissionLayer;
use crate::server::observe::ServerTelemetryLayer;
use crate::server::provision;
use crate::server::retention::run_retention_until_stopped;
use crate::service::Service;
use crate::service::auth::Authenticator;
use crate::service::events::Events;
use crate::store::Store;
use crate::store::postgres::{PgSettings, PgStore};
use crate::store::sqlite::{SqliteSettings, SqliteStore};
use crate::telemetry::Telemetry;

/// A `grpc.health.v1` service name for liveness probes: SERVING while the process runs,
/// also while it drains (the readiness name `""` turns NOT_SERVING then), so a probe does
/// not kill a pod that is shutting down on purpose.
pub const LIVENESS: &str = "liveness";

const CONVERSATION_MESSAGES: &str = <ConversationMessagesServer<ConversationMessagesApi> as NamedService>::NAME;
const MESSAGING_ADMIN: &str = <MessagingAdminServer<MessagingAdminApi> as NamedService>::NAME;
const STATUS_EVENTS: &str =
    <pb::status_events_server::StatusEventsServer<crate::grpc::events::StatusEventsApi> as NamedService>::NAME;

pub struct App {
    listener: TcpListener,
    router: axum::Router,
    health: HealthReporter,
    /// Set while the service accepts work; `/readyz` reports it.
    ready: Arc<AtomicBool>,
    service: Service,
    auth: Authenticator,
    dispatcher: Arc<Dispatcher>,
    /// Whether this process runs the dispatcher loop (`dispatch.enabled`).
    dispatch_enabled: bool,
    /// Sends status events to tenants' endpoints, on a task of its own.
    event_sender: Arc<EventSender>,
    /// Whether this process runs it (`events.enabled`).
    events_enabled: bool,
    /// A token generated because none existed; the caller shows it once.
    generated_token: Option<String>,
    /// What the retention task purges and how often.
    retention: RetentionConfig,
    clock: SharedClock,
    /// Set when the listener serves TLS (`[tls]`).
    tls: Option<Arc<rustls::ServerConfig>>,
    /// How often the token table is reloaded (`auth.token_reload_interval_ms`).
    token_reload_every: Duration,
    /// Connection cap and timeouts (`[connections]`).
    leash: crate::server::listener::Leash,
    /// How long the listener keeps accepting after health turned NOT_SERVING.
    stop_accepting_after: Duration,
    /// From the signal, how long sends and calls in flight may take to finish.
    drain_period: Duration,
    /// The tracer provider to flush when the service stops (none in in-process tests).
    telemetry: Telemetry,
    metrics: Arc<Metrics>,
}

/// Opens the store the database URL names.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url.as_str();
    if url.starts_with("sqlite:") {
        let settings = SqliteSettings {
            url: url.to_owned(),
            max_connections: config.database.max_connections,
            acquire_timeout: Duration::from_millis(config.database.acquire_timeout_ms),
            max_batch: config.database.accept_batch_max,
        };
        let store = SqliteStore::open(&settings).await.with_context(|| format!("opening {url}"))?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let settings = PgSettings {
            url: url.to_owned(),
            max_connections: config.database.max_connections,
            acquire_timeout: Duration::from_millis(config.database.acquire_timeout_ms),
            statement_timeout: Duration::from_millis(config.database.statement_timeout_ms),
            max_batch: config.database.accept_batch_max,
        };
        // Never print the URL itself: it may carry a password.
        let store = PgStore::open(&settings).await.context("opening the PostgreSQL database")?;
        return Ok(Arc::new(store));
    }
    anyhow::bail!("database_url: unsupported scheme; use sqlite://path/to/file.db or postgres://user@host/database")
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<App> {
        Self::build_with(config, Arc::new(SystemClock), Vec::new()).await
    }

    /// With the telemetry `telemetry::init` set up: its dropped-span counter is exported
    /// on `/metrics` and its spans are flushed when the service stops.
    pub async fn build_traced(config: Config, telemetry: Telemetry) -> anyhow::Result<App> {
        Self::build_full(config, Arc::new(SystemClock), Vec::new(), telemetry).await
    }

    /// With an injected clock, and providers that replace the configured ones of the
    /// same name (tests use in-process fakes).
    pub async fn build_with(
        config: Config,
        clock: SharedClock,
        extra_providers: Vec<Arc<dyn Provider>>,
    ) -> anyhow::Result<App> {
        Self::build_full(config, clock, extra_providers, Telemetry::disabled()).await
    }

    async fn build_full(
        config: Config,
        clock: SharedClock,
        extra_providers: Vec<Arc<dyn Provider>>,
        telemetry: Telemetry,
    ) -> anyhow::Result<App> {
        let metrics = Metrics::new(telemetry.spans_dropped(), config.dispatch.max_in_progress_requests);
        let store = open_store(&config).await?;
        let events = Events::default();
        let service = Service::new(store.clone(), clock.clone(), events.clone());
        let event_sender = Arc::new(
            EventSender::new(
                store.clone(),
                clock.clone(),
                config.events.clone(),
                config.dispatch.settings().retry,
                metrics.clone(),
                events.clone(),
            )
            .context("setting up status events ([events])")?,
        );
        let mut providers = Providers::from_config(&config.providers).context("setting up channel providers")?;
        for provider in extra_providers {
            providers.insert(provider);
        }
        let dispatcher = Arc::new(Dispatcher::new(
            store,
            providers,
            clock.clone(),
            events,
            config.dispatch.settings(),
            metrics.clone(),
        ));
        let generated_token = provision::tokens(&config, &service, clock.now_ms()).await.context("applying tokens")?;
        provision::records(&config, &service).await.context("applying the config's records")?;
        let auth = Authenticator::new(clock.clone());
        provision::reload_tokens(&service, &auth, clock.now_ms()).await?;

        let tls = match config.tls.files().map_err(anyhow::Error::msg)? {
            Some((cert, key)) => Some(crate::server::tls::server_config(cert, key)?),
            None => None,
        };
        let drain_period = Duration::from_millis(config.dispatch.drain_period_ms);
        let stop_accepting_after = Duration::from_millis(config.shutdown.stop_accepting_after_ms).min(drain_period);
        let (health, health_service) = tonic_health::server::health_reporter();
        let ready = Arc::new(AtomicBool::new(false));
        let router = routes(
            &config,
            service.clone(),
            auth.clone(),
            health_service,
            ready.clone(),
            metrics.clone(),
            clock.clone(),
        )?;
        let listener = TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let dispatch_enabled = config.dispatch.enabled;
        Ok(App {
            listener,
            router,
            health,
            ready,
            service,
            auth,
            dispatcher,
            dispatch_enabled,
            event_sender,
            events_enabled: config.events.enabled,
            generated_token,
            retention: config.retention.clone(),
            clock,
            tls,
            leash: crate::server::listener::Leash::from(&config.connections),
            token_reload_every: Duration::from_millis(config.auth.token_reload_interval_ms.max(10)),
            stop_accepting_after,
            drain_period,
            telemetry,
            metrics,
        })
    }

    /// The status-event sender, for driving it step by step (`run_once`) in tests.
    pub fn event_sender(&self) -> Arc<EventSender> {
        self.event_sender.clone()
    }

    /// The dispatcher, for driving delivery step by step (`run_once`) in tests.
    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        self.dispatcher.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The metrics `/metrics` shows.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn generated_token(&self) -> Option<&str> {
        self.generated_token.as_deref()
    }

    /// Serves until `shutdown` is cancelled, then stops in this order:
    /// 1. at once: health (`grpc.health.v1`, every service) turns NOT_SERVING and
    ///    `/readyz` 503, so Kubernetes takes the pod out of its endpoints; the dispatcher
    ///    claims nothing more and starts no new send;
    /// 2. after `shutdown.stop_accepting_after_ms` (for the endpoint change to reach
    ///    every node): the listener closes; open connections finish the calls in flight;
    /// 3. within `dispatch.drain_period_ms` of the signal: provider calls in flight finish
    ///    and are recorded, then every lease this process holds is released, so another
    ///    replica resumes that work at once; connections still open (watch streams) are cut;
    /// 4. it returns `Ok`, and `main` flushes telemetry and exits 0.
    ///
    /// Calls accepted until the listener closes are recorded and wait in the queue.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        for name in [LIVENESS, "", CONVERSATION_MESSAGES, MESSAGING_ADMIN, STATUS_EVENTS] {
            self.health.set_service_status(name, ServingStatus::Serving).await;
        }
        self.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            listen = %self.local_addr(),
            tls = self.tls.is_some(),
            version = crate::server::VERSION,
            "convmsg serving"
        );

        let reload = tokio::spawn(run_token_reload_until_stopped(
            self.service.clone(),
            self.auth.clone(),
            self.token_reload_every,
            shutdown.clone(),
        ));
        let retention = tokio::spawn(run_retention_until_stopped(
            self.service.store().clone(),
            self.clock.clone(),
            self.retention.clone(),
            shutdown.clone(),
        ));
        let dispatch =
            self.dispatch_enabled.then(|| tokio::spawn(self.dispatcher.clone().run_until_stopped(shutdown.clone())));
        let event_sending =
            self.events_enabled.then(|| tokio::spawn(self.event_sender.clone().run_until_stopped(shutdown.clone())));
        let (health, ready, signal) = (self.health.clone(), self.ready.clone(), shutdown.clone());
        let stop_accepting_after = self.stop_accepting_after;
        let stop_accepting = async move {
            signal.cancelled().await;
            ready.store(false, Ordering::SeqCst);
            for name in ["", CONVERSATION_MESSAGES, MESSAGING_ADMIN, STATUS_EVENTS] {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            tracing::info!(
                stop_accepting_after_ms = stop_accepting_after.as_millis() as u64,
                "shutting down: health NOT_SERVING, no more claims"
            );
            tokio::time::sleep(stop_accepting_after).await;
        };
        // The drain period counts from the signal, not from when the listener closes.
        let cut = CancellationToken::new();
        let timer = tokio::spawn({
            let (signal, cut, drain_period) = (shutdown.clone(), cut.clone(), self.drain_period);
            async move {
                signal.cancelled().await;
                tokio::time::sleep(drain_period).await;
                cut.cancel();
            }
        });
        let deadline = cut.cancelled_owned();
        crate::server::listener::serve_until_stopped(
            self.listener,
            self.router,
            self.tls,
            self.leash,
            stop_accepting,
            deadline,
        )
        .await;
        timer.abort();
        shutdown.cancel();
        let _ = reload.await;
        let _ = retention.await;
        if let Some(dispatch) = dispatch {
            dispatch.await.context("the dispatcher task failed")?;
        }
        if let Some(sending) = event_sending {
            // A POST cut here is not recorded: its lease runs out and it is sent again.
            sending.abort();
            let _ = sending.await;
        }
        tracing::info!("convmsg stopped");
        // Last: the spans of the drain above go out too.
        self.telemetry.shutdown().await;
        Ok(())
    }
}

/// Refreshes the in-memory token table from the store every `every` (`auth.
/// token_reload_interval_ms`): tokens granted, removed or revoked by another replica
/// take effect here within that time.
async fn run_token_reload_until_stopped(
    service: Service,
    auth: Authenticator,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {
                if let Err(e) = provision::reload_tokens(&service, &auth, service.clock().now_ms()).await {
                    tracing::warn!(error = format!("{e:#}"), "token reload failed; keeping the previous table");
                }
            }
        }
    }
}

/// Every route on the one listener. Business services (gRPC and the REST bridge) sit
/// behind admission and authentication; health, the probes and `/metrics` do not. The
/// telemetry layer wraps everything: server spans and call metrics for the business
/// calls, in one place.
fn routes(
    config: &Config,
    service: Service,
    auth: Authenticator,
    health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
) -> anyhow::Result<axum::Router> {
    let store = service.store().clone();
    let admission = AdmissionLayer::new(
        config.admission.max_concurrent_requests,
        Duration::from_millis(config.admission.queue_timeout_ms),
        Duration::from_millis(config.admission.request_timeout_ms),
        Duration::from_millis(config.admission.retry_after_ms),
    );
    let bridge = rest::router(service.clone(), auth.clone(), config.rest.clone()).layer(admission.clone());
    let receipts = crate::receipts::router(crate::receipts::ReceiptsState {
        service: service.clone(),
        config: config.receipts.clone(),
        twilio_auth_token: config.providers.twilio.auth_token.clone().filter(|t| !t.trim().is_empty()),
        webhook_keys: crate::providers::webhook::SigningKeys::from_config(&config.providers.webhook)?,
        metrics: metrics.clone(),
        tls: config.tls.files().ok().flatten().is_some(),
    })
    .layer(admission.clone())
    .layer(axum::extract::DefaultBodyLimit::max(config.rest.body_limit_bytes));
    let interceptor = grpc::auth_interceptor(auth.clone());
    // Reflection in both versions: v1, and v1alpha for the clients that still ask only
    // it (grpcio-reflection's descriptor database, grpcurl before 1.9, most GUI clients).
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1().context("building reflection v1")?;
    let reflection_v1alpha = reflection_builder().build_v1alpha().context("building reflection v1alpha")?;
    let conversation = ConversationMessagesServer::with_interceptor(
        ConversationMessagesApi { service: service.clone() },
        interceptor.clone(),
    );
    let status_events = pb::status_events_server::StatusEventsServer::with_interceptor(
        crate::grpc::events::StatusEventsApi {
            service: service.clone(),
            destinations: Arc::new(crate::providers::guard::Destinations::new(
                config.events.allow_http,
                &config.events.allowed_networks,
            )?),
        },
        interceptor.clone(),
    );
    let admin = MessagingAdminServer::with_interceptor(MessagingAdminApi { service, auth }, interceptor.clone());
    // Outside admission: tonic's answers to undecodable requests become INVALID_ARGUMENT.
    let malformed = crate::grpc::malformed::MalformedLayer;
    let grpc = tonic::service::Routes::new(health_service)
        .add_service(malformed.layer(admission.layer(conversation)))
        .add_service(malformed.layer(admission.layer(admin)))
        .add_service(malformed.layer(admission.layer(status_events)))
        .add_service(malformed.layer(admission.layer(InterceptedService::new(reflection, interceptor.clone()))))
        .add_service(malformed.layer(admission.layer(InterceptedService::new(reflection_v1alpha, interceptor))));
    let router = grpc.into_axum_router().merge(bridge).merge(receipts).route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get({
            let store = store.clone();
            move || {
                // Not ready while shutting down, and while the database is known down
                // (calls would only fail): the load balancer sends them elsewhere.
                let answer = if !ready.load(Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                } else if !store.is_available() {
                    (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
                } else {
                    (StatusCode::OK, "ready")
                };
                async move { answer }
            }
        }),
    );
    let scraped = metrics.clone();
    let router = router.route(
        "/metrics",
        get(move || {
            let (metrics, store, clock) = (scraped.clone(), store.clone(), clock.clone());
            async move { render_metrics(&metrics, store.as_ref(), clock.now_ms()).await }
        }),
    );
    // Unknown paths: gRPC UNIMPLEMENTED to gRPC callers, Salesforce's 404 NOT_FOUND to the rest.
    let router = router.fallback(rest::fallback).layer(ServerTelemetryLayer::new(metrics));
    Ok(router)
}

/// `GET /metrics`: the database-backed gauges are refreshed first, so a scrape sees the
/// queue as it is now. When the database cannot answer, the rest is still served.
async fn render_metrics(metrics: &Metrics, store: &dyn Store, now_ms: i64) -> axum::response::Response {
    use axum::response::IntoResponse;
    match store.queue_stats(now_ms).await {
        Ok(stats) => metrics.set_queue(&stats, now_ms),
        Err(e) => tracing::warn!(error = %crate::error::error_chain(&e), "reading queue stats for /metrics failed"),
    }
    metrics.set_pool(store.pool_stats());
    ([(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.render())
        .into_response()
}
