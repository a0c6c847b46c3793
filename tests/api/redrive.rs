//! `RetryFailedMessages`: redriving transiently failed messages through the real
//! server, by request and by channel and failure-time window, on both backends.

use convmsg::clock::Clock;
use convmsg::grpc::pb;
use tonic::Code;

use crate::control::*;
use crate::fake_provider::*;
use crate::helpers::*;

async fn redrive_as(
    app: &TestApp,
    token: &str,
    selector: pb::retry_failed_messages_request::Selector,
) -> Result<pb::RetryFailedMessagesResponse, tonic::Status> {
    app.admin_as(Some(token))
        .await
        .retry_failed_messages(pb::RetryFailedMessagesRequest { selector: Some(selector) })
        .await
        .map(|r| r.into_inner())
}

fn by_request(id: &str) -> pb::retry_failed_messages_request::Selector {
    pb::retry_failed_messages_request::Selector::RequestId(id.into())
}

fn by_channel(channel: &str, from_ms: i64, before_ms: i64) -> pb::retry_failed_messages_request::Selector {
    pb::retry_failed_messages_request::Selector::ChannelWindow(pb::ChannelFailureWindow {
        channel: channel.into(),
        failed_from: at(from_ms),
        failed_before: at(before_ms),
    })
}

/// The queue's maintained counts by status, as the metrics read them.
async fn queue_counts(app: &TestApp) -> Vec<(String, i64, i64)> {
    let mut rows = app
        .db
        .fetch_triples(
            "SELECT status, CAST(SUM(n) AS BIGINT), CAST(0 AS BIGINT) FROM queue_counts GROUP BY status \
             HAVING SUM(n) <> 0 ORDER BY status",
        )
        .await;
    rows.sort();
    rows
}

/// The requests by status, counted.
async fn actual_counts(app: &TestApp) -> Vec<(String, i64, i64)> {
    let mut rows = app
        .db
        .fetch_triples(
            "SELECT status, CAST(COUNT(*) AS BIGINT), CAST(0 AS BIGINT) FROM send_requests GROUP BY status ORDER BY status",
        )
        .await;
    rows.sort();
    rows
}

