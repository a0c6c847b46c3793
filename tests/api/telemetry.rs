//! Telemetry end to end. Traces need the process-wide `tracing` subscriber that
//! `convmsg serve` installs, so those tests run the real binary (a process of their
//! own, so the tests in this binary keep running in parallel) with the real OTLP
//! exporter pointed at a test collector — a tonic server implementing the OTLP trace
//! service — and the real `webhook` provider pointed at a local receiver. Metrics are
//! per `App`, so that test runs in-process.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use convmsg::grpc::pb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::metadata::MetadataValue;

use crate::helpers::{BearerToken, spawn_accept_only};

/// The caller's trace: a known trace id and parent span id.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// Collects every span exported to it, with its resource's `service.name`.
#[derive(Clone, Default)]
pub(crate) struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    service_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            if let Some(resource) = &resource_spans.resource {
                for kv in &resource.attributes {
                    if kv.key == "service.name" {
                        self.service_names
                            .lock()
                            .unwrap()
                            .push(string_of(kv.value.as_ref().and_then(|v| v.value.as_ref())));
                    }
                }
            }
            for scope in resource_spans.scope_spans {
                self.spans.lock().unwrap().extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// The names of the spans exported so far.
    pub(crate) fn span_names(&self) -> Vec<String> {
        self.spans.lock().unwrap().iter().map(|s| s.name.clone()).collect()
    }
}

/// A test collector on 127.0.0.1; returns it and its URL.
pub(crate) async fn start_collector() -> (Collector, String) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = tonic::service::Routes::new(TraceServiceServer::new(collector.clone())).into_axum_router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (collector, url)
}

fn string_of(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| string_of(kv.value.as_ref().and_then(|v| v.value.as_ref())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `traceparent` headers the webhook receiver saw.
#[derive(Clone, Default)]
struct Receiver {
    traceparents: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> &'static str {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    r.traceparents.lock().unwrap().push(traceparent);
    "{}"
}

async fn start_receiver() -> (Receiver, String) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (receiver, hook)
}

struct Server {
    child: tokio::process::Child,
    addr: String,
    /// Every line the server logged.
    logs: Arc<Mutex<Vec<String>>>,
}

/// `convmsg serve` with `config` and `env` (and none of the test runner's `OTEL_*`).
async fn start_server(config: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"));
    command.args(["serve", "--config"]).arg(config);
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") || name.starts_with("CONVMSG_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true).spawn().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if log["message"] == "convmsg serving" {
                return log["listen"].as_str().unwrap().to_owned();
            }
        }
        panic!("the server exited before serving");
    })
    .await
    .expect("the server started");
    let kept = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Server { child, addr, logs }
}

/// A config with a webhook channel to `hook`, one definition and `users` end users.
fn write_config(
    dir: &std::path::Path,
    db: &str,
    token: &str,
    hook: &str,
    users: usize,
    extra: &str,
) -> std::path::PathBuf {
    crate::helpers::write_webhook_config(
        dir,
        db,
        token,
        hook,
        users,
        &format!("{extra}\n[dispatch]\npoll_interval_ms = 50\n"),
    )
}

async fn clients(
    addr: &str,
    token: &str,
) -> (
    pb::messaging_admin_client::MessagingAdminClient<crate::helpers::Authed>,
    pb::conversation_messages_client::ConversationMessagesClient<crate::helpers::Authed>,
) {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let bearer = BearerToken(Some(token.to_owned()));
    (
        pb::messaging_admin_client::MessagingAdminClient::with_interceptor(channel.clone(), bearer.clone()),
        pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(channel, bearer),
    )
}

