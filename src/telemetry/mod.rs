//! Telemetry: logs, traces and the trace context that travels with a request.
//!
//! - Logs: `tracing` to stdout as JSON (default) or human-readable text, with the
//!   current span's OpenTelemetry `trace_id` and `span_id` on every line written inside
//!   a span. `RUST_LOG` overrides the configured filter. Secrets, tokens and message
//!   bodies are never logged.
//! - Traces: `tracing` spans become OpenTelemetry spans (tracing-opentelemetry). They
//!   are exported over OTLP (gRPC or HTTP/protobuf) only when an endpoint is configured,
//!   through a bounded queue that drops (and counts) rather than waits (`export`).
//! - Context: W3C `traceparent`/`tracestate` and `baggage` are read from incoming
//!   headers (`server::observe` builds the server spans); the accept span's context is stored with
//!   a send request and restored by the dispatcher, so one trace runs from the caller to
//!   the provider call.
//!
//! It must not install anything process-wide except the `tracing` subscriber (once, by
//! `init`); the span export queue and its drop counter belong to the returned `Telemetry`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::{Extractor, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus_client::metrics::counter::Counter;
use tracing::dispatcher::WeakDispatch;
use tracing::{Level, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{Format, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub mod config;
mod export;

use config::{LogConfig, LogFormat, OtlpProtocol, TelemetryConfig};

/// `a: b: c` from an error and its sources: how every layer logs an error in full.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The default `service.name` when neither `OTEL_SERVICE_NAME` nor
/// `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const SERVICE_NAME: &str = "convmsg";

/// How long the end of `run_until_stopped` waits for the last spans to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What `init` set up: the tracer provider (flushed and shut down at the end) and the
/// counter of spans the export queue dropped (registered in `Metrics`).
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    spans_dropped: Counter,
}

impl Telemetry {
    /// No tracer provider (in-process tests, tools): nothing to flush, nothing dropped.
    pub fn disabled() -> Telemetry {
        Telemetry { provider: None, spans_dropped: Counter::default() }
    }

    /// The dropped-spans counter, shared with the export queue.
    pub fn spans_dropped(&self) -> Counter {
        self.spans_dropped.clone()
    }

    /// Exports what is queued and stops the exporter, within a bounded time; a dead
    /// collector costs at most that time at shutdown.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        let flush = tokio::task::spawn_blocking(move || {
            let flushed = provider.force_flush();
            let shut = provider.shutdown_with_timeout(FLUSH_TIMEOUT);
            flushed.and(shut)
        });
        match tokio::time::timeout(FLUSH_TIMEOUT * 2, flush).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "flushing spans at shutdown failed; some are lost"),
            Ok(Err(e)) => tracing::warn!(error = %e, "flushing spans at shutdown failed; some are lost"),
            Err(_) => tracing::warn!("flushing spans at shutdown took too long; some are lost"),
        }
    }
}

/// Where spans go, resolved from the standard variables and `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportTarget {
    pub protocol: OtlpProtocol,
    /// `None`: the exporter reads `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` itself (it knows
    /// that the signal-specific one is used verbatim and the generic one gets `/v1/traces`).
    pub endpoint: Option<String>,
}

/// Export is on when an endpoint is set: the standard variables win over the config.
pub fn export_target(config: &TelemetryConfig, env: impl Fn(&str) -> Option<String>) -> Option<ExportTarget> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL")) {
        Some(p) if p.trim() == "http/protobuf" => OtlpProtocol::HttpProtobuf,
        Some(_) => OtlpProtocol::Grpc,
        None => config.otlp_protocol,
    };
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        return Some(ExportTarget { protocol, endpoint: None });
    }
    let base = config.otlp_endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty())?;
    let endpoint = match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    };
    Some(ExportTarget { protocol, endpoint: Some(endpoint) })
}

/// The resource: the SDK's detectors read `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES`; `convmsg` is the name when neither gives one.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if named { builder.build() } else { builder.with_service_name(SERVICE_NAME).build() }
}

