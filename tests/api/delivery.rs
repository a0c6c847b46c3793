//! Delivery: the in-progress limit seen from the provider, gating at send time,
//! rendering, retries, rate limits, record keeping and the status stream.
//! Time-dependent rules are driven by the injected clock, never by sleeping.

use std::sync::Arc;
use std::time::Duration;

use convmsg::domain::model::RequestStatus;
use convmsg::grpc::pb;
use tokio_stream::StreamExt;

use crate::fake_provider::*;
use crate::helpers::*;

/// A server whose "webhook" provider is `fake`; the dispatcher loop runs only if `looping`.
async fn spawn_with_fake(
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

async fn fake_fixture(app: &TestApp, n: usize) -> Fixture {
    app.provision_custom(&app.token.clone(), n, |c| c.provider = "webhook".into()).await
}

async fn record(app: &TestApp, id: &str) -> pb::ConvMessageSendRequest {
    app.conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

/// The counts always agree with the messages.
fn assert_consistent(r: &pb::ConvMessageSendRequest) {
    let count = |s: pb::MessageState| r.messages.iter().filter(|m| m.status == s as i32).count() as u32;
    assert_eq!(r.pending_message_count, count(pb::MessageState::Pending));
    assert_eq!(r.in_progress_message_count, count(pb::MessageState::InProgress));
    assert_eq!(r.success_message_count, count(pb::MessageState::Success));
    assert_eq!(r.failed_message_count, count(pb::MessageState::Failed));
    assert_eq!(
        r.total_message_count,
        r.pending_message_count + r.in_progress_message_count + r.success_message_count + r.failed_message_count
    );
    assert_eq!(r.completed_date.is_some(), r.request_status == pb::RequestStatus::Completed as i32);
}

async fn send(app: &TestApp, request: pb::SendConversationMessagesRequest) -> pb::SendConversationMessagesResponse {
    app.conv().await.send_conversation_messages(request).await.unwrap().into_inner()
}

async fn run_once(app: &TestApp) -> Vec<Option<RequestStatus>> {
    app.dispatcher.run_once().await.unwrap().into_iter().map(|p| p.status).collect()
}

#[tokio::test]
async fn at_most_200_requests_are_in_progress_and_the_rest_wait_their_turn() {
    let fake = FakeProvider::holding(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, true, |_| {}).await;
    let fx = fake_fixture(&app, 1).await;
    let mut ids = Vec::new();
    for _ in 0..230 {
        ids.push(send(&app, fx.request()).await.request_id);
        // Distinct accept times: requests accepted in the same millisecond are ordered
        // by id, not by arrival, and the test clock does not move by itself.
        app.clock.advance_ms(1);
    }
    // With 230 waiting and 200 slots, the provider sees exactly 200 requests at once.
    fake.wait_for_in_flight_requests(200).await;
    assert_eq!(fake.max_in_flight_requests(), 200);
    let waiting = record(&app, ids.last().unwrap()).await;
    assert_eq!(waiting.request_status, pb::RequestStatus::Pending as i32);

    fake.release_all();
    for id in &ids {
        wait_until_completed(&app, id).await;
    }
    assert_eq!(fake.max_in_flight_requests(), 200, "the limit was exceeded");
    assert_eq!(requests_seen(&fake.sent()).len(), 230);
    // FIFO: the first 200 accepted were the first 200 the provider saw.
    let first_seen: std::collections::HashSet<String> =
        fake.sent()[..200].iter().map(|(_, m)| m.request_id.clone()).collect();
    assert!(ids[..200].iter().all(|id| first_seen.contains(id)));
}

/// Test clocks start at 2026-01-01.
struct ManualClockFor;
impl ManualClockFor {
    fn clock() -> convmsg::clock::ManualClock {
        convmsg::clock::ManualClock::new(1_767_225_600_000)
    }
}

async fn wait_until_completed(app: &TestApp, id: &str) -> pb::ConvMessageSendRequest {
    let mut stream = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest { request_id: id.into(), follow_receipts: false })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = stream.next().await {
            last = update.unwrap().request;
        }
    })
    .await
    .expect("completed in time");
    let last = last.expect("at least one update");
    assert_eq!(last.request_status, pb::RequestStatus::Completed as i32);
    assert_consistent(&last);
    last
}

