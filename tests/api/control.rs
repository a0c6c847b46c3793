//! Delivery control through the real server: priority lanes, `send_at`, and
//! `CancelRequest`, with a holding in-process provider and the injected clock.

use std::sync::Arc;
use std::time::Duration;

use convmsg::clock::Clock;
use convmsg::grpc::pb;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::fake_provider::*;
use crate::helpers::*;

pub(crate) const HOUR_MS: i64 = 3_600_000;

pub(crate) async fn spawn_with_fake(
    fake: &FakeProvider,
    looping: bool,
    adjust: impl FnOnce(&mut convmsg::config::Config),
) -> TestApp {
    let provider: Arc<dyn convmsg::providers::Provider> = Arc::new(fake.clone());
    let app = spawn_app_with_providers(
        |c| {
            c.dispatch.enabled = looping;
            c.dispatch.poll_interval_ms = 20;
            adjust(c);
        },
        vec![provider],
    )
    .await;
    fake.use_clock(app.clock.clone());
    app
}

pub(crate) fn test_clock() -> convmsg::clock::ManualClock {
    convmsg::clock::ManualClock::new(1_767_225_600_000)
}

pub(crate) async fn fake_fixture(app: &TestApp, n: usize) -> Fixture {
    app.provision_custom(&app.token.clone(), n, |c| c.provider = "webhook".into()).await
}

pub(crate) fn at(ms: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
}

pub(crate) async fn send(app: &TestApp, request: pb::SendConversationMessagesRequest) -> String {
    app.conv().await.send_conversation_messages(request).await.unwrap().into_inner().request_id
}

pub(crate) async fn record(app: &TestApp, id: &str) -> pb::ConvMessageSendRequest {
    app.conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

pub(crate) async fn cancel_as(
    app: &TestApp,
    token: &str,
    id: &str,
) -> Result<pb::ConvMessageSendRequest, tonic::Status> {
    app.conv_as(Some(token))
        .await
        .cancel_request(pb::CancelRequestRequest { request_id: id.into() })
        .await
        .map(|r| r.into_inner().request.unwrap())
}

pub(crate) async fn wait_until_completed(app: &TestApp, id: &str) -> pb::ConvMessageSendRequest {
    let mut stream = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest { request_id: id.into(), ..Default::default() })
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
    .expect("completed in time");
    let last = last.expect("at least one update");
    assert_eq!(last.request_status, pb::RequestStatus::Completed as i32);
    last
}

/// Waits (bounded) until the provider has seen `n` messages.
pub(crate) async fn wait_for_sent(fake: &FakeProvider, n: usize) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while fake.sent().len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the provider never saw {n} messages (saw {})", fake.sent().len()));
}

/// The order in which the provider first saw each request.
pub(crate) fn first_seen_order(fake: &FakeProvider) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for (_, m) in fake.sent() {
        if !order.contains(&m.request_id) {
            order.push(m.request_id);
        }
    }
    order
}

pub(crate) fn reasons(r: &pb::ConvMessageSendRequest) -> Vec<(i32, String)> {
    r.messages.iter().map(|m| (m.status, m.reason.clone())).collect()
}

#[tokio::test]
async fn a_transactional_request_behind_300_bulk_requests_takes_the_next_free_slot_and_bulk_still_completes() {
    let fake = FakeProvider::holding(test_clock());
    let app = spawn_with_fake(&fake, true, |_| {}).await;
    let fx = fake_fixture(&app, 1).await;
    let bulk = pb::SendConversationMessagesRequest { priority: pb::Priority::Bulk as i32, ..fx.request() };
    let mut bulk_ids = Vec::new();
    for _ in 0..300 {
        bulk_ids.push(send(&app, bulk.clone()).await);
        app.clock.advance_ms(1);
    }
    // The in-progress limit (200, shared by the lanes) is full of bulk; 100 bulk wait.
    fake.wait_for_in_flight_requests(200).await;
    let urgent = send(&app, fx.request()).await; // priority unspecified: transactional
    assert_eq!(record(&app, &urgent).await.priority, pb::Priority::Transactional as i32);
    assert_eq!(record(&app, &bulk_ids[0]).await.priority, pb::Priority::Bulk as i32);

    // One bulk request finishes: its slot goes to the transactional request, ahead of
    // the 100 bulk requests accepted before it.
    fake.release(1);
    wait_for_sent(&fake, 201).await;
    let order = first_seen_order(&fake);
    assert_eq!(order[200], urgent, "the transactional request did not take the first free slot");

    fake.release_all();
    wait_until_completed(&app, &urgent).await;
    for id in &bulk_ids {
        wait_until_completed(&app, id).await;
    }
    let order = first_seen_order(&fake);
    assert_eq!(order.len(), 301);
    // FIFO within the bulk lane: the first 200 accepted were the first 200 claimed.
    let first: std::collections::HashSet<&String> = order[..200].iter().collect();
    assert_eq!(first, bulk_ids[..200].iter().collect());
    assert_eq!(fake.max_in_flight_requests(), 200, "the in-progress limit was exceeded");
    app.stop().await;
}

