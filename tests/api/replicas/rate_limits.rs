//! A channel's `rate_limit_per_second` holds for the whole fleet: three replicas on one
//! PostgreSQL database share the channel's send slots (one row, `store::sql::rates`).

use super::*;

/// The tolerance stated in the README: the steady rate measured at the receiver is at
/// most 10 % above the limit (delivery latency jitters), and over any 2 s at most
/// `2 · rate + burst` (+ 10 arrivals of delivery jitter) arrive.
#[tokio::test]
async fn three_replicas_together_send_a_channel_no_faster_than_its_rate_limit() {
    const REQUESTS: usize = 200;
    const RATE: f64 = 20.0;
    let test = tokio::time::timeout(Duration::from_secs(90), async {
        let db = TestDatabase::postgres().await;
        let (receiver, hook) = Receiver::start(Duration::ZERO).await;
        let dir = tempfile::tempdir().unwrap();
        let token = convmsg::domain::principal::generate_token();
        let dispatch = "max_in_progress_requests = 60\nlease_ms = 10000\nclaim_batch = 10\npoll_interval_ms = 20";
        let config = write_config(dir.path(), &db.url, &token, &hook, 10, dispatch);
        let text = std::fs::read_to_string(&config).unwrap();
        let limited = text.replacen("provider = \"webhook\"\n", &format!("provider = \"webhook\"\nrate_limit_per_second = {RATE}\n"), 1);
        assert_ne!(text, limited, "the channel got its rate limit");
        std::fs::write(&config, limited).unwrap();
        let replicas = futures_util::future::join_all(REPLICAS.map(|name| start_replica(&config, name))).await;
        let users = replicas[0].end_user_ids(&token).await;
        let mut clients = Vec::new();
        for replica in &replicas {
            clients.push(replica.conv(&token).await);
        }
        let accepted = burst(&clients, &users, REQUESTS).await;
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let ids: Vec<String> = accepted.iter().map(|(id, _)| id.clone()).collect();
        wait_completed(&pool, &ids, Duration::from_secs(60)).await;

        let mut arrivals = receiver.arrivals();
        arrivals.sort();
        assert_eq!(arrivals.len(), REQUESTS, "each message once");
        let burst_size = RATE as usize;
        let span = (arrivals[REQUESTS - 1] - arrivals[0]).as_secs_f64();
        let steady = (REQUESTS - burst_size) as f64 / span;
        let mut busiest = 0;
        for (i, first) in arrivals.iter().enumerate() {
            let within = arrivals[i..].iter().take_while(|t| **t - *first < Duration::from_secs(2)).count();
            busiest = busiest.max(within);
        }
        let by_replica = messages_by_replica(&pool).await;
        println!(
            "{REQUESTS} messages at {RATE}/s on 3 replicas: {span:.2} s, steady {steady:.1}/s, at most {busiest} in 2 s; \
             per replica {by_replica:?}"
        );
        assert!(steady <= RATE * 1.1, "the fleet sent {steady:.1}/s, over the limit of {RATE}/s");
        assert!(steady >= RATE * 0.7, "the fleet sent only {steady:.1}/s: the check would mean nothing");
        assert!(busiest as f64 <= RATE * 2.0 + RATE + 10.0, "{busiest} arrived within 2 s");
        let senders = REPLICAS.iter().filter(|name| by_replica.get(**name).copied().unwrap_or(0) > 0).count();
        assert!(senders >= 2, "the replicas shared the channel: {by_replica:?}");
        pool.close().await;
    })
    .await;
    assert!(test.is_ok(), "the test finished within 90 s");
}
