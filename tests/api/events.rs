//! Status events out, through the real server: an endpoint registered with the
//! `StatusEvents` RPCs receives Standard-Webhooks-signed events (checked here with the
//! scheme written from its specification) for failures, completions and receipts, in
//! order per request; a failing endpoint is retried, disabled after
//! `events.disable_after_ms`, re-enabled and replayed; one that never answers does not
//! slow sending; and an event whose POST a SIGKILL cut still goes out after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use convmsg::clock::Clock;
use convmsg::grpc::pb;
use convmsg::grpc::pb::status_events_client::StatusEventsClient;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

use crate::fake_provider::{FakeProvider, permanent};
use crate::helpers::*;

/// A local event endpoint: records every POST and answers `status` (or holds while
/// `hold` is set).
#[derive(Clone)]
struct Sink {
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    status: Arc<Mutex<u16>>,
    hold: watch::Receiver<bool>,
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    sink.seen.lock().unwrap().push((headers, body));
    let mut hold = sink.hold.clone();
    while *hold.borrow() {
        if hold.changed().await.is_err() {
            break;
        }
    }
    StatusCode::from_u16(*sink.status.lock().unwrap()).unwrap()
}

impl Sink {
    async fn start(status: u16, holding: bool) -> (Sink, String, watch::Sender<bool>) {
        let (release, hold) = watch::channel(holding);
        let sink = Sink { seen: Arc::default(), status: Arc::new(Mutex::new(status)), hold };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/events", axum::routing::post(receive)).with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, url, release)
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    /// The events received, each checked against `secret` as a Standard Webhooks
    /// receiver does, as (webhook-id, body).
    fn verified(&self, secret: &str) -> Vec<(String, Value)> {
        let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
                let (id, ts) = (h("webhook-id"), h("webhook-timestamp"));
                let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                mac.update(format!("{id}.{ts}.").as_bytes());
                mac.update(body);
                let expected =
                    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
                assert!(h("webhook-signature").split(' ').any(|s| s == expected), "a bad signature on {id}");
                (id, serde_json::from_slice(body).unwrap())
            })
            .collect()
    }
}

fn local_events(c: &mut convmsg::config::Config) {
    c.events.enabled = false; // driven by the test with run_once
    c.events.allow_http = true;
    c.events.allowed_networks = vec!["127.0.0.0/8".into()];
}

async fn events_admin(app: &TestApp) -> StatusEventsClient<Authed> {
    StatusEventsClient::with_interceptor(app.channel().await, BearerToken(Some(app.token.clone())))
}

async fn create(app: &TestApp, name: &str, url: &str, types: &[&str]) -> (pb::EventEndpoint, String) {
    let answer = events_admin(app)
        .await
        .create_event_endpoint(pb::CreateEventEndpointRequest {
            name: name.into(),
            url: url.into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            secret: String::new(),
        })
        .await
        .expect("created")
        .into_inner();
    (answer.endpoint.unwrap(), answer.secret)
}

/// Runs the sender until `sink` saw `n` POSTs (bounded).
async fn send_until(app: &TestApp, sink: &Sink, n: usize) {
    for _ in 0..50 {
        if sink.seen.lock().unwrap().len() >= n {
            return;
        }
        app.event_sender.run_once().await.expect("events sent");
    }
    panic!("{n} events never arrived; got {}", sink.seen.lock().unwrap().len());
}

/// A request to `n` end users of a fake webhook channel, delivered; the request id.
async fn delivered(app: &TestApp, fake: &FakeProvider, n: usize, fail_first: bool) -> (Fixture, String) {
    let fx = app.provision_custom(&app.token.clone(), n, |c| c.provider = "webhook".into()).await;
    if fail_first {
        let first = app.end_user(&fx.end_user_ids[0]).await.messaging_platform_key;
        fake.script(&first, vec![permanent("InvalidRecipient")]);
    }
    let id = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner().request_id;
    for _ in 0..10 {
        app.dispatcher.run_once().await.unwrap();
    }
    (fx, id)
}