#[tokio::test]
async fn at_most_five_messages_of_one_request_are_in_flight_at_once() {
    let fake = FakeProvider::holding(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, true, |_| {}).await;
    let fx = fake_fixture(&app, 12).await;
    let id = send(&app, fx.request()).await.request_id;
    tokio::time::timeout(Duration::from_secs(20), async {
        while fake.sent().len() < 5 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let during = record(&app, &id).await;
    assert_eq!(during.request_status, pb::RequestStatus::InProgress as i32);
    assert_eq!(during.in_progress_message_count, 5);
    fake.release_all();
    let done = wait_until_completed(&app, &id).await;
    assert_eq!(done.success_message_count, 12);
    assert_eq!(fake.max_in_flight_per_request(), 5);
    for m in &done.messages {
        assert_eq!(m.attempts, 1);
        assert_eq!(m.provider_message_id, format!("fake-{}", m.message_identifier));
    }
}

#[tokio::test]
async fn consent_is_checked_when_the_message_is_sent_not_only_when_accepted() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = app
        .provision_custom(&app.token.clone(), 2, |c| {
            c.provider = "webhook".into();
            c.consent_type = pb::ChannelConsentLevel::ExplicitOptIn as i32;
        })
        .await;
    let mut request = fx.request();
    request.is_enforce_messaging_channel_consent = Some(true);
    let reply = send(&app, request).await;
    // After the accept, the first end user opts out.
    app.set_consent(&fx.end_user_ids[0], pb::ConsentStatus::OptedOut).await;
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Completed)]);
    let r = record(&app, &reply.request_id).await;
    assert_consistent(&r);
    assert_eq!((r.success_message_count, r.failed_message_count), (1, 1));
    assert_eq!(r.messages[0].status, pb::MessageState::Failed as i32);
    assert_eq!(r.messages[0].reason, "EndUserIsNotOptedIn");
    assert_eq!(fake.sent().len(), 1, "the opted-out user was not sent to");
}

#[tokio::test]
async fn an_implicitly_opted_in_user_fails_an_explicit_opt_in_channel_only_when_consent_is_enforced() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = app
        .provision_custom(&app.token.clone(), 1, |c| {
            c.provider = "webhook".into();
            c.consent_type = pb::ChannelConsentLevel::DoubleOptIn as i32;
        })
        .await;
    let mut enforced = fx.request();
    enforced.is_enforce_messaging_channel_consent = Some(true);
    let a = send(&app, enforced).await;
    let b = send(&app, fx.request()).await;
    let mut custom = fx.request();
    custom.channel_consent_type = pb::ChannelConsentType::Custom as i32;
    let c = send(&app, custom).await;
    run_once(&app).await;
    assert_eq!(record(&app, &a.request_id).await.messages[0].reason, "EndUserIsNotOptedIn");
    assert_eq!(record(&app, &b.request_id).await.success_message_count, 1);
    assert_eq!(record(&app, &c.request_id).await.success_message_count, 1);
}