fn build_exporter(target: &ExportTarget, timeout: Duration) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let exporter = match target.protocol {
        OtlpProtocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_timeout(timeout);
            if let Some(endpoint) = &target.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            builder.build()
        }
        OtlpProtocol::HttpProtobuf => {
            // reqwest is built without a default TLS crypto provider: install ring's.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_timeout(timeout);
            if let Some(endpoint) = &target.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            builder.build()
        }
    };
    exporter.context("building the OTLP span exporter")
}

/// Builds the tracer provider — always, so that trace ids reach logs and the trace
/// context propagates even when nothing is exported — with the export queue when an
/// endpoint is configured. The sampler comes from `OTEL_TRACES_SAMPLER[_ARG]` (the SDK
/// reads them; default: parent-based, always on).
pub fn tracer_provider(config: &TelemetryConfig) -> anyhow::Result<(SdkTracerProvider, Counter)> {
    let dropped = Counter::default();
    let mut builder = SdkTracerProvider::builder().with_resource(resource());
    if let Some(target) = export_target(config, |name| std::env::var(name).ok()) {
        let settings = export::QueueSettings {
            queue_size: config.export_queue_size,
            batch_size: config.export_batch_size,
            interval: Duration::from_millis(config.export_interval_ms.max(1)),
            export_timeout: Duration::from_millis(config.export_timeout_ms.max(1)),
        };
        let timeout = settings.export_timeout;
        let exporter_target = target.clone();
        let processor = export::QueueProcessor::start(settings, dropped.clone(), move || {
            build_exporter(&exporter_target, timeout)
        })?;
        builder = builder.with_span_processor(processor);
    }
    Ok((builder.build(), dropped))
}

/// Installs the global subscriber (logs + spans) and returns the telemetry to hand to
/// the `App`. A second call (tests) installs nothing but still returns a provider.
pub fn init(log: &LogConfig, config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let (provider, spans_dropped) = tracer_provider(config)?;
    let tracer = provider.tracer(SERVICE_NAME);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let dispatch = Arc::new(OnceLock::new());
    let fmt = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(WithTraceIds {
                inner: Format::default().json().flatten_event(true).with_current_span(true),
                dispatch: dispatch.clone(),
                json: true,
            })
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .event_format(WithTraceIds {
                inner: Format::default().with_target(true).with_ansi(false),
                dispatch: dispatch.clone(),
                json: false,
            })
            .with_filter(filter)
            .boxed(),
    };
    // Spans of convmsg's own code become OpenTelemetry spans whatever the log filter
    // says (a quiet log must not cut traces); other crates' spans stay out.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_threads(false)
        .with_filter(Targets::new().with_target("convmsg", Level::INFO));
    if tracing_subscriber::registry().with(otel).with(fmt).try_init().is_ok() {
        tracing::dispatcher::get_default(|current| {
            let _ = dispatch.set(current.downgrade());
        });
    }
    Ok(Telemetry { provider: Some(provider), spans_dropped })
}

/// Adds the current span's OpenTelemetry ids to every line: top-level `trace_id` and
/// `span_id` fields in JSON, ` trace_id=… span_id=…` at the end of a text line.
struct WithTraceIds<F> {
    inner: F,
    /// The installed dispatcher, to ask the OpenTelemetry layer for a span's context.
    dispatch: Arc<OnceLock<WeakDispatch>>,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let ids = ctx.lookup_current().and_then(|span| {
            let dispatch = self.dispatch.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let otel = cx.span();
            let sc = otel.span_context();
            sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        if self.json && line.starts_with('{') {
            writer.write_str(&format!("{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\","))?;
            writer.write_str(&line[1..])
        } else {
            let body = line.strip_suffix('\n').unwrap_or(&line);
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}

/// A caller's W3C `traceparent` value, kept with a send request when no span context is
/// available (no tracer installed); anything that does not look like one (four
/// dash-separated parts, at most 128 characters) is dropped rather than stored.
pub fn traceparent(value: Option<&str>) -> Option<String> {
    let value = value?;
    (value.len() <= 128 && value.split('-').count() == 4).then(|| value.to_owned())
}

/// A platform key (phone number, page id, …) as logs may show it: its last two
/// characters, the rest starred — enough to tell keys apart, not to contact anyone.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let hidden = chars.len().saturating_sub(2);
    let kept: String = chars[hidden..].iter().collect();
    format!("{}{kept}", "*".repeat(hidden))
}

/// W3C trace context and baggage, built once (it is asked of on every call).
fn propagator() -> &'static TextMapCompositePropagator {
    static PROPAGATOR: std::sync::LazyLock<TextMapCompositePropagator> = std::sync::LazyLock::new(|| {
        TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ])
    });
    &PROPAGATOR
}

