//! Crash safety: the server process is killed (SIGKILL) while messages are in flight;
//! a restarted process (on the suite's backend) on the same database takes over the expired lease and finishes
//! the request. Every message ends final, none is lost; messages caught in flight may
//! be sent twice, and the receiver can drop the repeat by `webhook-id`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use convmsg::grpc::pb;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::helpers::{BearerToken, start_server_process, write_webhook_config};

/// A webhook receiver that counts deliveries by `webhook-id` and, while `holding`,
/// never answers (so the sends stay in flight).
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<HashMap<String, usize>>>,
    holding: watch::Receiver<bool>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap) -> &'static str {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    *r.seen.lock().unwrap().entry(id).or_default() += 1;
    let mut holding = r.holding.clone();
    while *holding.borrow() {
        if holding.changed().await.is_err() {
            break;
        }
    }
    "{}"
}

#[tokio::test]
async fn a_server_killed_mid_delivery_is_resumed_after_restart_and_nothing_is_lost() {
    let (hold, holding) = watch::channel(true);
    let receiver = Receiver { seen: Arc::default(), holding };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", post(receive)).with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let db = crate::helpers::TestDatabase::create().await;
    let token = convmsg::domain::principal::generate_token();
    let extra = "[dispatch]\nlease_ms = 1000\npoll_interval_ms = 50\nretry_schedule_ms = [100, 100, 100]\n";
    let config = write_webhook_config(dir.path(), &db.url, &token, &hook, 10, extra);

    let mut server = start_server_process(&config, None).await;
    let channel = server.channel().await;
    let ids = server.end_user_ids(&token).await;
    assert_eq!(ids.len(), 10);
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

    // Five sends in flight (the per-request limit), held by the receiver: kill now.
    tokio::time::timeout(Duration::from_secs(30), async {
        while receiver.seen.lock().unwrap().len() < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("sends reached the receiver");
    server.child.start_kill().unwrap(); // SIGKILL
    server.child.wait().await.unwrap();
    hold.send(false).unwrap();

    // A new process on the same database takes over once the dead one's lease expires.
    let server = start_server_process(&config, None).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    let mut conv = pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(
        channel,
        BearerToken(Some(token)),
    );
    let mut stream = conv
        .watch_request_status(pb::WatchRequestStatusRequest {
            request_id: reply.request_id.clone(),
            follow_receipts: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(update) = stream.next().await {
            last = update.unwrap().request;
        }
    })
    .await
    .expect("the request completed after the restart");
    let last = last.unwrap();
    assert_eq!(last.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(last.success_message_count, 10, "{last:?}");

    // Every identifier reached the receiver; repeats are only those caught in flight.
    let seen = receiver.seen.lock().unwrap().clone();
    let mut expected = reply.message_identifiers.clone();
    expected.sort();
    let mut delivered: Vec<String> = seen.keys().cloned().collect();
    delivered.sort();
    assert_eq!(delivered, expected, "distinct webhook-ids are exactly the message identifiers");
    let repeats: usize = seen.values().map(|n| n - 1).sum();
    println!("sent twice after SIGKILL: {repeats} of 10 (the receiver dedups them by webhook-id)");
    assert!(repeats <= 5, "only the sends in flight at the kill may repeat: {seen:?}");
}