#[tokio::test]
async fn subscription_consent_sends_only_to_users_opted_in_to_that_subscription() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    let mut admin = app.admin().await;
    let sub = admin
        .upsert_communication_subscription(pb::UpsertCommunicationSubscriptionRequest {
            communication_subscription: Some(pb::CommunicationSubscription {
                developer_name: "Offers".into(),
                messaging_channel_id: fx.channel.id.clone(),
                is_active: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .communication_subscription
        .unwrap();
    admin
        .set_subscription_consent(pb::SetSubscriptionConsentRequest {
            communication_subscription_id: sub.id.clone(),
            messaging_end_user_ids: vec![fx.end_user_ids[1].clone()],
            status: pb::SubscriptionConsentStatus::OptedIn as i32,
        })
        .await
        .unwrap();
    let mut request = fx.request();
    request.is_enforce_messaging_channel_consent = Some(true);
    request.channel_consent_type = pb::ChannelConsentType::CommunicationSubscription as i32;
    request.communication_subscription_id = sub.id;
    let reply = send(&app, request).await;
    run_once(&app).await;
    let r = record(&app, &reply.request_id).await;
    assert_eq!(r.messages[0].reason, "EndUserIsNotOptedIn");
    assert_eq!(r.messages[1].status, pb::MessageState::Success as i32);
}

async fn set_session(app: &TestApp, end_user: &str, status: pb::SessionStatus) {
    app.admin()
        .await
        .set_messaging_session_status(pb::SetMessagingSessionStatusRequest {
            messaging_end_user_id: end_user.into(),
            status: status as i32,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn non_active_holds_a_message_while_the_session_is_active_and_sends_when_it_changes() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Active).await;
    let mut request = fx.request();
    request.allowed_session_status = pb::AllowedSessionStatus::NonActive as i32;
    let reply = send(&app, request).await;

    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Pending)]);
    let held = record(&app, &reply.request_id).await;
    assert_consistent(&held);
    assert_eq!(held.request_status, pb::RequestStatus::Pending as i32);
    assert_eq!(held.messages[0].status, pb::MessageState::Pending as i32);
    assert_eq!(held.messages[0].waiting_reason, "SessionActive");
    assert_eq!(held.messages[1].status, pb::MessageState::Success as i32);

    // While it only waits, the request is not claimed again and holds no slot.
    app.clock.advance_ms(3_600_000);
    assert!(run_once(&app).await.is_empty());

    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Inactive).await;
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Completed)]);
    let done = record(&app, &reply.request_id).await;
    assert_eq!(done.success_message_count, 2);
    assert_eq!(done.messages[0].waiting_reason, "");
}

#[tokio::test]
async fn closed_holds_while_any_session_is_open_and_fails_after_the_maximum_wait() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.session_wait_max_ms = 48 * 3_600_000).await;
    let fx = fake_fixture(&app, 1).await;
    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Waiting).await;
    let mut request = fx.request();
    request.allowed_session_status = pb::AllowedSessionStatus::Closed as i32;
    let reply = send(&app, request).await;
    run_once(&app).await;
    assert_eq!(record(&app, &reply.request_id).await.messages[0].waiting_reason, "SessionOpen");

    // A change that keeps the session open re-checks and holds again.
    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Paused).await;
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Pending)]);

    app.clock.advance_ms(48 * 3_600_000 - 1);
    assert!(run_once(&app).await.is_empty(), "not due before the wait expires");
    app.clock.advance_ms(1);
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Completed)]);
    let r = record(&app, &reply.request_id).await;
    assert_eq!(r.messages[0].reason, "SessionWaitExpired");
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn merge_fields_are_rendered_from_typed_parameters() {
    use pb::message_definition_input_parameter::Value;
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 1).await;
    let mut request = fx.request();
    request.messaging_definition_input_parameters.extend([
        pb::MessageDefinitionInputParameter { name: "Amount".into(), value: Some(Value::NumberValue(12.50)) },
        pb::MessageDefinitionInputParameter {
            name: "DueDate".into(),
            value: Some(Value::DateValue("2026-02-28".into())),
        },
    ]);
    request.idempotency_key = "render-1".into();
    let reply = send(&app, request).await;
    run_once(&app).await;
    let (_, message) = fake.sent().pop().unwrap();
    assert_eq!(message.text, "Hi Ada, 12.5 is due on 2026-02-28.");
    assert_eq!(message.message_identifier, reply.message_identifiers[0]);
    assert_eq!(message.recipient, record(&app, &reply.request_id).await.messages[0].platform_key);
}

#[tokio::test]
async fn a_whatsapp_channel_without_an_approved_template_fails_template_required() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = app
        .provision_custom(&app.token.clone(), 1, |c| {
            c.provider = "webhook".into();
            c.message_type = pb::MessageType::Whatsapp as i32;
        })
        .await;
    let reply = send(&app, fx.request()).await;
    run_once(&app).await;
    assert_eq!(record(&app, &reply.request_id).await.messages[0].reason, "ApprovedExternalTemplateRequired");
    assert!(fake.sent().is_empty());

    // With an approved template, the provider gets its name and rendered body parameters.
    let mut definition = fx.definition.clone();
    definition.external_template = Some(pb::ExternalTemplate {
        template_name: "payment_due".into(),
        language: "en_US".into(),
        status: pb::ExternalTemplateStatus::Approved as i32,
        body_parameters: vec!["CustomerName".into()],
        ..Default::default()
    });
    app.admin()
        .await
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest { message_definition: Some(definition) })
        .await
        .unwrap();
    send(&app, fx.request()).await;
    run_once(&app).await;
    let (_, message) = fake.sent().pop().unwrap();
    let template = message.template.expect("a template");
    assert_eq!((template.name.as_str(), template.body_parameters), ("payment_due", vec!["Ada".to_owned()]));
}