#[tokio::test]
async fn bulk_keeps_one_claimed_slot_in_five_while_transactional_requests_keep_arriving() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.claim_batch = 1).await;
    let fx = fake_fixture(&app, 1).await;
    let bulk = pb::SendConversationMessagesRequest { priority: pb::Priority::Bulk as i32, ..fx.request() };
    let mut bulk_ids = Vec::new();
    for _ in 0..3 {
        bulk_ids.push(send(&app, bulk.clone()).await);
        app.clock.advance_ms(1);
    }
    let mut transactional = Vec::new();
    for _ in 0..12 {
        transactional.push(send(&app, fx.request()).await);
        app.clock.advance_ms(1);
    }
    // One slot per claim: four transactional, then the oldest bulk, and so on.
    let mut lanes = String::new();
    for _ in 0..15 {
        let processed = app.dispatcher.run_once().await.unwrap();
        assert_eq!(processed.len(), 1);
        lanes.push(if bulk_ids.contains(&processed[0].request_id.to_string()) { 'b' } else { 't' });
    }
    assert_eq!(lanes, "ttttbttttbttttb");
    assert_eq!(first_seen_order(&fake).into_iter().filter(|id| bulk_ids.contains(id)).collect::<Vec<_>>(), bulk_ids);
    app.stop().await;
}

#[tokio::test]
async fn a_request_sent_for_later_stays_pending_and_is_claimed_only_once_due() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    let due = app.clock.now_ms() + HOUR_MS;
    let id = send(&app, pb::SendConversationMessagesRequest { send_at: at(due), ..fx.request() }).await;
    assert!(app.dispatcher.run_once().await.unwrap().is_empty(), "claimed before it was due");
    let waiting = record(&app, &id).await;
    assert_eq!(waiting.request_status, pb::RequestStatus::Pending as i32);
    assert_eq!(waiting.send_at, at(due));
    assert_eq!(waiting.pending_message_count, 2);

    app.clock.advance_ms(HOUR_MS - 1);
    assert!(app.dispatcher.run_once().await.unwrap().is_empty(), "claimed a millisecond early");
    app.clock.advance_ms(1);
    assert_eq!(app.dispatcher.run_once().await.unwrap().len(), 1);
    let done = record(&app, &id).await;
    assert_eq!(done.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(done.success_message_count, 2);
    assert!(fake.sent().iter().all(|(sent_ms, _)| *sent_ms >= due));
    app.stop().await;
}