/// Sends SIGTERM and waits for the process to end.
async fn stop(mut server: Server, within: Duration) {
    let pid = server.child.id().expect("running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    tokio::time::timeout(within, server.child.wait()).await.expect("the server stopped in time").unwrap();
}

#[tokio::test]
async fn one_trace_runs_from_the_caller_through_accept_and_dispatch_to_the_provider() {
    let (collector, collector_url) = start_collector().await;
    let (receiver, hook) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::TestDatabase::create().await;
    let token = convmsg::domain::principal::generate_token();
    let telemetry = format!(
        "[telemetry]\notlp_endpoint = \"{collector_url}\"\notlp_protocol = \"grpc\"\nexport_interval_ms = 100\n"
    );
    let config = write_config(dir.path(), &db.url, &token, &hook, 1, &telemetry);
    let server = start_server(&config, &[]).await;
    let (mut admin, mut conv) = clients(&server.addr, &token).await;
    let ids = crate::helpers::all_end_user_ids(&mut admin).await;

    let mut request = tonic::Request::new(pb::SendConversationMessagesRequest {
        message_definition_name: "Ping".into(),
        messaging_end_user_ids: ids,
        ..Default::default()
    });
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    request.metadata_mut().insert("traceparent", MetadataValue::try_from(traceparent.as_str()).unwrap());
    request.metadata_mut().insert("tracestate", MetadataValue::from_static("caller=1"));
    let reply = conv.send_conversation_messages(request).await.unwrap().into_inner();
    let identifier = reply.message_identifiers[0].clone();

    // The provider call reached the receiver, and every span reached the collector.
    let spans = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let spans = collector.spans.lock().unwrap().clone();
            let named = |name: &str| spans.iter().any(|s| s.name == name && hex(&s.trace_id) == TRACE_ID);
            if !receiver.traceparents.lock().unwrap().is_empty()
                && named("provider.send")
                && named("dispatch.process")
                && named("dispatch.gate")
                && named("dispatch.render")
                && named("convmsg.v1.ConversationMessages/SendConversationMessages")
            {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the delivery and its spans arrived");

    let in_trace: Vec<&Span> = spans.iter().filter(|s| hex(&s.trace_id) == TRACE_ID).collect();
    let one = |name: &str| -> &Span {
        let found: Vec<&&Span> = in_trace.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span in the caller's trace: {in_trace:#?}");
        found[0]
    };

    // The accept (server) span: a child of the caller's span, RPC conventions.
    let accept = one("convmsg.v1.ConversationMessages/SendConversationMessages");
    assert_eq!(accept.kind, SpanKind::Server as i32);
    assert_eq!(hex(&accept.parent_span_id), CALLER_SPAN_ID);
    assert_eq!(attr(accept, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attr(accept, "rpc.service").as_deref(), Some("convmsg.v1.ConversationMessages"));
    assert_eq!(attr(accept, "rpc.method").as_deref(), Some("SendConversationMessages"));
    assert_eq!(attr(accept, "rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(attr(accept, "convmsg.request_id"), Some(reply.request_id.clone()));
    assert_eq!(attr(accept, "convmsg.tenant").as_deref(), Some("default"));
    assert_eq!(attr(accept, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(accept, "network.peer.address").as_deref(), Some("127.0.0.1"));

    // Delivery continues the accept span's trace.
    let process = one("dispatch.process");
    assert_eq!(process.parent_span_id, accept.span_id, "dispatch.process is a child of the accept span");
    assert_eq!(attr(process, "convmsg.request_id"), Some(reply.request_id.clone()));
    assert_eq!(attr(process, "convmsg.tenant").as_deref(), Some("default"));
    assert!(attr(process, "convmsg.queue_wait_ms").is_some_and(|ms| ms.parse::<i64>().unwrap() >= 0));
    for name in ["dispatch.gate", "dispatch.render", "provider.send"] {
        let span = one(name);
        assert_eq!(span.parent_span_id, process.span_id, "{name} is a child of dispatch.process");
        assert_eq!(attr(span, "messaging.message.id"), Some(identifier.clone()), "{name}");
    }

    // The provider call: a client span with HTTP attributes and no secret in the URL.
    let send = one("provider.send");
    assert_eq!(send.kind, SpanKind::Client as i32);
    assert_eq!(attr(send, "convmsg.provider").as_deref(), Some("webhook"));
    assert_eq!(attr(send, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attr(send, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(send, "server.address").as_deref(), Some("127.0.0.1"));
    let url = attr(send, "url.full").expect("url.full");
    assert!(url.starts_with("http://127.0.0.1:") && !url.contains("/hook"), "webhook paths are not shown: {url}");

    // The provider saw the provider.send span as its parent, in the caller's trace.
    let seen = receiver.traceparents.lock().unwrap().clone();
    assert_eq!(seen, vec![format!("00-{TRACE_ID}-{}-01", hex(&send.span_id))]);
    assert!(collector.service_names.lock().unwrap().iter().all(|n| n == "convmsg"));

    // Log lines written inside a span carry its trace and span ids.
    stop(server_with_logs_checked(server, &reply.request_id), Duration::from_secs(20)).await;
}

/// Checks that the accept log line carries the caller's trace id, and hands the server back.
fn server_with_logs_checked(server: Server, request_id: &str) -> Server {
    let logs = server.logs.lock().unwrap().clone();
    let accepted = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "request accepted" && l["request_id"] == request_id)
        .expect("the accept was logged");
    assert_eq!(accepted["trace_id"], TRACE_ID, "{accepted}");
    assert!(accepted["span_id"].as_str().is_some_and(|s| s.len() == 16), "{accepted}");
    server
}

#[tokio::test]
async fn with_the_collector_down_requests_stay_fast_and_spans_beyond_the_queue_are_dropped_and_counted() {
    // A port nothing listens on: every export fails.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (receiver, hook) = start_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::TestDatabase::create().await;
    let token = convmsg::domain::principal::generate_token();
    // A queue of 2; the batch is larger, so the queue is exported only every minute.
    let telemetry = "[telemetry]\nexport_queue_size = 2\nexport_batch_size = 64\nexport_interval_ms = 60000\n";
    let config = write_config(dir.path(), &db.url, &token, &hook, 1, telemetry);
    // The endpoint comes from the standard variables, over HTTP/protobuf.
    let server = start_server(
        &config,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    )
    .await;
    let (mut admin, mut conv) = clients(&server.addr, &token).await;
    let ids = crate::helpers::all_end_user_ids(&mut admin).await;

    for _ in 0..10 {
        let started = Instant::now();
        conv.send_conversation_messages(pb::SendConversationMessagesRequest {
            message_definition_name: "Ping".into(),
            messaging_end_user_ids: ids.clone(),
            ..Default::default()
        })
        .await
        .expect("accepted while the collector is down");
        assert!(started.elapsed() < Duration::from_secs(2), "a send took {:?}", started.elapsed());
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while receiver.traceparents.lock().unwrap().len() < 10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every message was delivered");

    let text = reqwest::get(format!("http://{}/metrics", server.addr)).await.unwrap().text().await.unwrap();
    let dropped = metric(&text, "convmsg_trace_spans_dropped_total");
    assert!(dropped > 0.0, "spans beyond the queue are counted as dropped:\n{text}");
    // Shutting down with a dead collector is bounded too.
    stop(server, Duration::from_secs(20)).await;
}

/// The value of the series `name` (with its labels, as written) in a text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_are_served_without_a_token_and_move_with_sends_and_deliveries() {
    let app = spawn_accept_only().await;
    let fixture = app.provision(1).await;
    let url = format!("{}/metrics", app.url());
    let scrape = || async {
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };
    let sent = r#"convmsg_rpc_requests_total{service="convmsg.v1.ConversationMessages",method="SendConversationMessages",code="OK"}"#;
    let invalid = r#"convmsg_rpc_requests_total{service="convmsg.v1.ConversationMessages",method="SendConversationMessages",code="INVALID_ARGUMENT"}"#;
    let delivered = r#"convmsg_messages_total{outcome="delivered",reason="none"}"#;
    let provider = r#"convmsg_provider_duration_seconds_count{provider="log",outcome="success"}"#;
    let rest = r#"convmsg_http_requests_total{method="GET",route="/services/data/{version}",status="200"}"#;

    let before = scrape().await;
    assert_eq!(metric(&before, sent), 0.0);
    assert_eq!(metric(&before, r#"convmsg_send_requests{status="Pending"}"#), 0.0);
    assert_eq!(metric(&before, "convmsg_in_progress_limit"), 200.0, "{before}");
    assert!(before.contains(r#"convmsg_db_pool_connections{state="idle"}"#), "{before}");
    assert!(before.contains("convmsg_trace_spans_dropped_total 0"), "{before}");

    let mut conv = app.conv().await;
    conv.send_conversation_messages(fixture.request()).await.unwrap();
    let mut bad = fixture.request();
    bad.message_definition_name = "NoSuchDefinition".into();
    assert!(conv.send_conversation_messages(bad).await.is_err());
    let rest_call = reqwest::Client::new()
        .get(format!("{}/services/data/v65.0", app.url()))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(rest_call.status(), 200);

    let accepted = scrape().await;
    assert_eq!(metric(&accepted, sent), 1.0, "{accepted}");
    assert_eq!(metric(&accepted, invalid), 1.0, "{accepted}");
    assert_eq!(metric(&accepted, rest), 1.0, "{accepted}");
    assert!(accepted.contains(r#"convmsg_rpc_duration_seconds_count{service="convmsg.v1.ConversationMessages",method="SendConversationMessages",code="OK"} 1"#), "{accepted}");
    assert_eq!(metric(&accepted, r#"convmsg_send_requests{status="Pending"}"#), 1.0);
    assert_eq!(metric(&accepted, "convmsg_queue_depth"), 1.0);
    assert_eq!(metric(&accepted, delivered), 0.0);

    app.dispatcher.run_once().await.unwrap();
    let done = scrape().await;
    assert_eq!(metric(&done, delivered), 1.0, "{done}");
    assert_eq!(metric(&done, provider), 1.0, "{done}");
    assert_eq!(metric(&done, r#"convmsg_send_requests{status="Completed"}"#), 1.0);
    assert_eq!(metric(&done, "convmsg_queue_depth"), 0.0);
    assert_eq!(metric(&done, "convmsg_in_progress_requests"), 0.0);
    assert_eq!(metric(&done, "convmsg_lease_takeovers_total"), 0.0);
    // Probes and the scrape itself are not counted as business calls.
    assert!(!done.contains("/metrics") && !done.contains("grpc.health"), "{done}");
}

#[tokio::test]
async fn a_claim_of_a_request_whose_lease_expired_is_counted_as_a_takeover() {
    let app = spawn_accept_only().await;
    let fixture = app.provision(1).await;
    app.conv().await.send_conversation_messages(fixture.request()).await.unwrap();
    let first = app.dispatcher.claim().await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(!first[0].takeover, "a pending request is not a takeover");
    // The claimer stalls past its lease: the next claim takes the request over.
    app.clock.advance_ms(31_000);
    let second = app.dispatcher.claim().await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].takeover);
    assert_eq!(second[0].accepted_ms, first[0].accepted_ms);
    let text = reqwest::get(format!("{}/metrics", app.url())).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&text, "convmsg_lease_takeovers_total"), 1.0, "{text}");
}

/// The queue-health gauges the on-call person alerts on move with the queue: the oldest
/// due request's age grows with the clock while nothing claims it, and falls to 0 when
/// nothing is due.
#[tokio::test]
async fn the_oldest_due_age_gauge_grows_while_a_due_request_waits_and_is_zero_when_none_is_due() {
    let app = spawn_accept_only().await;
    let fixture = app.provision(1).await;
    let url = format!("{}/metrics", app.url());
    let scrape = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    let age = "convmsg_queue_oldest_due_age_seconds";
    let idle = scrape().await;
    assert_eq!(metric(&idle, age), 0.0, "{idle}");
    assert_eq!(metric(&idle, "convmsg_expired_leases"), 0.0, "{idle}");

    let mut conv = app.conv().await;
    conv.send_conversation_messages(fixture.request()).await.unwrap();
    app.clock.advance_ms(90_000);
    let waiting = scrape().await;
    let seen = metric(&waiting, age);
    assert!((90.0..=95.0).contains(&seen), "a request due 90 s ago: {seen}\n{waiting}");
    assert_eq!(metric(&waiting, r#"convmsg_send_requests{status="Pending"}"#), 1.0, "{waiting}");
}