#[tokio::test]
async fn transient_failures_are_retried_on_the_schedule_and_the_request_frees_its_slot_meanwhile() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| {
        c.dispatch.retry_schedule_ms = vec![1_000, 5_000];
        c.dispatch.retry_jitter = 0.0;
    })
    .await;
    let fx = fake_fixture(&app, 1).await;
    let key = app.end_user(&fx.end_user_ids[0]).await.messaging_platform_key;
    fake.script(&key, vec![transient(None), transient(None)]);
    let reply = send(&app, fx.request()).await;

    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Pending)]);
    let r = record(&app, &reply.request_id).await;
    assert_consistent(&r);
    assert_eq!((r.messages[0].status, r.messages[0].attempts), (pb::MessageState::Pending as i32, 1));
    app.clock.advance_ms(999);
    assert!(run_once(&app).await.is_empty(), "not before the first delay");
    app.clock.advance_ms(1);
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Pending)]);
    app.clock.advance_ms(5_000);
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Completed)]);
    let r = record(&app, &reply.request_id).await;
    assert_eq!((r.messages[0].status, r.messages[0].attempts), (pb::MessageState::Success as i32, 3));
    // Every attempt carried the same identifier: the receiver's dedup key.
    assert!(fake.sent().iter().all(|(_, m)| m.message_identifier == reply.message_identifiers[0]));
}

#[tokio::test]
async fn a_providers_retry_after_is_honoured_and_exhausted_retries_fail() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| {
        c.dispatch.retry_schedule_ms = vec![1_000];
        c.dispatch.retry_jitter = 0.0;
    })
    .await;
    let fx = fake_fixture(&app, 1).await;
    let key = app.end_user(&fx.end_user_ids[0]).await.messaging_platform_key;
    fake.script(&key, vec![transient(Some(Duration::from_secs(60))), transient(None)]);
    let reply = send(&app, fx.request()).await;
    run_once(&app).await;
    app.clock.advance_ms(59_999);
    assert!(run_once(&app).await.is_empty(), "Retry-After is honoured");
    app.clock.advance_ms(1);
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Completed)]);
    let r = record(&app, &reply.request_id).await;
    assert_eq!((r.messages[0].reason.as_str(), r.messages[0].attempts), ("RetriesExhausted", 2));
}

#[tokio::test]
async fn a_permanent_provider_failure_fails_the_message_with_the_providers_reason() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 1).await;
    let user = app.end_user(&fx.end_user_ids[0]).await;
    fake.script(&user.messaging_platform_key, vec![permanent("InvalidRecipient")]);
    let reply = send(&app, fx.request()).await;
    run_once(&app).await;
    let r = record(&app, &reply.request_id).await;
    assert_eq!((r.messages[0].reason.as_str(), r.messages[0].attempts), ("InvalidRecipient", 1));
    assert_eq!(r.request_status, pb::RequestStatus::Completed as i32);
}

