//! The listener, database, config file, bootstrap token, logs, admission, TLS and REST
//! settings, each given to the real binary as documented (variable or flag) and seen to
//! take effect from outside the process.

use std::time::Duration;

use convmsg::domain::principal::generate_token;
use convmsg::grpc::pb;
use serde_json::json;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::process::{Serve, http, write_config};
use crate::helpers::TestDatabase;

#[tokio::test]
async fn the_listen_variable_and_flag_choose_the_listener_address() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_LISTEN", "127.0.0.2:0")
        .start()
        .await;
    assert!(server.addr.starts_with("127.0.0.2:"), "{}", server.addr);
    let mut health = HealthClient::new(server.channel().await);
    assert!(health.check(HealthCheckRequest { service: String::new() }).await.is_ok());
    server.stop().await;

    // The flag wins over the variable.
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_LISTEN", "127.0.0.2:0")
        .args(&["--listen", "127.0.0.3:0"])
        .start()
        .await;
    assert!(server.addr.starts_with("127.0.0.3:"), "{}", server.addr);
    server.stop().await;
}

#[tokio::test]
async fn the_database_url_variable_and_flag_choose_the_database_and_migrate_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::in_dir(dir.path()).env("CONVMSG_DATABASE_URL", "sqlite://from-env.db").start().await;
    server.stop().await;
    assert!(dir.path().join("from-env.db").exists(), "CONVMSG_DATABASE_URL's file was created");

    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", "sqlite://not-this.db")
        .args(&["--database-url", "sqlite://from-flag.db"])
        .start()
        .await;
    server.stop().await;
    assert!(dir.path().join("from-flag.db").exists() && !dir.path().join("not-this.db").exists());

    // The suite's backend (PostgreSQL in the second pass): the schema is created there.
    let db = TestDatabase::create().await;
    let server = Serve::in_dir(dir.path()).env("CONVMSG_DATABASE_URL", &db.url).start().await;
    server.stop().await;
    let rows = db.fetch_triples("SELECT 'migrations', COUNT(*), CAST(0 AS BIGINT) FROM _sqlx_migrations").await;
    assert!(rows[0].1 > 0, "migrations applied to {}: {rows:?}", db.url);
}

#[tokio::test]
async fn the_config_variable_and_flag_read_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    let config = write_config(dir.path(), 1, None, &format!("bootstrap_token = \"{token}\""));
    for (variable, flag) in [(Some(config.to_str().unwrap()), None), (None, Some(config.to_str().unwrap()))] {
        let db = TestDatabase::create().await;
        let mut serve = Serve::in_dir(dir.path()).env("CONVMSG_DATABASE_URL", &db.url);
        if let Some(path) = variable {
            serve = serve.env("CONVMSG_CONFIG", path);
        }
        if let Some(path) = flag {
            serve = serve.args(&["--config", path]);
        }
        let server = serve.start().await;
        let channels = server.admin(&token).await.list_channels(pb::ListChannelsRequest::default()).await;
        let names: Vec<String> =
            channels.unwrap().into_inner().channels.into_iter().map(|c| c.developer_name).collect();
        assert_eq!(names, vec!["sms".to_owned()], "the file's channel, read through {variable:?} / {flag:?}");
        server.stop().await;
    }
}

