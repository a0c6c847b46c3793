//! Graceful shutdown of the real server process under load: SIGTERM turns health
//! NOT_SERVING at once, the listener closes soon after, sends in flight finish and are
//! recorded, nothing is left leased, and the process exits 0 by itself within the drain
//! period. Every acknowledged request is in the database, and after a restart every
//! request completes — each message delivered exactly once, since no send was cut.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use convmsg::grpc::pb;
use futures_util::StreamExt;
use sqlx::sqlite::SqlitePool;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::helpers::{BearerToken, start_server_process, write_webhook_config};

const REQUESTS: usize = 200;
const RECIPIENTS: usize = 2;
/// How long the receiver takes to answer each delivery.
const DELIVERY_TIME: Duration = Duration::from_millis(200);
const STOP_ACCEPTING_AFTER_MS: u64 = 1_000;
const DRAIN_PERIOD_MS: u64 = 5_000;

/// A slow webhook receiver: counts deliveries by `webhook-id` as they arrive, and again
/// as they are answered.
#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<HashMap<String, usize>>>,
    answered: Arc<Mutex<HashSet<String>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> &'static str {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    *r.received.lock().unwrap().entry(id.clone()).or_default() += 1;
    tokio::time::sleep(DELIVERY_TIME).await;
    r.answered.lock().unwrap().insert(id);
    "{}"
}

fn write_config(dir: &std::path::Path, token: &str, hook: &str) -> std::path::PathBuf {
    let database_url = format!("sqlite://{}", dir.join("convmsg.db").display());
    let extra = format!(
        "[shutdown]\nstop_accepting_after_ms = {STOP_ACCEPTING_AFTER_MS}\n[dispatch]\nmax_in_progress_requests = 20\n\
         per_request_concurrency = 1\npoll_interval_ms = 50\ndrain_period_ms = {DRAIN_PERIOD_MS}\n"
    );
    write_webhook_config(dir, &database_url, token, hook, RECIPIENTS, &extra)
}

fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("the server is running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

async fn count(db: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_releases_every_lease_exits_0_and_loses_nothing() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let hooks = axum::Router::new().route("/hook", post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, hooks).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let token = convmsg::domain::principal::generate_token();
    let config = write_config(dir.path(), &token, &hook);

    let mut server = start_server_process(&config, None).await;
    let channel = server.channel().await;
    let users = server.end_user_ids(&token).await;
    assert_eq!(users.len(), RECIPIENTS);

    // The load: REQUESTS sends, 4 at a time and paced, so it is still going when the
    // signal comes and goes on while the listener closes.
    let acknowledged: Arc<Mutex<Vec<pb::SendConversationMessagesResponse>>> = Arc::default();
    let load = {
        let conv = pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(
            channel,
            BearerToken(Some(token.clone())),
        );
        let acknowledged = acknowledged.clone();
        tokio::spawn(async move {
            futures_util::stream::iter(0..REQUESTS)
                .map(|_| {
                    let mut conv = conv.clone();
                    let request = pb::SendConversationMessagesRequest {
                        message_definition_name: "Ping".into(),
                        messaging_end_user_ids: users.clone(),
                        ..Default::default()
                    };
                    async move {
                        tokio::time::sleep(Duration::from_millis(40)).await;
                        conv.send_conversation_messages(request).await
                    }
                })
                .buffer_unordered(4)
                .fold(0usize, |refused, reply| {
                    let acknowledged = acknowledged.clone();
                    async move {
                        match reply {
                            Ok(reply) => {
                                acknowledged.lock().unwrap().push(reply.into_inner());
                                refused
                            }
                            Err(_) => refused + 1,
                        }
                    }
                })
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        while acknowledged.lock().unwrap().len() < 40 || receiver.answered.lock().unwrap().len() < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("requests were accepted and deliveries under way");

    sigterm(&server.child);
    let signalled = Instant::now();
    let acknowledged_before_signal = acknowledged.lock().unwrap().len();

    // Health turns NOT_SERVING at once (a new connection: the listener still accepts).
    let health_channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr)).unwrap();
    let mut health = HealthClient::new(health_channel.connect().await.expect("still accepting right after SIGTERM"));
    tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            let reply = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
            if reply.status == ServingStatus::NotServing as i32 {
                return;
            }
        }
    })
    .await
    .expect("health turned NOT_SERVING within 500 ms of SIGTERM");
    let liveness = health.check(HealthCheckRequest { service: convmsg::server::app::LIVENESS.into() }).await.unwrap();
    assert_eq!(liveness.into_inner().status, ServingStatus::Serving as i32, "a draining process is still alive");

    // The listener stops accepting soon after (stop_accepting_after_ms).
    tokio::time::timeout(Duration::from_millis(STOP_ACCEPTING_AFTER_MS + 3_000), async {
        while tokio::net::TcpStream::connect(&server.addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the listener closed");
    let closed_after = signalled.elapsed();
    assert!(closed_after >= Duration::from_millis(STOP_ACCEPTING_AFTER_MS - 100), "closed after {closed_after:?}");

    // The process exits 0 by itself, within the drain period and a margin.
    let status = tokio::time::timeout(Duration::from_millis(DRAIN_PERIOD_MS + 5_000), server.child.wait())
        .await
        .expect("the server exited within the drain period")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let exited_after = signalled.elapsed();
    let refused = tokio::time::timeout(Duration::from_secs(30), load).await.expect("the load ended").unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    println!(
        "SIGTERM: listener closed after {closed_after:?}, exit 0 after {exited_after:?}; requests acknowledged: \
         {acknowledged_before_signal} before the signal, {} in all; {refused} refused",
        acknowledged.len()
    );
    assert!(acknowledged.len() > acknowledged_before_signal, "calls are still served until the listener closes");

    // Nothing is left leased or marked in flight; every acknowledged request is recorded.
    let db_url = format!("sqlite://{}?mode=ro", dir.path().join("convmsg.db").display());
    let db = SqlitePool::connect(&db_url).await.unwrap();
    let leased =
        count(&db, "SELECT COUNT(*) FROM send_requests WHERE status = 'InProgress' OR locked_by IS NOT NULL").await;
    assert_eq!(leased, 0, "requests left leased after a graceful shutdown");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages WHERE status = 'InProgress'").await, 0);
    let recorded: HashSet<String> =
        sqlx::query_scalar("SELECT id FROM send_requests").fetch_all(&db).await.unwrap().into_iter().collect();
    for reply in &acknowledged {
        assert!(recorded.contains(&reply.request_id), "acknowledged request {} is missing", reply.request_id);
    }
    // Every send that reached the receiver finished and was recorded as a success: none was cut.
    let succeeded: HashSet<String> = sqlx::query_scalar("SELECT identifier FROM messages WHERE status = 'Success'")
        .fetch_all(&db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let received: HashSet<String> = receiver.received.lock().unwrap().keys().cloned().collect();
    assert_eq!(received, succeeded, "every send started before SIGTERM finished and was recorded");
    let unfinished = count(&db, "SELECT COUNT(*) FROM send_requests WHERE status = 'Pending'").await;
    assert!(unfinished > 0, "the signal came mid-load, so some requests were left queued");
    db.close().await;

    // After a restart every request completes, and each message arrived exactly once.
    let mut server = start_server_process(&config, None).await;
    let db = SqlitePool::connect(&db_url).await.unwrap();
    let total = recorded.len() as i64;
    tokio::time::timeout(Duration::from_secs(60), async {
        while count(&db, "SELECT COUNT(*) FROM send_requests WHERE status = 'Completed'").await < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every request completed after the restart");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM messages WHERE status <> 'Success'").await, 0);
    let received = receiver.received.lock().unwrap().clone();
    for reply in &acknowledged {
        for id in &reply.message_identifiers {
            assert_eq!(received.get(id), Some(&1), "message {id} delivered once");
        }
    }
    assert!(received.values().all(|n| *n == 1), "a graceful shutdown sends nothing twice");
    db.close().await;

    sigterm(&server.child);
    let status = tokio::time::timeout(Duration::from_millis(DRAIN_PERIOD_MS + 5_000), server.child.wait())
        .await
        .expect("the idle server exited")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn a_watch_stream_still_open_at_the_end_of_the_drain_period_is_cut_and_the_server_stops() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.dispatch.enabled = false; // the request stays Pending, so its watch never ends
        c.dispatch.drain_period_ms = 500;
    })
    .await;
    let fx = app.provision(1).await;
    let mut conv = app.conv().await;
    let reply = conv.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    let mut stream = conv
        .watch_request_status(pb::WatchRequestStatusRequest { request_id: reply.request_id, follow_receipts: false })
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_some(), "the current state comes first");
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), app.stop()).await.expect("the server stopped");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.expect("the stream ended");
    assert!(!matches!(end, Ok(Some(_))), "no update after the cut: {end:?}");
}