#[tokio::test]
async fn a_channel_rate_limit_spaces_sends_at_its_rate() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.per_request_concurrency = 1).await;
    let start = {
        use convmsg::clock::Clock;
        app.clock.now_ms()
    };
    let fx = app
        .provision_custom(&app.token.clone(), 5, |c| {
            c.provider = "webhook".into();
            c.rate_limit_per_second = 2.0;
        })
        .await;
    send(&app, fx.request()).await;
    let dispatcher = app.dispatcher.clone();
    let run = tokio::spawn(async move { dispatcher.run_once().await });
    // Time moves in 50 ms ticks, and only while the dispatcher waits on the clock (not
    // while it talks to the database, which may be slow on a busy machine).
    let ticking = tokio::time::timeout(Duration::from_secs(20), async {
        while !run.is_finished() {
            if app.clock.sleepers() > 0 {
                app.clock.advance_ms(50);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(ticking.is_ok(), "the sends finished");
    run.await.unwrap().unwrap();
    let offsets: Vec<i64> = fake.sent().iter().map(|(t, _)| t - start).collect();
    assert_eq!(offsets.len(), 5);
    // A burst of two, then one every 500 ms; each observed time is within one tick of its slot.
    assert!(offsets[1] - offsets[0] <= 50, "{offsets:?}");
    for pair in offsets[1..].windows(2) {
        assert!((450..=550).contains(&(pair[1] - pair[0])), "{offsets:?}");
    }
    assert!((1_450..=1_550).contains(&(offsets[4] - offsets[1])), "{offsets:?}");
}

#[tokio::test]
async fn the_status_stream_sends_the_current_state_then_every_change_and_ends_after_completed() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 3).await;
    let reply = send(&app, fx.request()).await;
    let mut stream = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest {
            request_id: reply.request_id.clone(),
            follow_receipts: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap().request.unwrap();
    assert_eq!(first.request_status, pb::RequestStatus::Pending as i32);
    run_once(&app).await;
    let mut updates = vec![];
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(update) = stream.next().await {
            updates.push(update.unwrap().request.unwrap());
        }
    })
    .await
    .expect("the stream ends");
    let last = updates.last().unwrap();
    assert_eq!(last.request_status, pb::RequestStatus::Completed as i32);
    assert_eq!(last.success_message_count, 3);
    for u in &updates {
        assert_consistent(u);
    }
    // A finished request streams its final state and ends at once.
    let mut again = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest {
            request_id: reply.request_id.clone(),
            follow_receipts: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.next().await.unwrap().unwrap().request.unwrap().request_status,
        pb::RequestStatus::Completed as i32
    );
    assert!(again.next().await.is_none());
}

#[tokio::test]
async fn a_claim_lost_to_a_takeover_cannot_send_or_write_even_from_the_same_process() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.lease_ms = 1_000).await;
    let fx = fake_fixture(&app, 1).await;
    let reply = send(&app, fx.request()).await;
    let first = app.dispatcher.claim().await.unwrap();
    assert_eq!(first.len(), 1);
    // The first claim stalls past its lease; the same process claims the request again.
    app.clock.advance_ms(1_001);
    let second = app.dispatcher.claim().await.unwrap();
    assert_eq!(second.len(), 1);
    assert!(second[0].takeover);
    assert_ne!(first[0].lease, second[0].lease);
    // The stale claim can neither send nor record anything.
    assert_eq!(app.dispatcher.clone().process(first[0].clone()).await.unwrap(), None);
    assert!(fake.sent().is_empty());
    assert_eq!(app.dispatcher.clone().process(second[0].clone()).await.unwrap(), Some(RequestStatus::Completed));
    assert_eq!(fake.sent().len(), 1);
    // Each claim began the message's send in its own transaction, so each counted an
    // attempt: for all the second claim knows, the stalled one had sent it.
    assert_eq!(record(&app, &reply.request_id).await.messages[0].attempts, 2);
}

#[tokio::test]
async fn a_message_sent_after_a_session_wait_starts_a_fresh_wait_if_its_retry_meets_another_session() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| {
        c.dispatch.retry_schedule_ms = vec![1_000];
        c.dispatch.retry_jitter = 0.0;
    })
    .await;
    let fx = fake_fixture(&app, 1).await;
    let key = app.end_user(&fx.end_user_ids[0]).await.messaging_platform_key;
    fake.script(&key, vec![transient(None)]);
    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Active).await;
    let mut request = fx.request();
    request.allowed_session_status = pb::AllowedSessionStatus::NonActive as i32;
    let reply = send(&app, request).await;
    run_once(&app).await; // held since now
    app.clock.advance_ms(47 * 3_600_000);
    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Inactive).await;
    run_once(&app).await; // sent; the provider fails transiently: retry in 1 s
    set_session(&app, &fx.end_user_ids[0], pb::SessionStatus::Active).await;
    app.clock.advance_ms(3_600_000); // 48 h after the first wait began
    assert_eq!(run_once(&app).await, vec![Some(RequestStatus::Pending)]);
    let m = &record(&app, &reply.request_id).await.messages[0];
    assert_eq!(
        (m.status, m.reason.as_str(), m.waiting_reason.as_str()),
        (pb::MessageState::Pending as i32, "", "SessionActive")
    );
}

