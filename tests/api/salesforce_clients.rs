//! The public Salesforce clients, run as a user runs them, against thousands of requests:
//! simple-salesforce (`query`, `query_all`, `query_all(include_deleted=True)`) and jsforce
//! (`query` with autoFetch, and with scanAll) over HTTPS — simple-salesforce speaks only
//! HTTPS — following `nextRecordsUrl` page by page. What they return is compared with the
//! same filters computed here from the database's rows.
//!
//! Python comes from `CONVMSG_TEST_PYTHON` (scripts/test's virtualenv, which installs
//! tests/python/requirements.txt), Node.js from `CONVMSG_TEST_NODE` (default `node`);
//! jsforce is installed into tests/node-jsforce/ with `npm ci` from its committed lock
//! file the first time (and whenever the lock file is newer than the install).

use std::path::{Path, PathBuf};
use std::time::Duration;

use convmsg::config::{ChannelConfig, DefinitionConfig, EndUserConfig};
use convmsg::domain::{IdKind, RecordId};
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::helpers::*;

const T0: i64 = 1_767_225_600_000; // the suite's clock starts at 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// Requests per day of seeding; three days, so 4,500 in all: three pages of 2,000.
const PER_DAY: usize = 1500;

/// A test CA, and a certificate for 127.0.0.1 it signed, written into `dir`.
fn make_pki(dir: &Path) -> (PathBuf, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "convmsg SOQL test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_path, cert_path, key_path) = (dir.join("ca.pem"), dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca_path, cert_path.display().to_string(), key_path.display().to_string())
}

fn config<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a config record")
}

/// One row of `send_requests` as the database has it.
#[derive(Debug, Clone)]
struct Row {
    id: String,
    name: String,
    status: String,
    definition: String,
    accepted_ms: i64,
    completed_ms: Option<i64>,
    failed: i64,
    total: i64,
}

async fn rows(db: &TestDatabase) -> Vec<Row> {
    type Tuple = (String, String, String, String, i64, Option<i64>, i64, i64);
    let sql = "SELECT r.id, r.name, r.status, r.definition_name, r.accepted_ms, r.completed_ms, \
               (SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id AND m.status = 'Failed'), \
               (SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id) FROM send_requests r WHERE r.tenant = 'default'";
    let tuples: Vec<Tuple> = match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
            pool.close().await;
            rows
        }
    };
    tuples
        .into_iter()
        .map(|(id, name, status, definition, accepted_ms, completed_ms, failed, total)| Row {
            id,
            name,
            status,
            definition,
            accepted_ms,
            completed_ms,
            failed,
            total,
        })
        .collect()
}

fn sf_datetime(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    ))
    .unwrap()
}

/// Seeds one day: `PER_DAY` requests through the REST action, 100 inputs a call, eight
/// calls at a time; every fourth goes to an opted-out end user as well, with consent
/// enforced, and every third is of the Reminder component.
async fn seed_day(client: &reqwest::Client, base: &str, token: &str, users: &[String], day: usize) {
    let calls = (0..PER_DAY / 100).map(|call| {
        let inputs: Vec<Value> = (0..100)
            .map(|k| {
                let i = day * PER_DAY + call * 100 + k;
                let recipients = if i.is_multiple_of(4) { vec![&users[0], &users[2]] } else { vec![&users[i % 2]] };
                json!({
                    "messageDefinitionName": if i.is_multiple_of(3) { "Reminder_B" } else { "Notice_A" },
                    "messagingEndUserIds": recipients,
                    "isEnforceMessagingChannelConsent": true,
                })
            })
            .collect();
        let request = client
            .post(format!("{base}/services/data/v65.0/actions/standard/sendConversationMessages"))
            .bearer_auth(token)
            .json(&json!({ "inputs": inputs }));
        async move {
            let answer = request.send().await.expect("sent");
            assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());
        }
    });
    futures_util::stream::iter(calls).buffer_unordered(8).collect::<Vec<()>>().await;
}

/// Delivers everything due, four claim loops at once.
async fn deliver_all(app: &TestApp) {
    let loops = (0..4).map(|_| async { while !app.dispatcher.run_once().await.expect("dispatch").is_empty() {} });
    futures_util::future::join_all(loops).await;
}

