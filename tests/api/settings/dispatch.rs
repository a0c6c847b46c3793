//! The dispatcher's settings through the real binary's `CONVMSG_DISPATCH__*` variables:
//! each is set to a value whose effect the default could not produce, and that effect is
//! what the test waits for.

use std::time::Duration;

use convmsg::domain::principal::generate_token;
use convmsg::grpc::pb;

use super::process::{Serve, write_config};
use super::receiver::Receiver;
use crate::helpers::TestDatabase;

/// The webhook secret the config files of these tests sign with, and leave to post to
/// the loopback receiver (plain HTTP to 127.0.0.1 is refused by default).
const SECRET: &str = "[providers.webhook]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nallow_http = true\nallowed_networks = [\"127.0.0.0/8\"]\n";

#[tokio::test]
async fn the_in_progress_limit_variable_sets_the_limit_seen_in_metrics_and_by_the_provider() {
    let (receiver, url) = Receiver::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let extra = format!("bootstrap_token = \"{token}\"\n{SECRET}[dispatch]\npoll_interval_ms = 50\n");
    let config = write_config(dir.path(), 3, Some(&format!("{url}/hook")), &extra);
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_DISPATCH__MAX_IN_PROGRESS_REQUESTS", "2")
        .start()
        .await;
    assert!(server.metrics().await.lines().any(|l| l == "convmsg_in_progress_limit 2"), "{}", server.metrics().await);

    // Three requests of one message each: two in progress, the third waits its turn.
    let users = server.end_user_ids(&token).await;
    let mut ids = Vec::new();
    for user in users {
        ids.push(server.send_ping(&token, vec![user]).await);
    }
    receiver.until_in_flight(2, Duration::from_secs(20)).await;
    receiver.release();
    for id in &ids {
        server.completed(&token, id, Duration::from_secs(30)).await;
    }
    assert_eq!(receiver.max_in_flight(), 2, "never more than the limit in progress");
    server.stop().await;
}

/// Eight messages of one request in flight at once: more than the default of five allows.
#[tokio::test]
async fn the_per_request_concurrency_variable_sets_how_many_messages_are_in_flight() {
    let (receiver, url) = Receiver::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let config =
        write_config(dir.path(), 8, Some(&format!("{url}/hook")), &format!("bootstrap_token = \"{token}\"\n{SECRET}"));
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_DISPATCH__PER_REQUEST_CONCURRENCY", "8")
        .start()
        .await;
    let users = server.end_user_ids(&token).await;
    let id = server.send_ping(&token, users).await;
    receiver.until_in_flight(8, Duration::from_secs(20)).await;
    receiver.release();
    assert_eq!(server.completed(&token, &id, Duration::from_secs(30)).await.success_message_count, 8);
    server.stop().await;
}

/// A process killed mid-send holds its claim until the lease expires: with
/// `CONVMSG_DISPATCH__LEASE_MS=1000` a restarted process finishes the request within
/// seconds, where the default 30 s lease would still hold it.
#[tokio::test]
async fn the_lease_variable_sets_how_soon_a_dead_process_work_is_taken_over() {
    let (receiver, url) = Receiver::start(true).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let extra = format!("bootstrap_token = \"{token}\"\n{SECRET}[dispatch]\npoll_interval_ms = 50\n");
    let config = write_config(dir.path(), 1, Some(&format!("{url}/hook")), &extra);
    let serve = || {
        Serve::in_dir(dir.path())
            .env("CONVMSG_DATABASE_URL", &db.url)
            .env("CONVMSG_CONFIG", config.to_str().unwrap())
            .env("CONVMSG_DISPATCH__LEASE_MS", "1000")
    };
    let server = serve().start().await;
    let users = server.end_user_ids(&token).await;
    let id = server.send_ping(&token, users).await;
    receiver.until_in_flight(1, Duration::from_secs(20)).await;
    server.kill().await;
    receiver.release();

    let server = serve().start().await;
    let done = server.completed(&token, &id, Duration::from_secs(15)).await;
    assert_eq!(done.success_message_count, 1);
    server.stop().await;
}

/// A message held by session gating fails `SessionWaitExpired` once
/// `CONVMSG_DISPATCH__SESSION_WAIT_MAX_MS` has passed; the default would hold it 48 h.
#[tokio::test]
async fn the_session_wait_variable_sets_how_long_a_held_message_waits() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let extra = format!("bootstrap_token = \"{token}\"\n[dispatch]\npoll_interval_ms = 50\n");
    let config = write_config(dir.path(), 1, None, &extra);
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_DISPATCH__SESSION_WAIT_MAX_MS", "200")
        .start()
        .await;
    let user = server.end_user_ids(&token).await.remove(0);
    server
        .admin(&token)
        .await
        .set_messaging_session_status(pb::SetMessagingSessionStatusRequest {
            messaging_end_user_id: user.clone(),
            status: pb::SessionStatus::Active as i32,
        })
        .await
        .unwrap();
    let id = server
        .conv(&token)
        .await
        .send_conversation_messages(pb::SendConversationMessagesRequest {
            message_definition_name: "Ping".into(),
            allowed_session_status: pb::AllowedSessionStatus::NonActive as i32,
            messaging_end_user_ids: vec![user],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .request_id;
    let done = server.completed(&token, &id, Duration::from_secs(20)).await;
    assert_eq!(done.messages[0].reason, "SessionWaitExpired", "{done:?}");
    server.stop().await;
}
