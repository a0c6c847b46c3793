//! Busy is not down: a database that is up but cannot take a call in time (a lock held
//! past the timeout) refuses it as an overload — RESOURCE_EXHAUSTED with retry advice,
//! REST 503 `REQUEST_LIMIT_EXCEEDED` — and the server stays ready; it is not reported as a
//! database outage. (A real outage: `replicas::faults`.)

use std::time::Duration;

use convmsg::grpc::pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::{error_code, spawn_app_with};

async fn readyz(base: &str) -> u16 {
    reqwest::get(format!("{base}/readyz")).await.expect("readyz answers").status().as_u16()
}

#[tokio::test]
async fn a_database_busy_past_its_timeout_refuses_as_an_overload_and_the_server_stays_ready() {
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        // SQLite waits this long for its write lock; PostgreSQL lets a statement run this long.
        c.database.acquire_timeout_ms = 300;
        c.database.statement_timeout_ms = 300;
    })
    .await;
    let fx = app.provision(1).await;
    let blocker = app.db.block_accepts().await;

    let refused = app.conv().await.send_conversation_messages(fx.request()).await.expect_err("the lock is held");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(error_code(&refused), "REQUEST_LIMIT_EXCEEDED");
    assert!(refused.get_error_details().retry_info().is_some(), "retry advice");
    assert!(!refused.message().contains("unavailable"), "not reported as an outage: {}", refused.message());
    assert_eq!(readyz(&app.url()).await, 200, "a busy database does not make the server unready");
    // Reads go on meanwhile.
    let mut reader = app.conv().await;
    let read = reader.get_request_status(pb::GetRequestStatusRequest { request_id: "1srAAAAAAAAAAAA".into() }).await;
    assert_eq!(read.expect_err("no such request").code(), Code::NotFound);

    blocker.release().await;
    let accepted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match app.conv().await.send_conversation_messages(fx.request()).await {
                Ok(reply) => return reply.into_inner(),
                Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
            }
        }
    })
    .await
    .expect("accepting again once the lock is gone");
    assert_eq!(accepted.message_identifiers.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn past_the_admission_limit_a_call_waits_the_queue_timeout_for_a_slot_then_is_refused() {
    const QUEUE_TIMEOUT: Duration = Duration::from_millis(1_000);
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.admission.max_concurrent_requests = 1;
        c.admission.queue_timeout_ms = QUEUE_TIMEOUT.as_millis() as u64;
        c.database.acquire_timeout_ms = 20_000;
    })
    .await;
    let fx = app.provision(1).await;
    // One accept waits inside the server (the lock it needs is held from outside), holding the slot.
    let blocker = app.db.block_accepts().await;
    let mut holder = app.conv().await;
    let request = fx.request();
    let held = tokio::spawn(async move { holder.send_conversation_messages(request).await });

    // Until the holder has the slot a probe may get through at once; once it has, a probe
    // waits the queue timeout and is refused.
    let mut probe = app.conv().await;
    let refused_after = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let started = std::time::Instant::now();
            let answer =
                probe.get_request_status(pb::GetRequestStatusRequest { request_id: "1srAAAAAAAAAAAA".into() }).await;
            match answer {
                Err(status) if status.code() == Code::ResourceExhausted => return started.elapsed(),
                Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
                Ok(_) => panic!("no such request"),
            }
        }
    })
    .await
    .expect("a call past the limit was refused");
    assert!(
        refused_after >= QUEUE_TIMEOUT - Duration::from_millis(50),
        "it waited for a slot first: {refused_after:?}"
    );

    // A slot that frees within the queue timeout admits the waiting call.
    let mut next = app.conv().await;
    let request = fx.request();
    let admitted = tokio::spawn(async move { next.send_conversation_messages(request).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    blocker.release().await;
    held.await.unwrap().expect("the held call completes once the lock is gone");
    admitted.await.unwrap().expect("the waiting call got the freed slot within the queue timeout");
    app.stop().await;
}