/// Runs `command` with `input` on stdin; its stdout, or a panic with its output.
async fn run(mut command: tokio::process::Command, input: &str, what: &str) -> String {
    use tokio::io::AsyncWriteExt;
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.kill_on_drop(true).spawn().unwrap_or_else(|e| panic!("could not start {what}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} finished within 300 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{what} failed:\n{}\n{}", stdout, String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Installs jsforce from the committed lock file unless it is installed already.
async fn install_jsforce(dir: &Path) {
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules/.package-lock.json");
    let fresh = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if fresh(&installed).is_some_and(|at| fresh(&lock).is_none_or(|lock_at| lock_at <= at)) {
        return;
    }
    let mut npm = tokio::process::Command::new(std::env::var("CONVMSG_TEST_NPM").unwrap_or_else(|_| "npm".into()));
    npm.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"]).current_dir(dir);
    run(npm, "", "npm ci (tests/node-jsforce)").await;
}

fn ids(records: &Value) -> Vec<String> {
    records.as_array().unwrap().iter().map(|r| r["Id"].as_str().unwrap().to_owned()).collect()
}

/// Compares, without printing thousands of ids, what a client returned with what is expected.
fn assert_ids(what: &str, got: &[String], expected: &[String]) {
    assert_eq!(got.len(), expected.len(), "{what}: number of records");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!("{what}: record {i} is {}, expected {}", got[i], expected[i]);
    }
}

#[tokio::test]
async fn simple_salesforce_and_jsforce_read_thousands_of_requests_through_query_and_query_more() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert, key) = make_pki(dir.path());
    let users: Vec<String> = (0..3).map(|_| RecordId::generate(IdKind::MessagingEndUser).into_string()).collect();
    let app = {
        let users = users.clone();
        spawn_app_with(move |c| {
            c.dispatch.enabled = false;
            c.tls.cert_path = Some(cert);
            c.tls.key_path = Some(key);
            c.channels = vec![config::<ChannelConfig>(json!({
                "developer_name": "sms", "message_type": "Text", "provider": "log", "messaging_platform_key": "+15550100"
            }))];
            c.definitions = ["Notice_A", "Reminder_B"]
                .map(|name| config::<DefinitionConfig>(json!({"api_name": name, "text_layout": "Hello"})))
                .to_vec();
            c.end_users = users
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let consent = if i == 2 { "OptedOut" } else { "ExplicitlyOptedIn" };
                    config::<EndUserConfig>(json!({
                        "id": id, "channel": "sms", "messaging_platform_key": format!("+1555020{i}"), "consent_status": consent
                    }))
                })
                .collect();
        })
        .await
    };
    let base = format!("https://127.0.0.1:{}", app.addr.port());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&ca_path).unwrap()).unwrap();
    let client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();

    // Three days of requests: the first two delivered (Completed, some with a failure),
    // the last one pending.
    seed_day(&client, &base, &app.token, &users, 0).await;
    deliver_all(&app).await;
    app.clock.advance_ms(DAY + HOUR);
    seed_day(&client, &base, &app.token, &users, 1).await;
    deliver_all(&app).await;
    app.clock.advance_ms(DAY + HOUR);
    seed_day(&client, &base, &app.token, &users, 2).await;
    let now = T0 + 2 * DAY + 2 * HOUR;
    let (today, yesterday) = (now - now.rem_euclid(DAY), now - now.rem_euclid(DAY) - DAY);

    let rows = rows(&app.db).await;
    assert_eq!(rows.len(), 3 * PER_DAY);
    let select = |filter: &dyn Fn(&Row) -> bool, order: &dyn Fn(&Row, &Row) -> std::cmp::Ordering| {
        let mut found: Vec<&Row> = rows.iter().filter(|r| filter(r)).collect();
        found.sort_by(|a, b| order(a, b));
        found.into_iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    };
    let all_soql = "SELECT Id, Name, RequestStatus, MessageDefinition, FailedMessageCount, CreatedDate FROM ConvMessageSendRequest";
    let all = select(&|_| true, &|a, b| (a.accepted_ms, &a.id).cmp(&(b.accepted_ms, &b.id)));
    let failed_soql = "SELECT Id, Name FROM ConvMessageSendRequest WHERE RequestStatus = 'Completed' AND FailedMessageCount > 0 \
                       ORDER BY CreatedDate DESC, Name";
    let failed = select(&|r| r.status == "Completed" && r.failed > 0, &|a, b| {
        (b.accepted_ms, &a.name).cmp(&(a.accepted_ms, &b.name))
    });
    let recent_soql = "SELECT Id, CompletedDate FROM ConvMessageSendRequest WHERE CreatedDate = YESTERDAY \
                       OR MessageDefinition LIKE 'reminder%' ORDER BY Name";
    let recent = select(
        &|r| (yesterday..today).contains(&r.accepted_ms) || r.definition.to_uppercase().starts_with("REMINDER"),
        &|a, b| a.name.cmp(&b.name),
    );
    let count_soql = "SELECT COUNT() FROM ConvMessageSendRequest WHERE RequestStatus != 'Completed'";
    let not_completed = rows.iter().filter(|r| r.status != "Completed").count();
    let all_rows_soql = "SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate = LAST_N_DAYS:1 AND TotalMessageCount = 2 \
                         ORDER BY Id";
    let pairs = select(&|r| r.accepted_ms >= yesterday && r.total == 2, &|a, b| a.id.cmp(&b.id));
    assert!(failed.len() > 100 && recent.len() > 1500 && pairs.len() > 100 && not_completed == PER_DAY);

    // The full listing's fields are the database's.
    let check_all = |what: &str, records: &Value| {
        assert_ids(what, &ids(records), &all);
        let by_id: std::collections::HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        for record in records.as_array().unwrap() {
            let row = by_id[record["Id"].as_str().unwrap()];
            assert_eq!(record["attributes"]["type"], "ConvMessageSendRequest");
            assert_eq!(
                (
                    &record["Name"],
                    &record["RequestStatus"],
                    &record["MessageDefinition"],
                    &record["FailedMessageCount"]
                ),
                (&json!(row.name), &json!(row.status), &json!(row.definition), &json!(row.failed)),
                "{what}"
            );
            assert_eq!(record["CreatedDate"], json!(sf_datetime(row.accepted_ms)), "{what}");
        }
    };

    // Completion dates of a listing are the database's (null while pending).
    let check_completed = |what: &str, records: &Value| {
        let by_id: std::collections::HashMap<&str, &Row> = rows.iter().map(|r| (r.id.as_str(), r)).collect();
        for record in records.as_array().unwrap() {
            let row = by_id[record["Id"].as_str().unwrap()];
            assert_eq!(record["CompletedDate"], json!(row.completed_ms.map(sf_datetime)), "{what}");
        }
    };

    // simple-salesforce.
    let python = std::env::var("CONVMSG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let plan = json!({
        "first_page": all_soql,
        "count": count_soql,
        "query_all": [all_soql, failed_soql, recent_soql],
        "include_deleted": [all_rows_soql],
    });
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/soql_test.py"))
        .args(["--instance", &base, "--token", &app.read_token, "--ca"])
        .arg(&ca_path);
    let out: Value = serde_json::from_str(
        &run(command, &plan.to_string(), "the simple-salesforce test (scripts/test installs its requirements)").await,
    )
    .expect("JSON from soql_test.py");
    let first = &out["first_page"];
    assert_eq!(
        (first["totalSize"].clone(), first["done"].clone(), first["records"].clone()),
        (json!(4500), json!(false), json!(2000))
    );
    assert!(first["nextRecordsUrl"].as_str().unwrap().starts_with("/services/data/v65.0/query/01g"));
    let [listing, with_failures, recent_or_reminders] = [0, 1, 2].map(|i| &out["query_all"][i]);
    let count = &out["count"];
    assert_eq!((listing["totalSize"].clone(), listing["done"].clone()), (json!(4500), json!(true)));
    check_all("simple-salesforce query_all", &listing["records"]);
    assert_ids("simple-salesforce: failed ones, newest first", &ids(&with_failures["records"]), &failed);
    assert_ids("simple-salesforce: yesterday's or reminders", &ids(&recent_or_reminders["records"]), &recent);
    check_completed("simple-salesforce", &recent_or_reminders["records"]);
    assert_eq!(
        (count["totalSize"].clone(), count["done"].clone(), count["records"].clone()),
        (json!(not_completed), json!(true), json!([]))
    );
    assert_ids("simple-salesforce include_deleted", &ids(&out["include_deleted"][0]["records"]), &pairs);

    // jsforce.
    let jsforce_dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node-jsforce"));
    install_jsforce(jsforce_dir).await;
    let plan = json!({"query": [all_soql, failed_soql, recent_soql, count_soql], "queryAll": [all_rows_soql]});
    let mut command =
        tokio::process::Command::new(std::env::var("CONVMSG_TEST_NODE").unwrap_or_else(|_| "node".into()));
    command.arg(jsforce_dir.join("soql_test.js")).args([&base, &app.read_token]).env("NODE_EXTRA_CA_CERTS", &ca_path);
    let out: Value = serde_json::from_str(&run(command, &plan.to_string(), "the jsforce test").await)
        .expect("JSON from soql_test.js");
    let [listing, with_failures, recent_or_reminders, count] = [0, 1, 2, 3].map(|i| &out["query"][i]);
    assert_eq!((listing["totalSize"].clone(), listing["done"].clone()), (json!(4500), json!(true)));
    check_all("jsforce autoFetch", &listing["records"]);
    assert_ids("jsforce: failed ones, newest first", &ids(&with_failures["records"]), &failed);
    assert_ids("jsforce: yesterday's or reminders", &ids(&recent_or_reminders["records"]), &recent);
    check_completed("jsforce", &recent_or_reminders["records"]);
    assert_eq!(count["totalSize"], json!(not_completed));
    assert_ids("jsforce scanAll", &ids(&out["queryAll"][0]["records"]), &pairs);
    app.stop().await;
}