/// What the issue reproduced: the Secret's `CONVMSG_BOOTSTRAP_TOKEN` must authenticate,
/// on gRPC and on the REST bridge, with every scope, and keep working after a restart.
#[tokio::test]
async fn the_bootstrap_token_variable_grants_every_scope_to_tenant_default_and_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let file_token = generate_token();
    let config = write_config(dir.path(), 1, None, &format!("bootstrap_token = \"{file_token}\""));
    let config = config.to_str().unwrap();
    for start in ["first start", "restart"] {
        let server = Serve::in_dir(dir.path())
            .env("CONVMSG_DATABASE_URL", &db.url)
            .env("CONVMSG_CONFIG", config)
            .env("CONVMSG_BOOTSTRAP_TOKEN", &token)
            .start()
            .await;
        assert!(!server.stderr().contains("generated"), "{start}: no token generated: {}", server.stderr());
        // admin, send and read.
        let users = server.end_user_ids(&token).await;
        let id = server.send_ping(&token, users).await;
        server.completed(&token, &id, Duration::from_secs(30)).await;
        let describe = http()
            .get(format!("{}/services/data/v59.0/actions/standard/sendConversationMessages", server.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(describe.status(), 200, "{start}: the REST bridge takes the token");
        let refused = server.admin(&file_token).await.list_channels(pb::ListChannelsRequest::default()).await;
        assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated, "{start}: the variable wins over the file");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_log_format_variable_switches_the_lines_from_json_to_pretty() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let server = Serve::in_dir(dir.path()).env("CONVMSG_DATABASE_URL", &db.url).start().await;
    let lines = server.stdout();
    assert!(lines.iter().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()), "JSON by default: {lines:?}");
    server.stop().await;

    let mut server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_LOG__FORMAT", "pretty")
        .start()
        .await;
    let serving = server.wait_for_stdout("the serving line", |l| l.contains("convmsg serving")).await;
    assert!(serde_json::from_str::<serde_json::Value>(&serving).is_err(), "not JSON: {serving}");
    assert!(serving.contains("INFO") && serving.contains("listen="), "{serving}");
    server.stop().await;
}

/// `log.filter` from `CONVMSG_LOG__FILTER`, and `RUST_LOG` winning over it: both turn on
/// the dispatcher's debug line for a claim, which the default `info` leaves out. (Plain
/// levels: directives naming a target lose lines on PostgreSQL, a bug of its own.)
#[tokio::test]
async fn rust_log_and_the_log_filter_variable_choose_what_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    let config = write_config(dir.path(), 1, None, &format!("bootstrap_token = \"{token}\""));
    let debug = "debug";
    for (variables, label) in [
        (vec![("CONVMSG_LOG__FILTER", debug)], "CONVMSG_LOG__FILTER"),
        (vec![("CONVMSG_LOG__FILTER", "warn"), ("RUST_LOG", debug)], "RUST_LOG over CONVMSG_LOG__FILTER"),
    ] {
        let db = TestDatabase::create().await;
        let mut serve = Serve::in_dir(dir.path())
            .env("CONVMSG_DATABASE_URL", &db.url)
            .args(&["--config", config.to_str().unwrap()]);
        for (name, value) in &variables {
            serve = serve.env(name, value);
        }
        let mut server = serve.start().await;
        let users = server.end_user_ids(&token).await;
        server.send_ping(&token, users).await;
        let line = server.wait_for_stdout("the debug line of a claim", |l| l.contains("claimed requests")).await;
        let log: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(log["level"], "DEBUG", "{label}: {line}");
        server.stop().await;
    }
}

