//! Several replicas on one PostgreSQL database (always PostgreSQL, whatever the suite's
//! backend): three real `convmsg serve` processes share one queue under one global
//! in-progress limit; a SIGKILLed replica's leases are taken over by the others; and
//! a private PostgreSQL instance is stopped mid-run, during which the service answers
//! UNAVAILABLE, then recovers by itself without losing anything it acknowledged;
//! `faults` breaks the accept writer's connection and the server under concurrent accepts.
//! Every test is bounded in requests and in time.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use convmsg::grpc::pb;
use futures_util::StreamExt;
use tonic::Code;

mod faults;
mod rate_limits;

use crate::helpers::{BearerToken, ServerProcess, TestDatabase, start_server_process, write_webhook_config};

type Conv = pb::conversation_messages_client::ConversationMessagesClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerToken>,
>;

/// A webhook receiver that counts deliveries by `webhook-id`, holds each one for
/// `hold`, and measures how many distinct requests are in flight at once.
#[derive(Default)]
struct Receiver {
    hold: Duration,
    state: Mutex<ReceiverState>,
}

#[derive(Default)]
struct ReceiverState {
    /// Deliveries per `webhook-id` (the message identifier).
    seen: HashMap<String, usize>,
    /// Deliveries in flight per request id.
    in_flight: HashMap<String, usize>,
    max_in_flight_requests: usize,
    /// When each delivery arrived.
    arrivals: Vec<std::time::Instant>,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> &'static str {
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let request = body["data"]["request_id"].as_str().unwrap_or_default().to_owned();
    {
        let mut s = r.state.lock().unwrap();
        *s.seen.entry(id).or_default() += 1;
        s.arrivals.push(std::time::Instant::now());
        *s.in_flight.entry(request.clone()).or_default() += 1;
        s.max_in_flight_requests = s.max_in_flight_requests.max(s.in_flight.len());
    }
    tokio::time::sleep(r.hold).await;
    let mut s = r.state.lock().unwrap();
    if let Some(n) = s.in_flight.get_mut(&request) {
        *n -= 1;
        if *n == 0 {
            s.in_flight.remove(&request);
        }
    }
    "{}"
}

