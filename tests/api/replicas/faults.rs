//! Faults under the accept writer on PostgreSQL (always PostgreSQL, whatever the suite's
//! backend): the writer's database connection killed mid-batch from a second connection
//! (`pg_terminate_backend`), and a private server stopped hard (`-m immediate`, then
//! `-m fast`) while callers keep sending. An acknowledgement must mean the batch
//! committed: afterwards every acknowledged request exists with its messages and is
//! delivered; what could not be committed was refused UNAVAILABLE. Bounded in time and
//! in calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::Code;

use super::PrivatePostgres;
use crate::helpers::{Fixture, TestApp, TestDatabase, spawn_app_on};

/// Concurrent callers, each sending one request after another.
const CALLERS: usize = 8;
/// Most requests acknowledged in one run of the callers during an outage round (a bound
/// on the test's work, and on the backlog a debug build on a busy machine delivers after).
const MAX_PER_ROUND: usize = 400;

/// What the callers were told.
#[derive(Default)]
struct Tally {
    /// Request id and message identifiers of every OK answer.
    acknowledged: Vec<(String, Vec<String>)>,
    /// Calls refused UNAVAILABLE.
    unavailable: usize,
}

/// Sends from `CALLERS` clients until `stop` (or `max` acknowledged); any answer other
/// than OK or UNAVAILABLE fails the test.
async fn send_until(app: &TestApp, fixture: &Fixture, stop: CancellationToken, max: usize) -> Tally {
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (mut client, request, stop, acknowledged) =
            (app.conv().await, fixture.request(), stop.clone(), acknowledged.clone());
        callers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while !stop.is_cancelled() && acknowledged.load(Ordering::Relaxed) < max {
                match client.send_conversation_messages(request.clone()).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        tally.acknowledged.push((reply.request_id, reply.message_identifiers));
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) if status.code() == Code::Unavailable => {
                        tally.unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(status) => panic!("a send under database faults answered {status:?}"),
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for caller in callers {
        let tally = caller.await.expect("caller task");
        total.acknowledged.extend(tally.acknowledged);
        total.unavailable += tally.unavailable;
    }
    total
}

/// Every acknowledged request and message is stored, and delivery takes each to
/// `Completed` with every message `Success`.
async fn assert_recorded_and_delivered(app: &TestApp, url: &str, tally: &Tally) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let ids: Vec<String> = tally.acknowledged.iter().map(|(id, _)| id.clone()).collect();
    let identifiers: Vec<String> = tally.acknowledged.iter().flat_map(|(_, m)| m.clone()).collect();
    let stored: Vec<String> = sqlx::query_scalar("SELECT id FROM send_requests WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .unwrap();
    let missing: Vec<&String> = ids.iter().filter(|id| !stored.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged requests were never recorded, e.g. {:?}",
        missing.len(),
        ids.len(),
        &missing[..missing.len().min(5)]
    );
    let messages: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE identifier = ANY($1)")
        .bind(&identifiers)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(messages as usize, identifiers.len(), "every acknowledged message identifier is stored");

    // The dispatcher's own loop delivers the backlog (many requests at once).
    let stop = CancellationToken::new();
    let dispatching = tokio::spawn(app.dispatcher.clone().run_until_stopped(stop.clone()));
    let delivered = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let open: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM send_requests WHERE id = ANY($1) AND status <> 'Completed'")
                    .bind(&ids)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    stop.cancel();
    dispatching.await.expect("the dispatcher stops");
    assert!(delivered.is_ok(), "every acknowledged request completed within 120 s");
    let success: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE identifier = ANY($1) AND status = 'Success'")
            .bind(&identifiers)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(success as usize, identifiers.len(), "every acknowledged message was sent");
    pool.close().await;
}

#[tokio::test]
async fn killing_the_writers_connection_mid_batch_never_acknowledges_an_uncommitted_request() {
    let test = tokio::time::timeout(Duration::from_secs(180), async {
        let db = TestDatabase::postgres().await;
        let url = db.url.clone();
        let app = spawn_app_on(
            db,
            |c| {
                c.dispatch.enabled = false;
                c.database.acquire_timeout_ms = 1_000;
            },
            Vec::new(),
        )
        .await;
        let fixture = app.provision(1).await;

        // From a second connection: every 150 ms, terminate every connection the server
        // holds (its pools', the writers' among them; not the health probe's).
        let stop = CancellationToken::new();
        let killer = tokio::spawn({
            let (url, stop) = (url.clone(), stop.clone());
            async move {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                let mut killed = 0i64;
                while !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name = 'convmsg') AS t",
                    )
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    killed += n;
                }
                pool.close().await;
                killed
            }
        });
        let timer = tokio::spawn({
            let stop = stop.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(4)).await;
                stop.cancel();
            }
        });
        let tally = send_until(&app, &fixture, stop.clone(), 1_500).await;
        stop.cancel();
        timer.abort();
        let killed = killer.await.unwrap();
        println!(
            "connection kills: {killed} connections terminated, {} acknowledged, {} refused UNAVAILABLE",
            tally.acknowledged.len(),
            tally.unavailable
        );
        assert!(killed > 0 && tally.unavailable > 0, "the kills reached the server's calls");
        assert!(!tally.acknowledged.is_empty(), "calls between the kills were accepted");
        assert_recorded_and_delivered(&app, &url, &tally).await;
        app.stop().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 180 s");
}