async fn spawn(adjust: impl FnOnce(&mut convmsg::config::Config)) -> (TestApp, FakeProvider) {
    let fake = FakeProvider::new(convmsg::clock::ManualClock::new(0));
    let provider: Arc<dyn convmsg::providers::Provider> = Arc::new(fake.clone());
    let app = spawn_app_with_providers(
        |c| {
            c.dispatch.enabled = false;
            c.providers.webhook.tenants.entry("default".into()).or_default().secret =
                Some("whsec_Z2F0ZXdheS1rZXk=".into());
            local_events(c);
            adjust(c);
        },
        vec![provider],
    )
    .await;
    fake.use_clock(app.clock.clone());
    (app, fake)
}

/// Acknowledges `identifier` as `kind` the way a gateway does (see receipts::gateway).
async fn acknowledge(app: &TestApp, channel_id: &str, identifier: &str, kind: &str) {
    let body = serde_json::to_vec(&json!({"acknowledgements": [{"acknowledgedConversationEntryIdentifier": identifier,
        "acknowledgementType": kind, "acknowledgementTimestamp": app.clock.now_ms()}]}))
    .unwrap();
    let (id, ts) = ("msg_ack", app.clock.now_ms() / 1000);
    let mut mac = Hmac::<Sha256>::new_from_slice(b"gateway-key").unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&body);
    let signature = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    let answer = reqwest::Client::new()
        .post(format!("{}/receipts/webhook/{channel_id}/v1/acknowledgement", app.url()))
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test]
async fn an_endpoint_receives_signed_events_for_failures_completion_and_receipts_in_request_order() {
    let (app, fake) = spawn(|_| {}).await;
    let (sink, url, _release) = Sink::start(200, false).await;
    let (endpoint, secret) = create(&app, "ops", &url, &[]).await;
    assert!(endpoint.enabled && endpoint.event_types.is_empty());
    let (reads, reads_url, _r) = Sink::start(204, false).await;
    let (_, reads_secret) = create(&app, "reads-only", &reads_url, &["message.read"]).await;

    let (fx, request_id) = delivered(&app, &fake, 2, true).await;
    let ok = record_messages(&app, &request_id).await.remove(1);
    acknowledge(&app, &fx.channel.id, &ok, "Delivered").await;
    acknowledge(&app, &fx.channel.id, &ok, "Read").await;
    acknowledge(&app, &fx.channel.id, &ok, "Read").await; // a duplicate: no event
    send_until(&app, &sink, 4).await;
    send_until(&app, &reads, 1).await;

    let events = sink.verified(&secret);
    let types: Vec<&str> = events.iter().map(|(_, e)| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["message.failed", "request.completed", "message.delivered", "message.read"]);
    let (_, failed) = &events[0];
    assert_eq!(failed["data"]["request_id"], request_id.as_str());
    assert_eq!(failed["data"]["reason"], "InvalidRecipient");
    assert_eq!(failed["data"]["tenant"], "default");
    let (_, read) = &events[3];
    assert_eq!(
        (read["data"]["message_identifier"].as_str(), read["data"]["delivery_state"].as_str()),
        (Some(ok.as_str()), Some("Read"))
    );
    let mut ids: Vec<&String> = events.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each event has its own webhook-id");
    let only_reads = reads.verified(&reads_secret);
    assert_eq!(only_reads.len(), 1);
    assert_eq!(only_reads[0].1["type"], "message.read");
    // Nothing more is due: each event went once to each endpoint.
    assert_eq!(app.event_sender.run_once().await.unwrap(), 0);
    app.stop().await;
}