impl Receiver {
    /// Serves on 127.0.0.1:0; returns the hook URL.
    async fn start(hold: Duration) -> (Arc<Receiver>, String) {
        let receiver = Arc::new(Receiver { hold, state: Mutex::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", post(receive)).with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn seen(&self) -> HashMap<String, usize> {
        self.state.lock().unwrap().seen.clone()
    }

    fn deliveries(&self) -> usize {
        self.state.lock().unwrap().seen.values().sum()
    }

    fn max_in_flight_requests(&self) -> usize {
        self.state.lock().unwrap().max_in_flight_requests
    }

    fn arrivals(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().arrivals.clone()
    }
}

/// One `convmsg serve` replica; killed when dropped.
type Replica = ServerProcess;

/// Starts the real binary with `config`; `HOSTNAME` names it on the leases it takes.
async fn start_replica(config: &Path, name: &str) -> Replica {
    start_server_process(config, Some(name)).await
}

/// A config file for replicas on `database_url`, delivering through a webhook channel
/// to `hook`, with `users` end users and the given `[dispatch]` lines.
fn write_config(dir: &Path, database_url: &str, token: &str, hook: &str, users: usize, dispatch: &str) -> PathBuf {
    let extra = format!(
        "[database]\nmax_connections = 6\nacquire_timeout_ms = 1000\nstatement_timeout_ms = 5000\n[dispatch]\n{dispatch}\n"
    );
    write_webhook_config(dir, database_url, token, hook, users, &extra)
}

fn ping(user: &str) -> pb::SendConversationMessagesRequest {
    pb::SendConversationMessagesRequest {
        message_definition_name: "Ping".into(),
        messaging_end_user_ids: vec![user.to_owned()],
        ..Default::default()
    }
}

/// Sends `n` one-recipient requests, spread over `clients`, 32 at a time; returns the
/// acknowledged (request id, message identifier) pairs.
async fn burst(clients: &[Conv], users: &[String], n: usize) -> Vec<(String, String)> {
    futures_util::stream::iter(0..n)
        .map(|i| {
            let mut client = clients[i % clients.len()].clone();
            let request = ping(&users[i % users.len()]);
            async move {
                let reply = client.send_conversation_messages(request).await.expect("accepted").into_inner();
                (reply.request_id, reply.message_identifiers[0].clone())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// Waits (at most `limit`) until every request in `ids` is Completed.
async fn wait_completed(pool: &sqlx::PgPool, ids: &[String], limit: Duration) {
    let waited = tokio::time::timeout(limit, async {
        loop {
            let done: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM send_requests WHERE id = ANY($1) AND status = 'Completed'")
                    .bind(ids)
                    .fetch_one(pool)
                    .await
                    .unwrap();
            if done as usize == ids.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "not every request completed within {limit:?}");
}

/// Messages per replica (the `HOSTNAME` prefix of the lease owner that sent it last).
async fn messages_by_replica(pool: &sqlx::PgPool) -> HashMap<String, i64> {
    let rows: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT sent_by, COUNT(*) FROM messages GROUP BY sent_by").fetch_all(pool).await.unwrap();
    let mut by = HashMap::new();
    for (owner, n) in rows {
        let replica = owner.unwrap_or_default().split('-').take(2).collect::<Vec<_>>().join("-");
        *by.entry(replica).or_default() += n;
    }
    by
}

const REPLICAS: [&str; 3] = ["replica-a", "replica-b", "replica-c"];

#[tokio::test]
async fn three_replicas_share_one_queue_never_exceed_the_global_limit_and_send_each_message_once() {
    const REQUESTS: usize = 1_000;
    const LIMIT: usize = 20;
    let test = tokio::time::timeout(Duration::from_secs(90), async {
        let db = TestDatabase::postgres().await;
        let (receiver, hook) = Receiver::start(Duration::from_millis(50)).await;
        let dir = tempfile::tempdir().unwrap();
        let token = convmsg::domain::principal::generate_token();
        let dispatch =
            format!("max_in_progress_requests = {LIMIT}\nlease_ms = 10000\nclaim_batch = 5\npoll_interval_ms = 20");
        let config = write_config(dir.path(), &db.url, &token, &hook, 10, &dispatch);
        // All three start at once, as a rollout would: migrations and declared records race.
        let replicas = futures_util::future::join_all(REPLICAS.map(|name| start_replica(&config, name))).await;
        let users = replicas[0].end_user_ids(&token).await;
        assert_eq!(users.len(), 10, "the declared end users exist once");
        let mut clients = Vec::new();
        for replica in &replicas {
            clients.push(replica.conv(&token).await);
        }

        let started = std::time::Instant::now();
        let accepted = burst(&clients, &users, REQUESTS).await;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let ids: Vec<String> = accepted.iter().map(|(id, _)| id.clone()).collect();
        wait_completed(&pool, &ids, Duration::from_secs(60)).await;
        let elapsed = started.elapsed();

        let not_success: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE status <> 'Success'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(not_success, 0, "every message ends Success");
        let seen = receiver.seen();
        let expected: HashSet<&String> = accepted.iter().map(|(_, m)| m).collect();
        assert_eq!(seen.keys().collect::<HashSet<_>>(), expected, "every message reached the receiver");
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "no message is sent twice while every replica is up: {twice:?}");
        let max = receiver.max_in_flight_requests();
        let by_replica = messages_by_replica(&pool).await;
        println!(
            "{REQUESTS} requests on 3 replicas in {elapsed:?}; at most {max} in flight at the receiver \
             (limit {LIMIT}); messages per replica: {by_replica:?}"
        );
        assert!(max <= LIMIT, "the global limit held: at most {max} requests in flight, limit {LIMIT}");
        assert!(max >= LIMIT / 2, "the limit was approached ({max} of {LIMIT}), so the check means something");
        for name in REPLICAS {
            assert!(by_replica.get(name).copied().unwrap_or(0) > 0, "{name} did some of the work: {by_replica:?}");
        }
        pool.close().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 90 s");
}

#[tokio::test]
async fn a_killed_replicas_leases_are_taken_over_and_every_message_still_ends_final() {
    const REQUESTS: usize = 300;
    let test = tokio::time::timeout(Duration::from_secs(90), async {
        let db = TestDatabase::postgres().await;
        let (receiver, hook) = Receiver::start(Duration::from_millis(100)).await;
        let dir = tempfile::tempdir().unwrap();
        let token = convmsg::domain::principal::generate_token();
        // A short lease, so the takeover is quick; long enough that the survivors' own
        // renewals (every third of it) keep theirs on a loaded machine.
        let dispatch = "max_in_progress_requests = 20\nlease_ms = 2000\nclaim_batch = 5\npoll_interval_ms = 20\n\
                        retry_schedule_ms = [100, 200, 400]";
        let config = write_config(dir.path(), &db.url, &token, &hook, 10, dispatch);
        let mut replicas = futures_util::future::join_all(REPLICAS.map(|name| start_replica(&config, name))).await;
        let users = replicas[0].end_user_ids(&token).await;
        // Accept through the replicas that stay up.
        let clients = vec![replicas[0].conv(&token).await, replicas[2].conv(&token).await];
        let accepted = burst(&clients, &users, REQUESTS).await;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();

        // Kill replica-b while it holds leases and has sends in flight. The in-progress
        // limit is shared, so at a given moment the other two may hold every slot: wait
        // for one when replica-b holds some, then kill it at once.
        let leased_by_b = |pool: sqlx::PgPool| async move {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM send_requests WHERE status = 'InProgress' AND locked_by LIKE 'replica-b-%'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            ids
        };
        let orphaned = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if receiver.deliveries() >= 50 && !leased_by_b(pool.clone()).await.is_empty() {
                    replicas[1].child.start_kill().unwrap(); // SIGKILL
                    replicas[1].child.wait().await.unwrap();
                    let orphaned = leased_by_b(pool.clone()).await;
                    if !orphaned.is_empty() {
                        return orphaned;
                    }
                    panic!("replica-b's leases were all given back between the look and the kill");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("deliveries started");

        let ids: Vec<String> = accepted.iter().map(|(id, _)| id.clone()).collect();
        wait_completed(&pool, &ids, Duration::from_secs(60)).await;

        // The dead replica's requests were finished by the others.
        let finished_by: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, locked_by FROM send_requests WHERE id = ANY($1)")
                .bind(&orphaned)
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(finished_by.iter().all(|(status, _)| status == "Completed"), "{finished_by:?}");
        let resent_by_others: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE request_id = ANY($1) AND sent_by NOT LIKE 'replica-b-%'",
        )
        .bind(&orphaned)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(resent_by_others > 0, "the other replicas took over replica-b's leased work");

        // Every message is final, and a failure says why.
        let states: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, reason FROM messages").fetch_all(&pool).await.unwrap();
        assert_eq!(states.len(), REQUESTS);
        for (status, reason) in &states {
            assert!(
                status == "Success" || (status == "Failed" && reason.as_deref().is_some_and(|r| !r.is_empty())),
                "{status} {reason:?}"
            );
        }

        // At-least-once: sends caught in flight at the kill went out again; the receiver
        // drops repeats by webhook-id and is left with exactly one per message.
        let seen = receiver.seen();
        let sent_twice: usize = seen.values().map(|n| n - 1).sum();
        let deduplicated: HashSet<&String> = seen.keys().collect();
        let expected: HashSet<&String> = accepted.iter().map(|(_, m)| m).collect();
        assert_eq!(deduplicated, expected, "after dropping repeats by webhook-id, one delivery per message");
        println!(
            "replica-b killed holding {} leased requests: {sent_twice} of {REQUESTS} messages were sent twice; \
             deduplicated by webhook-id the receiver kept {} deliveries for {} messages",
            orphaned.len(),
            deduplicated.len(),
            REQUESTS
        );
        assert!(sent_twice <= orphaned.len(), "only sends of the dead replica's leased requests repeat");
        pool.close().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 90 s");
}

/// A private PostgreSQL cluster (initdb into a temporary directory, on a spare loopback
/// port), so stopping it disturbs no other test. Stopped and removed when dropped,
/// also when the test fails. As root, the server tools run as the `postgres` user.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

impl PrivatePostgres {
    async fn start() -> PrivatePostgres {
        let bin = std::env::var_os("CONVMSG_TEST_PG_BIN").map(PathBuf::from).unwrap_or_else(|| {
            let out = std::process::Command::new("pg_config").arg("--bindir").output();
            match out {
                Ok(out) if out.status.success() => PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
                _ => PathBuf::from("/usr/lib/postgresql/15/bin"),
            }
        });
        let uid = std::process::Command::new("id").arg("-u").output().expect("id -u");
        let as_root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir().unwrap();
        if as_root {
            let chown = std::process::Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().unwrap();
            assert!(chown.success(), "chown the cluster directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePostgres { dir, bin, port, as_root };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"]).await;
        pg.start_server().await;
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, tool: &str, args: &[&str]) -> std::process::Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_root {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            std::process::Command::new(program)
        };
        command.args(args).current_dir(self.dir.path()).stdout(Stdio::null()).stderr(Stdio::piped());
        command
    }

    async fn run(&self, tool: &str, args: &[&str]) {
        let out = tokio::process::Command::from(self.command(tool, args)).output().await.unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    async fn start_server(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "-t", "30", "start"]).await;
    }

    async fn stop_server(&self) {
        self.stop_server_mode("fast").await;
    }

    /// `pg_ctl stop -m <mode>`: `fast` (connections cut, clean shutdown) or `immediate`
    /// (no shutdown checkpoint: crash recovery at the next start).
    async fn stop_server_mode(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "-t", "30", "stop"]).await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "-t", "30", "stop"]).output();
    }
}

#[tokio::test]
async fn during_a_database_outage_calls_are_unavailable_and_afterwards_everything_acknowledged_is_delivered() {
    const BEFORE: usize = 40;
    const AFTER: usize = 40;
    let test = tokio::time::timeout(Duration::from_secs(120), async {
        let pg = PrivatePostgres::start().await;
        let (receiver, hook) = Receiver::start(Duration::from_millis(20)).await;
        let dir = tempfile::tempdir().unwrap();
        let token = convmsg::domain::principal::generate_token();
        let dispatch =
            "lease_ms = 2000\npoll_interval_ms = 50\nretry_schedule_ms = [100, 200, 500, 1000, 2000, 2000, 2000]";
        let config = write_config(dir.path(), &pg.url(), &token, &hook, 5, dispatch);
        let replica = start_replica(&config, "replica-a").await;
        let users = replica.end_user_ids(&token).await;
        let client = replica.conv(&token).await;
        let mut acknowledged = burst(std::slice::from_ref(&client), &users, BEFORE).await;

        // The database goes away while those are being delivered.
        pg.stop_server().await;
        let mut during = client.clone();
        let refused = during.send_conversation_messages(ping(&users[0])).await.expect_err("no database, no accept");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        let read = during
            .get_request_status(pb::GetRequestStatusRequest { request_id: acknowledged[0].0.clone() })
            .await
            .expect_err("no database, no read");
        assert_eq!(read.code(), Code::Unavailable, "{read:?}");
        tokio::time::sleep(Duration::from_secs(3)).await; // the outage lasts a few seconds
        pg.start_server().await;

        // The service recovers by itself: the same process accepts again.
        let recovered = tokio::time::timeout(Duration::from_secs(30), async {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match during.send_conversation_messages(ping(&users[1])).await {
                    Ok(reply) => {
                        let reply = reply.into_inner();
                        return (attempts, (reply.request_id, reply.message_identifiers[0].clone()));
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
        .await
        .expect("the service recovered within 30 s of the database");
        println!("accepting again after the outage, on attempt {}", recovered.0);
        acknowledged.push(recovered.1);
        acknowledged.extend(burst(std::slice::from_ref(&client), &users, AFTER).await);

        // Nothing acknowledged was lost: every request completes, every message arrives.
        let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
        let ids: Vec<String> = acknowledged.iter().map(|(id, _)| id.clone()).collect();
        wait_completed(&pool, &ids, Duration::from_secs(60)).await;
        let success: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE request_id = ANY($1) AND status = 'Success'")
                .bind(&ids)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(success as usize, acknowledged.len(), "every acknowledged message ends Success");
        let seen = receiver.seen();
        for (_, message) in &acknowledged {
            assert!(seen.contains_key(message), "message {message} reached the receiver");
        }
        let sent_twice: usize = seen.values().map(|n| n - 1).sum();
        println!("database outage: {} acknowledged, all delivered; {sent_twice} sent twice", acknowledged.len());
        pool.close().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 120 s");
}