/// A claim reads the work of every request it took in its own transaction, set-wise:
/// each claim carries its own request's due messages, in recipient order, with its
/// component and parameters, and none of another request's.
#[tokio::test]
async fn each_claim_carries_the_work_of_its_own_request_read_in_the_claim() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 4).await;
    let mut sent = Vec::new();
    for (i, recipients) in [&fx.end_user_ids[..1], &fx.end_user_ids[1..4], &fx.end_user_ids[..]].into_iter().enumerate()
    {
        let mut request = fx.request();
        request.messaging_end_user_ids = recipients.iter().rev().cloned().collect();
        request.messaging_definition_input_parameters = vec![text_param("CustomerName", &format!("Ada {i}"))];
        sent.push((send(&app, request.clone()).await, request));
        app.clock.advance_ms(1);
    }
    let claims = app.dispatcher.claim().await.unwrap();
    assert_eq!(claims.len(), 3);
    for (claim, (response, request)) in claims.iter().zip(&sent) {
        assert_eq!(claim.request_id.as_str(), response.request_id, "FIFO");
        let work = claim.work.as_ref().expect("the claim read its work");
        assert_eq!(work.request_id, claim.request_id);
        assert_eq!(work.lease, claim.lease);
        assert_eq!(work.definition_name, fx.definition.api_name);
        assert!(work.definition.is_some());
        let name = match &request.messaging_definition_input_parameters[0].value {
            Some(pb::message_definition_input_parameter::Value::TextValue(v)) => v.clone(),
            other => panic!("{other:?}"),
        };
        assert!(work.parameters_json.contains(&name), "{} has {name}", work.parameters_json);
        let identifiers: Vec<&str> = work.items.iter().map(|i| i.identifier.as_str()).collect();
        assert_eq!(identifiers, response.message_identifiers.iter().map(String::as_str).collect::<Vec<_>>());
        let users: Vec<&str> = work.items.iter().map(|i| i.end_user.id.as_str()).collect();
        assert_eq!(users, request.messaging_end_user_ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(work.items.iter().all(|i| i.channel.id.as_str() == fx.channel.id && i.attempts == 0));
    }
    // The turns deliver what their claims read.
    for claim in claims {
        let id = claim.request_id.clone();
        let processed = app.dispatcher.clone().process(claim).await.unwrap();
        assert_eq!(processed, Some(RequestStatus::Completed), "{id}");
    }
    assert_eq!(fake.sent().len(), 1 + 3 + 4);
}

/// A claimed request whose stored row does not read back fails alone: the claim still
/// takes and reads the others, and the bad one's turn reports which column is wrong.
#[tokio::test]
async fn a_request_that_does_not_read_back_fails_alone_and_the_rest_of_its_claim_is_delivered() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    let good = send(&app, fx.request()).await;
    app.clock.advance_ms(1);
    let bad = send(&app, fx.request()).await;
    app.db.execute(&format!("UPDATE send_requests SET consent_type = 'Bogus' WHERE id = '{}'", bad.request_id)).await;
    let claims = app.dispatcher.claim().await.unwrap();
    let ids: Vec<&str> = claims.iter().map(|c| c.request_id.as_str()).collect();
    assert_eq!(ids, [good.request_id.as_str(), bad.request_id.as_str()]);
    assert!(claims[0].work.is_some());
    assert!(claims[1].work.is_none(), "its work does not read back");
    let mut claims = claims.into_iter();
    let first = app.dispatcher.clone().process(claims.next().unwrap()).await.unwrap();
    assert_eq!(first, Some(RequestStatus::Completed));
    let err = app.dispatcher.clone().process(claims.next().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("send_requests.consent_type"), "{err}");
    assert_eq!(fake.sent().len(), 2, "only the good request was sent");
}

