//! Retention, on the suite's backend: the background purge deletes completed requests
//! older than `[retention] completed_max_age_ms` (with their messages and idempotency
//! keys) and keeps young and unfinished ones. Age is read from the injected clock.

use std::time::Duration;

use convmsg::domain::model::RequestStatus;
use convmsg::grpc::pb;
use tonic::Code;

use crate::helpers::*;

const HOUR: i64 = 3_600_000;

async fn send(app: &TestApp, request: pb::SendConversationMessagesRequest) -> String {
    app.conv().await.send_conversation_messages(request).await.unwrap().into_inner().request_id
}

async fn exists(app: &TestApp, id: &str) -> bool {
    let status = app.conv().await.get_request_status(pb::GetRequestStatusRequest { request_id: id.into() }).await;
    match status {
        Ok(_) => true,
        Err(s) if s.code() == Code::NotFound => false,
        Err(s) => panic!("reading {id}: {s:?}"),
    }
}

#[tokio::test]
async fn completed_requests_past_the_maximum_age_are_purged_and_young_or_pending_ones_are_kept() {
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false; // delivery is driven step by step below
        c.retention.completed_max_age_ms = HOUR as u64;
        c.retention.purge_interval_ms = 20;
        c.retention.purge_batch = 1; // several batches per purge
    })
    .await;
    let fx = app.provision(1).await;

    // Two requests completed now: old once the clock moves on by two hours.
    let mut keyed = fx.request();
    keyed.idempotency_key = "order-1".into();
    let old_keyed = send(&app, keyed.clone()).await;
    let old = send(&app, fx.request()).await;
    let done = app.dispatcher.run_once().await.unwrap();
    assert!(done.iter().all(|p| p.status == Some(RequestStatus::Completed)) && done.len() == 2);
    app.clock.advance_ms(2 * HOUR);

    // One completed just now, and one still pending.
    let young = send(&app, fx.request()).await;
    let done = app.dispatcher.run_once().await.unwrap();
    assert_eq!(done.len(), 1);
    let pending = send(&app, fx.request()).await;

    let purged = tokio::time::timeout(Duration::from_secs(20), async {
        while exists(&app, &old).await || exists(&app, &old_keyed).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(purged.is_ok(), "the old completed requests were purged");
    assert!(exists(&app, &young).await, "a young completed request is kept");
    assert!(exists(&app, &pending).await, "a pending request is kept, whatever its age");

    // Its idempotency key went with it: the same key now records a new request.
    let again = send(&app, keyed).await;
    assert_ne!(again, old_keyed);
    let rows = app
        .db
        .fetch_triples(&format!(
            "SELECT r.id, (SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id), \
             (SELECT COUNT(*) FROM idempotency_keys k WHERE k.request_id = r.id) FROM send_requests r \
             WHERE r.id IN ('{old}', '{old_keyed}')"
        ))
        .await;
    assert!(rows.is_empty(), "nothing of the purged requests is left: {rows:?}");
    let orphans = app
        .db
        .fetch_triples(
            "SELECT m.identifier, CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM messages m WHERE NOT EXISTS \
             (SELECT 1 FROM send_requests r WHERE r.id = m.request_id)",
        )
        .await;
    assert!(orphans.is_empty(), "no message outlives its request");
}
