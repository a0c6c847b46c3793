//! Per-channel rate limits through the real server with the injected clock: a backlog
//! beyond the slot horizon waits in the queue, and a provider's `Retry-After` pauses the
//! whole channel. (Three replicas sharing one limit: `replicas::rate_limits`.)

use std::time::Duration;

use convmsg::clock::Clock;
use convmsg::grpc::pb;

use crate::control::*;
use crate::fake_provider::*;
use crate::helpers::*;

/// Runs one dispatcher pass to its end, moving the clock in 50 ms ticks only while the
/// dispatcher waits on it.
async fn run_once_ticking(app: &TestApp) {
    let dispatcher = app.dispatcher.clone();
    let run = tokio::spawn(async move { dispatcher.run_once().await });
    let ticking = tokio::time::timeout(Duration::from_secs(30), async {
        while !run.is_finished() {
            if app.clock.sleepers() > 0 {
                app.clock.advance_ms(50);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(ticking.is_ok(), "the pass finished");
    run.await.unwrap().unwrap();
}

async fn limited_fixture(app: &TestApp, n: usize, rate: f64) -> Fixture {
    app.provision_custom(&app.token.clone(), n, |c| {
        c.provider = "webhook".into();
        c.rate_limit_per_second = rate;
    })
    .await
}

#[tokio::test]
async fn messages_beyond_the_slot_horizon_wait_in_the_queue_and_the_spacing_holds_across_claims() {
    let fake = FakeProvider::new(test_clock());
    // lease 3 s: slots are taken at most 1 s ahead.
    let app = spawn_with_fake(&fake, false, |c| {
        c.dispatch.lease_ms = 3_000;
        c.dispatch.per_request_concurrency = 1; // one at a time: the clock ticks only while it waits
    })
    .await;
    let fx = limited_fixture(&app, 5, 1.0).await;
    let start = app.clock.now_ms();
    let id = send(&app, fx.request()).await;

    run_once_ticking(&app).await;
    // Two slots within the horizon (now, +1 s); three messages back in the queue.
    let r = record(&app, &id).await;
    assert_eq!((r.success_message_count, r.pending_message_count), (2, 3), "{:?}", reasons(&r));
    assert_eq!(r.request_status, pb::RequestStatus::Pending as i32, "the request freed its in-progress slot");
    assert!(r.messages.iter().all(|m| m.attempts <= 1), "waiting for a slot is not an attempt");

    for _ in 0..10 {
        if record(&app, &id).await.request_status == pb::RequestStatus::Completed as i32 {
            break;
        }
        app.clock.advance_ms(500);
        run_once_ticking(&app).await;
    }
    let done = record(&app, &id).await;
    assert_eq!((done.request_status, done.success_message_count), (pb::RequestStatus::Completed as i32, 5));
    let offsets: Vec<i64> = fake.sent().iter().map(|(t, _)| t - start).collect();
    assert_eq!(offsets.len(), 5);
    for pair in offsets.windows(2) {
        assert!(pair[1] - pair[0] >= 950, "one per second, across claims: {offsets:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_from_the_provider_pauses_the_whole_channel() {
    let fake = FakeProvider::new(test_clock());
    let app = spawn_with_fake(&fake, false, |c| {
        c.dispatch.per_request_concurrency = 1;
        c.dispatch.retry_schedule_ms = vec![100];
    })
    .await;
    let fx = limited_fixture(&app, 3, 100.0).await;
    let first = app.end_user(&fx.end_user_ids[0]).await.messaging_platform_key;
    fake.script(&first, vec![transient(Some(Duration::from_secs(5)))]);
    let start = app.clock.now_ms();
    let id = send(&app, fx.request()).await;
    run_once_ticking(&app).await;

    let sent: Vec<(i64, String)> = fake.sent().into_iter().map(|(t, m)| (t - start, m.recipient)).collect();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], (0, first.clone()));
    // The other two had slots at once (100/s), yet waited for the channel's pause.
    assert!(sent[1..].iter().all(|(t, _)| *t >= 5_000), "{sent:?}");
    let r = record(&app, &id).await;
    assert_eq!((r.success_message_count, r.pending_message_count), (2, 1));
    app.stop().await;
}