#[tokio::test]
async fn a_redriven_request_sends_only_its_retries_exhausted_messages_again_under_the_same_identifiers() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.retry_schedule_ms = vec![]).await;
    let fx = fake_fixture(&app, 3).await;
    let keys: Vec<String> = {
        let mut keys = Vec::new();
        for id in &fx.end_user_ids {
            keys.push(app.end_user(id).await.messaging_platform_key);
        }
        keys
    };
    fake.script(&keys[0], vec![transient(None)]); // the outage: no retries left
    fake.script(&keys[1], vec![permanent("ProviderRejected")]);
    let id = send(&app, fx.request()).await;
    app.dispatcher.run_once().await.unwrap();
    let failed = record(&app, &id).await;
    assert_eq!(failed.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(reasons(&failed)[..2], [(4, "RetriesExhausted".to_owned()), (4, "ProviderRejected".to_owned())]);
    let first_completed = failed.completed_date.unwrap();

    app.clock.advance_ms(60_000);
    let answer = redrive_as(&app, &app.token, by_request(&id)).await.unwrap();
    assert_eq!((answer.messages_requeued, answer.request_ids.clone(), answer.has_more), (1, vec![id.clone()], false));
    let again = record(&app, &id).await;
    assert_eq!(again.request_status, pb::RequestStatus::Pending as i32);
    assert_eq!(again.completed_date, None);
    assert_eq!((again.pending_message_count, again.failed_message_count, again.success_message_count), (1, 1, 1));
    assert_eq!(queue_counts(&app).await, actual_counts(&app).await);

    app.dispatcher.run_once().await.unwrap();
    let done = record(&app, &id).await;
    assert_eq!(done.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!((done.success_message_count, done.failed_message_count), (2, 1));
    assert_eq!(done.messages[1].reason, "ProviderRejected", "a permanent failure is never redriven");
    assert!(done.completed_date.unwrap().seconds > first_completed.seconds);
    // The same identifier went to the provider twice (receivers deduplicate on it).
    let sent_to_first: Vec<String> =
        fake.sent().into_iter().filter(|(_, m)| m.recipient == keys[0]).map(|(_, m)| m.message_identifier).collect();
    assert_eq!(sent_to_first, vec![failed.messages[0].message_identifier.clone(); 2]);
    assert_eq!(done.messages[0].attempts, 1, "the redrive starts a fresh retry schedule");
    assert_eq!(queue_counts(&app).await, actual_counts(&app).await);

    // Nothing is left to redrive: the call succeeds and requeues nothing.
    let answer = redrive_as(&app, &app.token, by_request(&id)).await.unwrap();
    assert_eq!(answer.messages_requeued, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_channel_redrive_takes_only_that_channels_messages_failed_within_the_window() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.retry_schedule_ms = vec![]).await;
    let fx = fake_fixture(&app, 1).await;
    let other = fake_fixture(&app, 1).await;
    let key = app.end_user(&fx.end_user_ids[0]).await.messaging_platform_key;
    let other_key = app.end_user(&other.end_user_ids[0]).await.messaging_platform_key;
    fake.script(&key, vec![transient(None), transient(None)]);
    fake.script(&other_key, vec![transient(None)]);

    let early = send(&app, fx.request()).await;
    app.dispatcher.run_once().await.unwrap();
    app.clock.advance_ms(HOUR_MS);
    let window_start = app.clock.now_ms();
    let late = send(&app, fx.request()).await;
    let elsewhere = send(&app, other.request()).await;
    app.dispatcher.run_once().await.unwrap();
    for id in [&early, &late, &elsewhere] {
        assert_eq!(record(&app, id).await.failed_message_count, 1);
    }

    let window = by_channel(&fx.channel.developer_name, window_start, window_start + 60_000);
    let answer = redrive_as(&app, &app.token, window).await.unwrap();
    assert_eq!((answer.messages_requeued, answer.request_ids), (1, vec![late.clone()]));
    assert_eq!(record(&app, &early).await.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(record(&app, &elsewhere).await.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(record(&app, &late).await.request_status, pb::RequestStatus::Pending as i32);
    app.dispatcher.run_once().await.unwrap();
    assert_eq!(record(&app, &late).await.success_message_count, 1);
    assert_eq!(queue_counts(&app).await, actual_counts(&app).await);
    app.stop().await;
}

#[tokio::test]
async fn redrive_needs_the_admin_scope_a_whole_window_and_the_callers_own_records() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let id = send(&app, fx.request()).await;
    let now = app.clock.now_ms();
    let err = redrive_as(&app, &app.read_token, by_request(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = redrive_as(&app, &app.other_token, by_request(&id)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = redrive_as(&app, &app.other_token, by_channel(&fx.channel.id, now - 1, now)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = redrive_as(&app, &app.token, by_channel(&fx.channel.id, now, now)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(violations(&err)[0].0, "channelWindow.failedBefore");
    let missing = pb::retry_failed_messages_request::Selector::ChannelWindow(pb::ChannelFailureWindow {
        channel: fx.channel.id.clone(),
        ..Default::default()
    });
    let err = redrive_as(&app, &app.token, missing).await.unwrap_err();
    let fields: Vec<String> = violations(&err).into_iter().map(|v| v.0).collect();
    assert_eq!(fields, ["channelWindow.failedFrom", "channelWindow.failedBefore"]);
    let err =
        app.admin().await.retry_failed_messages(pb::RetryFailedMessagesRequest { selector: None }).await.unwrap_err();
    assert_eq!(violations(&err)[0].0, "selector");
    // A pending request has nothing failed: nothing requeued, the request untouched.
    let answer = redrive_as(&app, &app.token, by_request(&id)).await.unwrap();
    assert_eq!(answer.messages_requeued, 0);
    app.stop().await;
}