async fn record_messages(app: &TestApp, request_id: &str) -> Vec<String> {
    app.conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: request_id.into() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
        .messages
        .into_iter()
        .map(|m| m.message_identifier)
        .collect()
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", app.url())).await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_then_disabled_and_once_re_enabled_a_replay_brings_what_it_missed() {
    let (app, fake) = spawn(|c| {
        c.dispatch.retry_schedule_ms = vec![1_000, 1_000];
        c.dispatch.retry_jitter = 0.0;
        c.events.disable_after_ms = 1_500;
    })
    .await;
    let (sink, url, _release) = Sink::start(503, false).await;
    let (endpoint, secret) = create(&app, "flaky", &url, &["request.completed"]).await;
    let (_, first) = delivered(&app, &fake, 1, false).await;
    assert_eq!(app.event_sender.run_once().await.unwrap(), 1, "tried at once");
    assert_eq!(app.event_sender.run_once().await.unwrap(), 0, "and not again before the retry is due");
    app.clock.advance_ms(1_000);
    assert_eq!(app.event_sender.run_once().await.unwrap(), 1);
    app.clock.advance_ms(1_000);
    assert_eq!(app.event_sender.run_once().await.unwrap(), 1, "the last retry; failing for 2 s now");
    let listed = events_admin(&app).await.list_event_endpoints(pb::ListEventEndpointsRequest {}).await.unwrap();
    let listed = listed.into_inner().endpoints.remove(0);
    assert_eq!((listed.enabled, listed.disabled_reason.as_str()), (false, "FailingTooLong"));
    assert!(listed.failing_since.is_some());
    assert_eq!(metric(&app, "convmsg_event_endpoints_disabled_total").await, 1);
    // While disabled, new events are not queued for it.
    let (_, second) = delivered(&app, &fake, 1, false).await;
    assert_eq!(app.event_sender.run_once().await.unwrap(), 0);
    assert_eq!(sink.seen.lock().unwrap().len(), 3);

    sink.answer(200);
    let mut admin = events_admin(&app).await;
    let enabled = admin
        .update_event_endpoint(pb::UpdateEventEndpointRequest {
            id: endpoint.id.clone(),
            enabled: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert!(enabled.enabled && enabled.disabled_reason.is_empty() && enabled.failing_since.is_none());
    let queued = admin
        .replay_events(pb::ReplayEventsRequest {
            endpoint_id: endpoint.id.clone(),
            since: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
            until: None,
        })
        .await
        .unwrap()
        .into_inner()
        .queued;
    assert_eq!(queued, 2, "the failed event and the one it never got");
    send_until(&app, &sink, 5).await;
    let mut delivered_ids: Vec<String> =
        sink.verified(&secret)[3..].iter().map(|(_, e)| e["data"]["request_id"].as_str().unwrap().to_owned()).collect();
    delivered_ids.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(delivered_ids, expected);
    let again = admin
        .replay_events(pb::ReplayEventsRequest {
            endpoint_id: endpoint.id.clone(),
            since: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
            until: None,
        })
        .await
        .unwrap()
        .into_inner()
        .queued;
    assert_eq!(again, 0, "delivered events are not sent again");
    app.stop().await;
}

#[tokio::test]
async fn event_endpoint_settings_are_checked_naming_the_field_and_another_tenant_s_endpoint_is_not_found() {
    let (app, _fake) = spawn(|c| c.events.allowed_networks.clear()).await;
    let mut admin = events_admin(&app).await;
    let bad = admin
        .create_event_endpoint(pb::CreateEventEndpointRequest {
            name: "ops".into(),
            url: "https://hooks.example.com/x".into(),
            event_types: vec!["message.sent".into()],
            secret: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&bad)[0].0, "event_types[0]");
    let private = admin
        .create_event_endpoint(pb::CreateEventEndpointRequest {
            name: "ops".into(),
            url: "http://127.0.0.1:9/x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&private)[0].0, "url", "the SSRF guard's rules apply at registration");
    let ok = admin
        .create_event_endpoint(pb::CreateEventEndpointRequest {
            name: "ops".into(),
            url: "https://hooks.example.com/x".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.secret.starts_with("whsec_"));
    let again = admin
        .create_event_endpoint(pb::CreateEventEndpointRequest {
            name: "ops".into(),
            url: "https://hooks.example.com/y".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
    let id = ok.endpoint.unwrap().id;
    let mut theirs =
        StatusEventsClient::with_interceptor(app.channel().await, BearerToken(Some(app.other_token.clone())));
    let err = theirs.delete_event_endpoint(pb::DeleteEventEndpointRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let mut reader =
        StatusEventsClient::with_interceptor(app.channel().await, BearerToken(Some(app.read_token.clone())));
    let err = reader.list_event_endpoints(pb::ListEventEndpointsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    admin.delete_event_endpoint(pb::DeleteEventEndpointRequest { id }).await.unwrap();
    assert!(
        admin.list_event_endpoints(pb::ListEventEndpointsRequest {}).await.unwrap().into_inner().endpoints.is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_never_answers_does_not_slow_sending() {
    let (app, _fake) = spawn(|c| {
        c.events.enabled = true;
        c.events.max_in_flight = 2;
        c.events.timeout_ms = 60_000;
        c.dispatch.enabled = true;
        c.dispatch.poll_interval_ms = 20;
    })
    .await;
    let (sink, url, release) = Sink::start(200, true).await;
    create(&app, "stuck", &url, &[]).await;
    let fx = app.provision_custom(&app.token.clone(), 1, |c| c.provider = "webhook".into()).await;
    let mut conv = app.conv().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(conv.send_conversation_messages(fx.request()).await.unwrap().into_inner().request_id);
    }
    // Every request completes while the endpoint holds the sender's two POSTs.
    tokio::time::timeout(Duration::from_secs(30), async {
        for id in &ids {
            loop {
                let r = conv.get_request_status(pb::GetRequestStatusRequest { request_id: id.clone() }).await.unwrap();
                if r.into_inner().request.unwrap().request_status == pb::RequestStatus::Completed as i32 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await
    .expect("all 20 requests completed with the event endpoint stuck");
    assert!(sink.seen.lock().unwrap().len() <= 2, "at most events.max_in_flight POSTs wait on it");
    release.send(false).unwrap();
    app.stop().await;
}

#[tokio::test]
async fn an_event_whose_post_a_crash_cut_is_sent_after_the_restart() {
    let (sink, url, release) = Sink::start(200, true).await;
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    let hooks = axum::Router::new().route("/hook", axum::routing::post(|| async { "{}" }));
    tokio::spawn(async move { axum::serve(hook_listener, hooks).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = convmsg::domain::principal::generate_token();
    let extra = "[events]\nallow_http = true\nallowed_networks = [\"127.0.0.0/8\"]\nlease_ms = 1000\npoll_interval_ms = 50\n\
                 [dispatch]\npoll_interval_ms = 50\n";
    let config = write_webhook_config(dir.path(), &db.url, &token, &hook, 1, extra);
    let mut server = start_server_process(&config, None).await;
    let channel = server.channel().await;
    let mut events = StatusEventsClient::with_interceptor(channel.clone(), BearerToken(Some(token.clone())));
    let created = events
        .create_event_endpoint(pb::CreateEventEndpointRequest {
            name: "ops".into(),
            url: url.clone(),
            event_types: vec!["request.completed".into()],
            secret: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ids = server.end_user_ids(&token).await;
    let mut conv = pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(
        channel,
        BearerToken(Some(token.clone())),
    );
    let reply = conv
        .send_conversation_messages(pb::SendConversationMessagesRequest {
            message_definition_name: "Ping".into(),
            messaging_end_user_ids: ids,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The request completed and its event is on its way, held by the endpoint: kill now.
    tokio::time::timeout(Duration::from_secs(30), async {
        while sink.seen.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the event reached the endpoint");
    server.child.start_kill().unwrap(); // SIGKILL: the POST is never answered
    server.child.wait().await.unwrap();
    release.send(false).unwrap();

    let _server = start_server_process(&config, None).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while sink.seen.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the event was sent again after the restart");
    let got = sink.verified(&created.secret);
    assert_eq!(got[0].0, got[1].0, "the same webhook-id, for the receiver to deduplicate");
    assert_eq!(got[1].1["type"], "request.completed");
    assert_eq!(got[1].1["data"]["request_id"], reply.request_id.as_str());
}

#[tokio::test]
async fn an_endpoint_declared_in_the_config_file_receives_events_signed_with_its_secret() {
    let (sink, url, _release) = Sink::start(200, false).await;
    let secret = "whsec_Y29uZmlnLWRlY2xhcmVkLWVuZHBvaW50";
    let (app, fake) = spawn(|c| {
        c.event_endpoints.push(convmsg::config::EventEndpointConfig {
            tenant: "default".into(),
            name: "from-config".into(),
            url: url.clone(),
            event_types: vec!["request.completed".into()],
            secret: secret.into(),
        });
    })
    .await;
    let listed = events_admin(&app).await.list_event_endpoints(pb::ListEventEndpointsRequest {}).await.unwrap();
    let listed = listed.into_inner().endpoints;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].event_types.clone()),
        ("from-config", vec!["request.completed".to_owned()])
    );
    let (_, request_id) = delivered(&app, &fake, 1, false).await;
    send_until(&app, &sink, 1).await;
    let events = sink.verified(secret);
    assert_eq!(
        (events[0].1["type"].as_str(), events[0].1["data"]["request_id"].as_str()),
        (Some("request.completed"), Some(request_id.as_str()))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_purged_request_takes_its_status_events_with_it() {
    const HOUR: i64 = 3_600_000;
    let (app, fake) = spawn(|c| {
        c.retention.completed_max_age_ms = HOUR as u64;
        c.retention.purge_interval_ms = 20;
    })
    .await;
    let (_sink, url, _release) = Sink::start(503, false).await;
    create(&app, "down", &url, &[]).await;
    let (_, request_id) = delivered(&app, &fake, 1, false).await;
    let rows = |sql: &'static str| {
        let db = &app.db;
        async move { db.fetch_triples(sql).await.len() }
    };
    let outbox = "SELECT id, CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM event_outbox";
    let deliveries = "SELECT event_id, attempts, CAST(0 AS BIGINT) FROM event_deliveries";
    assert_eq!((rows(outbox).await, rows(deliveries).await), (1, 1), "request.completed, pending for the endpoint");
    app.clock.advance_ms(2 * HOUR);
    tokio::time::timeout(Duration::from_secs(20), async {
        while rows(outbox).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the purge removed the request's events");
    assert_eq!(rows(deliveries).await, 0);
    let gone = app.conv().await.get_request_status(pb::GetRequestStatusRequest { request_id }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    app.stop().await;
}

/// A cancel ends messages and the request outside the dispatcher: its events are written
/// with it all the same (each cancelled message failed `Canceled`, then the completion).
#[tokio::test]
async fn a_cancelled_request_reports_each_cancelled_message_and_its_completion() {
    let (app, _fake) = spawn(|_| {}).await;
    let (sink, url, _release) = Sink::start(200, false).await;
    let (_, secret) = create(&app, "ops", &url, &[]).await;
    let fx = app.provision_custom(&app.token.clone(), 2, |c| c.provider = "webhook".into()).await;
    // Scheduled an hour ahead: nothing is in flight when the cancel comes.
    let later = app.clock.now_ms() + 3_600_000;
    let request = pb::SendConversationMessagesRequest { send_at: crate::control::at(later), ..fx.request() };
    let id = app.conv().await.send_conversation_messages(request).await.unwrap().into_inner().request_id;
    app.conv().await.cancel_request(pb::CancelRequestRequest { request_id: id.clone() }).await.unwrap();
    send_until(&app, &sink, 3).await;

    let events = sink.verified(&secret);
    let types: Vec<&str> = events.iter().map(|(_, e)| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["message.failed", "message.failed", "request.completed"], "{events:?}");
    assert!(
        events[..2].iter().all(|(_, e)| e["data"]["reason"] == "Canceled" && e["data"]["request_id"] == id.as_str())
    );
    assert_eq!(app.event_sender.run_once().await.unwrap(), 0, "nothing more is due");
    app.stop().await;
}