/// Each message's (state, attempts), in recipient order.
fn status_and_attempts(r: &pb::ConvMessageSendRequest) -> Vec<(i32, u32)> {
    r.messages.iter().map(|m| (m.status, m.attempts)).collect()
}

/// A claim begins the first wave of each request's sends in its own transaction: the
/// first `per_request_concurrency` messages the gate lets through are `InProgress` with
/// their attempt counted when the claim answers. A message on a rate-limited channel
/// waits for its slot and is not begun; neither is one the gate holds. The turn sends
/// the begun ones without a start of its own and starts the rest as before.
#[tokio::test]
async fn a_claim_begins_the_first_wave_of_sends_and_leaves_the_rest_to_the_turn() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |c| c.dispatch.per_request_concurrency = 2).await;
    let fx = fake_fixture(&app, 4).await;
    let limited = app
        .provision_custom(&app.token.clone(), 1, |c| {
            c.provider = "webhook".into();
            c.rate_limit_per_second = 5.0;
        })
        .await;
    // The second user holds its message: an active session, the request non-active only.
    set_session(&app, &fx.end_user_ids[1], pb::SessionStatus::Active).await;
    let mut request = fx.request();
    request.allowed_session_status = pb::AllowedSessionStatus::NonActive as i32;
    let wide = send(&app, request).await;
    app.clock.advance_ms(1);
    let slow = send(&app, limited.request()).await;

    let claims = app.dispatcher.claim().await.unwrap();
    assert_eq!(claims.len(), 2);
    let begun = |i: usize| -> Vec<bool> { claims[i].work.as_ref().unwrap().items.iter().map(|m| m.started).collect() };
    // Users 0, 2 and 3 may be sent now; the first two of them (the concurrency) are begun.
    assert_eq!(begun(0), [true, false, true, false]);
    assert_eq!(begun(1), [false], "a rate-limited channel's message waits for its slot");
    let stored = record(&app, &wide.request_id).await;
    let state = status_and_attempts(&stored);
    let (in_progress, pending) = (pb::MessageState::InProgress as i32, pb::MessageState::Pending as i32);
    assert_eq!(state, [(in_progress, 1), (pending, 0), (in_progress, 1), (pending, 0)]);
    assert_consistent(&stored);
    assert_eq!(record(&app, &slow.request_id).await.messages[0].attempts, 0);

    for claim in claims {
        app.dispatcher.clone().process(claim).await.unwrap();
    }
    let done = record(&app, &wide.request_id).await;
    let state = status_and_attempts(&done);
    let success = pb::MessageState::Success as i32;
    assert_eq!(state, [(success, 1), (pending, 0), (success, 1), (success, 1)], "one attempt per send");
    assert_eq!(record(&app, &slow.request_id).await.messages[0].status, success);
    assert_eq!(fake.sent().len(), 4);
}

/// A message its claim began that is not sent after all — the dispatcher stopped
/// starting sends first — is due again with its attempt given back, and the request
/// goes back to the queue with nothing sent.
#[tokio::test]
async fn a_begun_message_that_is_not_sent_because_sending_stopped_gives_its_attempt_back() {
    let fake = FakeProvider::new(ManualClockFor::clock());
    let app = spawn_with_fake(&fake, false, |_| {}).await;
    let fx = fake_fixture(&app, 2).await;
    let reply = send(&app, fx.request()).await;
    let claims = app.dispatcher.claim().await.unwrap();
    assert!(claims[0].work.as_ref().unwrap().items.iter().all(|m| m.started));
    assert!(record(&app, &reply.request_id).await.messages.iter().all(|m| m.attempts == 1));

    app.dispatcher.stop_sending();
    let status = app.dispatcher.clone().process(claims[0].clone()).await.unwrap();
    assert_eq!(status, Some(RequestStatus::Pending));
    let stored = record(&app, &reply.request_id).await;
    assert_eq!(stored.request_status, pb::RequestStatus::Pending as i32);
    let state = status_and_attempts(&stored);
    assert_eq!(state, [(pb::MessageState::Pending as i32, 0); 2]);
    assert_consistent(&stored);
    assert!(fake.sent().is_empty());
}