/// Reads `traceparent`, `tracestate` and `baggage` from HTTP headers or gRPC metadata.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The caller's context (remote parent and baggage) from incoming headers.
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    propagator().extract(&HeaderExtractor(headers))
}

/// The span's W3C headers (`traceparent`, `tracestate` when not empty); empty when the
/// span has no valid OpenTelemetry context (no tracer installed, or disabled).
fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let cx = span.context();
    let mut headers = HashMap::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut headers);
    }
    headers
}

/// The span's `traceparent`, for an outgoing call.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    inject(span).remove("traceparent")
}

/// The span's context as stored with a send request: `traceparent`, then a newline and
/// `tracestate` when there is one (a newline never occurs in either header).
pub fn stored_context_of(span: &tracing::Span) -> Option<String> {
    let mut headers = inject(span);
    let parent = headers.remove("traceparent")?;
    Some(match headers.remove("tracestate").filter(|s| !s.is_empty()) {
        Some(state) => format!("{parent}\n{state}"),
        None => parent,
    })
}

/// The context `stored_context_of` (or an older, bare `traceparent`) wrote.
pub fn restore_context(stored: &str) -> opentelemetry::Context {
    let (parent, state) = stored.split_once('\n').unwrap_or((stored, ""));
    let mut headers = HashMap::from([("traceparent".to_owned(), parent.to_owned())]);
    if !state.is_empty() {
        headers.insert("tracestate".to_owned(), state.to_owned());
    }
    TraceContextPropagator::new().extract(&headers)
}

/// Makes `cx` the parent of `span` (which must not have been entered yet).
pub fn set_parent(span: &tracing::Span, cx: opentelemetry::Context) {
    // Fails only when the span was already started or is disabled: then it stays a root.
    let _ = span.set_parent(cx);
}

/// Flushes the log lines still buffered on standard output, last thing before the
/// process exits (the trace exporter is flushed by `App::run_until_stopped`).
pub fn flush() {
    use std::io::Write;
    let _ = std::io::stdout().lock().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn export_is_off_without_an_endpoint_and_the_variables_win_over_the_config() {
        let mut config = TelemetryConfig::default();
        assert_eq!(export_target(&config, env_of(&[])), None);
        config.otlp_endpoint = Some("http://collector:4318/".into());
        config.otlp_protocol = OtlpProtocol::HttpProtobuf;
        assert_eq!(
            export_target(&config, env_of(&[])),
            Some(ExportTarget {
                protocol: OtlpProtocol::HttpProtobuf,
                endpoint: Some("http://collector:4318/v1/traces".into())
            })
        );
        let env =
            env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(export_target(&config, env), Some(ExportTarget { protocol: OtlpProtocol::Grpc, endpoint: None }));
    }

    #[test]
    fn platform_keys_are_masked_but_for_their_last_two_characters() {
        assert_eq!(mask("+15550100"), "*******00");
        assert_eq!(mask("ab"), "ab");
        assert_eq!(mask(""), "");
    }

    #[test]
    fn a_stored_context_round_trips_with_its_tracestate() {
        let stored = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\nvendor=value";
        let cx = restore_context(stored);
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(sc.trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert_eq!(sc.trace_state().header(), "vendor=value");
        assert!(sc.is_remote());
    }
}