/// One call held inside the server (its accept waits on a database lock taken from
/// outside) fills `CONVMSG_ADMISSION__MAX_CONCURRENT_REQUESTS=1`; the next is refused.
/// (A probe may hold the one slot when the send arrives: then the send is the one
/// refused, which shows the same limit.)
#[tokio::test]
async fn the_admission_variable_sets_how_many_calls_are_served_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let config = write_config(dir.path(), 1, None, &format!("bootstrap_token = \"{token}\""));
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_ADMISSION__MAX_CONCURRENT_REQUESTS", "1")
        .env("CONVMSG_DATABASE__ACQUIRE_TIMEOUT_MS", "30000")
        .start()
        .await;
    let users = server.end_user_ids(&token).await;
    let request = pb::SendConversationMessagesRequest {
        message_definition_name: "Ping".into(),
        messaging_end_user_ids: users,
        ..Default::default()
    };
    let blocker = db.block_accepts().await;
    let mut client = server.conv(&token).await;
    let held_request = request.clone();
    let mut held = tokio::spawn(async move { client.send_conversation_messages(held_request).await });
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        let mut probe = server.conv(&token).await;
        loop {
            if held.is_finished() {
                let status = (&mut held).await.unwrap().expect_err("the send cannot finish while the lock is held");
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                return status;
            }
            let request = pb::GetRequestStatusRequest { request_id: "1srAAAAAAAAAAAA".into() };
            match probe.get_request_status(request).await {
                Err(status) if status.code() == Code::ResourceExhausted => return status,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("a call past the limit of 1 was refused");
    assert_eq!(crate::helpers::error_code(&refused), "REQUEST_LIMIT_EXCEEDED");
    blocker.release().await;
    if !held.is_finished() {
        assert!(held.await.unwrap().is_ok(), "the held call completes once the lock is released");
    }
    // Nothing was lost: the server accepts again.
    assert!(server.conv(&token).await.send_conversation_messages(request).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn the_tls_variables_turn_tls_on_with_the_files_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
    for flags in [false, true] {
        let mut serve = Serve::in_dir(dir.path()).env("CONVMSG_DATABASE_URL", &db.url);
        serve = if flags {
            serve.args(&["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
        } else {
            serve
                .env("CONVMSG_TLS__CERT_PATH", cert.to_str().unwrap())
                .env("CONVMSG_TLS__KEY_PATH", key.to_str().unwrap())
        };
        let mut server = serve.start().await;
        let serving = server.wait_for_stdout("the serving line", |l| l.contains("convmsg serving")).await;
        let log: serde_json::Value = serde_json::from_str(&serving).unwrap();
        assert_eq!(log["tls"], true, "flags: {flags}: {serving}");
        let plain = http().get(format!("http://{}/healthz", server.addr)).send().await;
        assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain text is refused");
        server.stop().await;
    }
}

#[tokio::test]
async fn the_rest_variables_set_the_body_limit_and_the_inputs_per_call() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let config = write_config(dir.path(), 1, None, &format!("bootstrap_token = \"{token}\""));
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_REST__BODY_LIMIT_BYTES", "400")
        .env("CONVMSG_REST__MAX_INPUTS_PER_CALL", "1")
        .start()
        .await;
    let user = server.end_user_ids(&token).await.remove(0);
    let input = json!({ "messageDefinitionName": "Ping", "messagingEndUserIds": user });
    let invoke = |body: serde_json::Value| {
        http()
            .post(format!("{}/services/data/v65.0/actions/standard/sendConversationMessages", server.url()))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    assert_eq!(invoke(json!({ "inputs": [input] })).await.unwrap().status(), 200);
    let two = invoke(json!({ "inputs": [input, input] })).await.unwrap();
    assert_eq!(two.status(), 400, "two inputs past a limit of one");
    let padded = json!({ "inputs": [input], "padding": "x".repeat(400) });
    assert_eq!(invoke(padded).await.unwrap().status(), 413, "a body past 400 bytes");
    server.stop().await;
}

/// The first start declares channels `sms` and `hooks`; the second's file drops `hooks`,
/// and with the variable set the start deletes it.
#[tokio::test]
async fn the_prune_variable_deletes_the_declared_records_the_config_file_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create().await;
    let token = generate_token();
    let secret = "[providers.webhook]\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n";
    let extra = format!("bootstrap_token = \"{token}\"\n{secret}");
    let config = write_config(dir.path(), 0, Some("https://hooks.example.com/hook"), &extra);
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .start()
        .await;
    let hooks = server.admin(&token).await.get_channel(pb::GetChannelRequest { channel: "hooks".into() }).await;
    assert!(hooks.is_ok(), "declared at the first start");
    server.stop().await;

    let config = write_config(dir.path(), 0, None, &extra);
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_PROVISIONING__PRUNE", "true")
        .start()
        .await;
    let mut admin = server.admin(&token).await;
    let hooks = admin.get_channel(pb::GetChannelRequest { channel: "hooks".into() }).await.unwrap_err();
    assert_eq!(hooks.code(), Code::NotFound, "pruned");
    admin.get_channel(pb::GetChannelRequest { channel: "sms".into() }).await.expect("still declared");
    server.stop().await;
}
