//! The replication resources: `updated` (ids modified in a window) and `deleted` (ids
//! purged by retention, with when, kept 15 days), Salesforce's window rules and errors.

use std::time::Duration;

use super::*;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// The suite's clock starts here: 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

fn iso(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

fn window(resource: &str, start: i64, end: i64) -> String {
    let encode = |s: String| s.replace(':', "%3A").replace('+', "%2B");
    format!("{RECORD}/{resource}/?start={}&end={}", encode(iso(start)), encode(iso(end)))
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn updated_lists_the_ids_modified_in_the_window_and_the_latest_date_it_covers() {
    let app = spawn_app_with(|c| c.dispatch.enabled = false).await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (first, _) = client.accept(input(&fx)).await;
    app.clock.advance_ms(HOUR);
    // Delivering the first modifies it now (T0 + 1h).
    while !app.dispatcher.run_once().await.unwrap().is_empty() {}
    app.clock.advance_ms(HOUR);
    let (second, _) = client.accept(input(&fx)).await;
    let theirs = app.provision_as(&app.other_token.clone(), 1).await;
    app.conv_as(Some(&app.other_token)).await.send_conversation_messages(theirs.request()).await.unwrap();
    app.clock.advance_ms(10 * 60_000 + 30_000); // now T0 + 2h 10m 30s

    let all = client.get(&window("updated", T0, T0 + 3 * HOUR)).await;
    assert_eq!(all.status, 200, "{}", all.body);
    let body = all.json();
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    assert_eq!(ids(&body), both);
    // The end is past now: covered up to one minute before now, floored to the minute.
    assert_eq!(body["latestDateCovered"], "2026-01-01T02:09:00.000+0000");
    let early = client.get(&window("updated", T0, T0 + HOUR)).await.json();
    assert_eq!((ids(&early), early["latestDateCovered"].clone()), (vec![], json!("2026-01-01T01:00:00.000+0000")));
    let middle = client.get(&window("updated", T0 + HOUR, T0 + 2 * HOUR)).await.json();
    assert_eq!(ids(&middle), std::slice::from_ref(&first));
    // Seconds are ignored: 02:00:59 is 02:00.
    let late = client.get(&window("updated", T0 + 2 * HOUR + 59_000, T0 + 3 * HOUR)).await.json();
    assert_eq!(ids(&late), std::slice::from_ref(&second));
    let xml = client
        .send(client.authed(Method::GET, &window("updated", T0, T0 + 3 * HOUR)).header("accept", "application/xml"))
        .await
        .xml();
    assert_eq!((xml.name.as_str(), xml.all("ids").len()), ("ConvMessageSendRequest", 2));
    // An offset's `+` sent unencoded reads as a space; it is taken for what it was.
    let raw = format!("{RECORD}/updated/?start=2026-01-01T01:00:00+01:00&end=2026-01-01T03:00:00+01:00");
    assert_eq!(ids(&client.get(&raw).await.json()), std::slice::from_ref(&first));
    app.stop().await;
}

#[tokio::test]
async fn replication_windows_follow_salesforce_s_rules_and_name_the_parameter() {
    let app = spawn_accept_only().await;
    let client = http(&app);
    app.clock.advance_ms(40 * DAY);
    let now = T0 + 40 * DAY;
    let refusal = |url: String| {
        let client = &client;
        async move {
            let answer = client.get(&url).await;
            assert_eq!(answer.status, 400, "{url}: {}", answer.body);
            let body = answer.json();
            (body[0]["errorCode"].as_str().unwrap().to_owned(), body[0]["fields"].clone())
        }
    };
    let invalid = |field: &str| ("INVALID_REPLICATION_DATE".to_owned(), json!([field]));
    assert_eq!(refusal(window("updated", now - HOUR, now - 2 * HOUR)).await, invalid("end"));
    assert_eq!(refusal(window("updated", now - HOUR + 10_000, now - HOUR + 50_000)).await, invalid("end"));
    assert_eq!(refusal(window("updated", now - 31 * DAY, now)).await, invalid("start"));
    assert_eq!(refusal(window("deleted", now - 16 * DAY, now)).await, invalid("start"));
    assert_eq!(refusal(format!("{RECORD}/updated/?start=yesterday&end=today")).await, invalid("start"));
    assert_eq!(
        refusal(format!("{RECORD}/deleted/?start=2026-02-01T00:00:00Z")).await,
        ("REQUIRED_FIELD_MISSING".to_owned(), json!(["end"]))
    );
    let ok = client.get(&window("updated", now - 30 * DAY, now)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let ok = client.get(&window("deleted", now - 15 * DAY, now)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json(),
        json!({"deletedRecords": [], "earliestDateAvailable": "2026-01-26T00:00:00.000+0000",
               "latestDateCovered": "2026-02-09T23:59:00.000+0000"})
    );
    let anonymous = client.send(client.request(Method::GET, &window("updated", now - HOUR, now))).await;
    assert_eq!(anonymous.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn deleted_lists_requests_purged_by_retention_with_their_deletion_date_and_forgets_them_after_15_days() {
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.retention.completed_max_age_ms = HOUR as u64;
        c.retention.purge_interval_ms = 20;
    })
    .await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (purged, _) = client.accept(input(&fx)).await;
    while !app.dispatcher.run_once().await.unwrap().is_empty() {}
    let (kept, _) = client.accept(input(&fx)).await;
    app.clock.advance_ms(2 * HOUR);
    let deleted_at = T0 + 2 * HOUR;
    let listed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let body = client.get(&window("deleted", T0, T0 + 3 * HOUR)).await.json();
            if !body["deletedRecords"].as_array().unwrap().is_empty() {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the purge's tombstone shows within 20 s");
    assert_eq!(listed["deletedRecords"], json!([{"id": purged, "deletedDate": "2026-01-01T02:00:00.000+0000"}]));
    assert_eq!(client.get(&format!("{RECORD}/{purged}")).await.status, 404);
    assert_eq!(client.get(&format!("{RECORD}/{kept}")).await.status, 200);
    let theirs = client
        .send(client.request(Method::GET, &window("deleted", T0, T0 + 3 * HOUR)).bearer_auth(&app.other_token))
        .await;
    assert_eq!(theirs.json()["deletedRecords"], json!([]));
    let before = client.get(&window("deleted", T0, deleted_at)).await.json();
    assert_eq!(before["deletedRecords"], json!([]), "the window ends before the deletion");

    // Sixteen days on, the tombstone is forgotten.
    app.clock.advance_ms(16 * DAY);
    let forgotten = tokio::time::timeout(Duration::from_secs(20), async {
        while !app
            .db
            .fetch_triples("SELECT id, COALESCE(deleted_ms, 0), CAST(0 AS BIGINT) FROM send_request_tombstones")
            .await
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(forgotten.is_ok(), "tombstones older than 15 days are removed");
    app.stop().await;
}