#[tokio::test]
async fn send_at_over_a_minute_past_or_over_35_days_ahead_is_invalid_argument_naming_send_at() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let now = app.clock.now_ms();
    for bad in [now - 61_000, now + 35 * 24 * HOUR_MS + 1_000] {
        let err = app
            .conv()
            .await
            .send_conversation_messages(pb::SendConversationMessagesRequest { send_at: at(bad), ..fx.request() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(violations(&err).first().map(|v| v.0.as_str()), Some("sendAt"), "{err:?}");
    }
    // Within the tolerance it is accepted and means "now".
    let id = send(&app, pb::SendConversationMessagesRequest { send_at: at(now - 30_000), ..fx.request() }).await;
    assert_eq!(record(&app, &id).await.send_at, None);
    let err = app
        .conv()
        .await
        .send_conversation_messages(pb::SendConversationMessagesRequest { priority: 9, ..fx.request() })
        .await
        .unwrap_err();
    assert_eq!(violations(&err).first().map(|v| v.0.as_str()), Some("priority"));
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_scheduled_request_fails_its_messages_canceled_completes_it_and_is_idempotent() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 3).await;
    let due = app.clock.now_ms() + HOUR_MS;
    let id = send(&app, pb::SendConversationMessagesRequest { send_at: at(due), ..fx.request() }).await;
    app.clock.advance_ms(5);
    let canceled = cancel_as(&app, &app.token, &id).await.unwrap();
    assert_eq!(canceled.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(reasons(&canceled), vec![(pb::MessageState::Failed as i32, "Canceled".to_owned()); 3]);
    assert_eq!(canceled.failed_message_count, 3);
    assert_eq!(canceled.pending_message_count, 0);
    assert!(canceled.completed_date.is_some());
    assert_eq!(canceled.canceled_date, canceled.completed_date);

    // A second cancel answers the same, later.
    app.clock.advance_ms(1_000);
    let again = cancel_as(&app, &app.token, &id).await.unwrap();
    assert_eq!(again, canceled);
    // Once due, nothing is sent.
    app.clock.advance_ms(HOUR_MS);
    assert!(app.dispatcher.run_once().await.unwrap().is_empty());
    assert!(fake.sent().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn cancelling_a_completed_request_is_failed_precondition_and_another_tenants_is_not_found() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 1).await;
    let id = send(&app, fx.request()).await;
    let err = cancel_as(&app, &app.read_token, &id).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = cancel_as(&app, &app.other_token, &id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    app.dispatcher.run_once().await.unwrap();
    let err = cancel_as(&app, &app.token, &id).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let done = record(&app, &id).await;
    assert_eq!((done.success_message_count, done.canceled_date), (1, None));
    app.stop().await;
}

#[tokio::test]
async fn a_message_in_flight_when_cancelled_finishes_and_nothing_more_is_sent() {
    let fake = FakeProvider::holding(test_clock());
    let app = spawn_with_fake(&fake, true, |c| c.dispatch.per_request_concurrency = 1).await;
    let fx = fake_fixture(&app, 3).await;
    let id = send(&app, fx.request()).await;
    wait_for_sent(&fake, 1).await;
    let canceled = cancel_as(&app, &app.token, &id).await.unwrap();
    // The one in flight goes on; the other two will never be sent.
    assert_eq!(canceled.request_status, pb::RequestStatus::InProgress as i32);
    assert_eq!((canceled.in_progress_message_count, canceled.failed_message_count), (1, 2));
    assert!(canceled.canceled_date.is_some() && canceled.completed_date.is_none());

    fake.release_all();
    let done = wait_until_completed(&app, &id).await;
    assert_eq!((done.success_message_count, done.failed_message_count), (1, 2));
    assert_eq!(done.pending_message_count + done.in_progress_message_count, 0);
    assert!(done.completed_date.is_some());
    assert_eq!(fake.sent().len(), 1, "a message was sent after the cancel");
    app.stop().await;
}

#[tokio::test]
async fn a_cancel_answered_by_one_replica_stops_the_sends_of_another_after_its_message_in_flight() {
    // Two servers on one PostgreSQL database (whatever the suite's backend): `sender`
    // delivers, `front` only accepts and cancels.
    let db = TestDatabase::postgres().await;
    let url = db.url.clone();
    let fake = FakeProvider::holding(test_clock());
    let provider: Arc<dyn convmsg::providers::Provider> = Arc::new(fake.clone());
    let sender = spawn_app_on(
        db,
        |c| {
            c.dispatch.poll_interval_ms = 20;
            c.dispatch.per_request_concurrency = 1;
        },
        vec![provider],
    )
    .await;
    // Started second, its tokens are the database's from now on.
    let front = spawn_app_on(TestDatabase::at(&url), |c| c.dispatch.enabled = false, Vec::new()).await;
    let fx = front.provision_custom(&front.token.clone(), 3, |c| c.provider = "webhook".into()).await;
    let id = send(&front, fx.request()).await;
    wait_for_sent(&fake, 1).await;

    let canceled = cancel_as(&front, &front.token, &id).await.unwrap();
    assert_eq!((canceled.in_progress_message_count, canceled.failed_message_count), (1, 2));
    fake.release_all();
    let done = wait_until_completed(&front, &id).await;
    assert_eq!((done.success_message_count, done.failed_message_count), (1, 2));
    assert_eq!(done.messages.iter().filter(|m| m.reason == "Canceled").count(), 2, "{:?}", reasons(&done));
    assert_eq!(fake.sent().len(), 1, "the other replica sent after the cancel was answered");
    front.stop().await;
    sender.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_schedule_and_priority_and_refuses_another() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let due = app.clock.now_ms() + HOUR_MS;
    let keyed = pb::SendConversationMessagesRequest {
        idempotency_key: "reminder-7".into(),
        send_at: at(due),
        priority: pb::Priority::Bulk as i32,
        ..fx.request()
    };
    let first = send(&app, keyed.clone()).await;
    // The same call again, even once its time has come, is the first answer.
    app.clock.advance_ms(HOUR_MS + 30_000);
    assert_eq!(send(&app, keyed.clone()).await, first);
    for other in [
        pb::SendConversationMessagesRequest { send_at: at(due + 1_000), ..keyed.clone() },
        pb::SendConversationMessagesRequest { priority: pb::Priority::Transactional as i32, ..keyed.clone() },
    ] {
        let err = app.conv().await.send_conversation_messages(other).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    }
    app.stop().await;
}