#[tokio::test]
async fn a_database_stopped_hard_mid_batch_loses_nothing_that_was_acknowledged() {
    let test = tokio::time::timeout(Duration::from_secs(240), async {
        let pg = PrivatePostgres::start().await;
        let url = pg.url();
        let app = spawn_app_on(
            TestDatabase::at(&url),
            |c| {
                c.dispatch.enabled = false;
                c.database.acquire_timeout_ms = 1_000;
            },
            Vec::new(),
        )
        .await;
        let fixture = app.provision(1).await;
        let mut tally = Tally::default();
        for mode in ["immediate", "immediate", "fast"] {
            let stop = CancellationToken::new();
            let callers = send_until(&app, &fixture, stop.clone(), MAX_PER_ROUND);
            let outage = async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                pg.stop_server_mode(mode).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                pg.start_server().await;
                tokio::time::sleep(Duration::from_millis(800)).await;
                stop.cancel();
            };
            let (round, ()) = tokio::join!(callers, outage);
            println!(
                "stop -m {mode}: {} acknowledged, {} refused UNAVAILABLE",
                round.acknowledged.len(),
                round.unavailable
            );
            tally.acknowledged.extend(round.acknowledged);
            tally.unavailable += round.unavailable;
        }
        assert!(tally.unavailable > 0, "calls met the outages");
        assert_recorded_and_delivered(&app, &url, &tally).await;
        app.stop().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 240 s");
}

#[tokio::test]
async fn while_the_database_is_down_calls_fail_fast_readyz_says_so_and_both_recover_by_themselves() {
    let test = tokio::time::timeout(Duration::from_secs(120), async {
        let pg = PrivatePostgres::start().await;
        let app = spawn_app_on(TestDatabase::at(&pg.url()), |c| c.dispatch.enabled = false, Vec::new()).await;
        let fx = app.provision(1).await;
        let readyz = |base: String| async move { reqwest::get(format!("{base}/readyz")).await.unwrap().status() };
        assert_eq!(readyz(app.url()).await, 200);
        let mut client = app.conv().await;
        client.send_conversation_messages(fx.request()).await.expect("accepted while the database is up");

        pg.stop_server_mode("fast").await;
        // The first call finds the database gone (UNAVAILABLE, after at most the pool's
        // acquire timeout); from then on calls fail at once, and the server is not ready.
        let first = client.send_conversation_messages(fx.request()).await.expect_err("no database");
        assert_eq!(first.code(), tonic::Code::Unavailable, "{first:?}");
        for _ in 0..10 {
            let started = std::time::Instant::now();
            let refused = client.send_conversation_messages(fx.request()).await.expect_err("no database");
            assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
            assert!(started.elapsed() < Duration::from_millis(500), "failed fast: {:?}", started.elapsed());
        }
        assert_eq!(readyz(app.url()).await, 503, "not ready while the database is down");

        pg.start_server().await;
        let recovered = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if readyz(app.url()).await == 200
                    && let Ok(reply) = client.send_conversation_messages(fx.request()).await
                {
                    return reply.into_inner();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("ready and accepting again within 30 s of the database's return");
        assert_eq!(recovered.message_identifiers.len(), 1);
        app.stop().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 120 s");
}
