//! 16.5 — tokens can be taken away: the config's tokens are the config's set at every
//! start (removed entries, a rotated bootstrap token and the generated token stop
//! working), a revoked token stops working at once where it was revoked and within
//! `auth.token_reload_interval_ms` on every other replica, and a token may expire.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use convmsg::config::TokenConfig;
use convmsg::domain::principal::{generate_token, hash_token};
use convmsg::grpc::pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;

use crate::helpers::*;

/// Whether `token` is accepted: a call that needs only `read` gets past authentication.
async fn accepted(channel: tonic::transport::Channel, token: &str) -> bool {
    let mut conv = pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(
        channel,
        BearerToken(Some(token.to_owned())),
    );
    let answer = conv.get_request_status(pb::GetRequestStatusRequest { request_id: "1srAAAAAAAAAAAA".into() }).await;
    match answer {
        Err(status) if status.code() == Code::Unauthenticated => false,
        Err(status) if status.code() == Code::NotFound => true,
        other => panic!("unexpected answer {other:?}"),
    }
}

/// `[[tenants]] acme` granting each `(token, scopes)`.
fn acme(tokens: &[(&str, &str)]) -> String {
    let mut toml = String::from("[[tenants]]\nname = \"acme\"\n");
    for (token, scopes) in tokens {
        let scopes: Vec<String> = scopes.split(',').map(|s| format!("{s:?}")).collect();
        toml.push_str(&format!(
            "[[tenants.tokens]]\nsha256 = \"{}\"\nscopes = [{}]\n",
            hash_token(token),
            scopes.join(", ")
        ));
    }
    toml
}

fn write_config(dir: &Path, database_url: &str, body: &str) -> PathBuf {
    let path = dir.join("convmsg.toml");
    std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\n{body}")).unwrap();
    path
}

/// Starts `convmsg serve --config path`, stopping `previous` first (same database).
async fn restart(previous: Option<ServerProcess>, path: &Path) -> ServerProcess {
    if let Some(mut old) = previous {
        old.child.kill().await.unwrap();
    }
    start_server_process(path, None).await
}

#[tokio::test]
async fn a_token_taken_out_of_the_config_stops_working_after_a_restart() {
    let (db, dir) = (TestDatabase::create().await, tempfile::tempdir().unwrap());
    let (kept, dropped) = (generate_token(), generate_token());
    let first = write_config(dir.path(), &db.url, &acme(&[(&kept, "admin,read"), (&dropped, "read")]));
    let server = restart(None, &first).await;
    assert!(accepted(server.channel().await, &dropped).await);

    let second = write_config(dir.path(), &db.url, &acme(&[(&kept, "admin,read")]));
    let server = restart(Some(server), &second).await;

    assert!(!accepted(server.channel().await, &dropped).await, "a token no longer in the config still works");
    assert!(accepted(server.channel().await, &kept).await);
}

#[tokio::test]
async fn a_rotated_bootstrap_token_stops_working_after_a_restart() {
    let (db, dir) = (TestDatabase::create().await, tempfile::tempdir().unwrap());
    let (old, new) = (generate_token(), generate_token());
    let server = restart(None, &write_config(dir.path(), &db.url, &format!("bootstrap_token = \"{old}\"\n"))).await;
    assert!(accepted(server.channel().await, &old).await);

    let rotated = write_config(dir.path(), &db.url, &format!("bootstrap_token = \"{new}\"\n"));
    let server = restart(Some(server), &rotated).await;

    assert!(!accepted(server.channel().await, &old).await, "the old bootstrap token still works");
    assert!(accepted(server.channel().await, &new).await);
}

/// Starts the binary on a config without tokens; returns it and the token it printed.
async fn start_printing_a_generated_token(path: &Path) -> (tokio::process::Child, String, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"))
        .args(["serve", "--config"])
        .arg(path)
        .env_remove("CONVMSG_BOOTSTRAP_TOKEN")
        .env_remove("CONVMSG_LISTEN")
        .env_remove("CONVMSG_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let read = async {
        let mut token = None;
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(t) = line.split_whitespace().find(|w| w.starts_with("cm_")) {
                token = Some(t.to_owned());
                break;
            }
        }
        while let Some(line) = stdout.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if log["message"] == "convmsg serving" {
                return (token.expect("a generated token"), log["listen"].as_str().unwrap().to_owned());
            }
        }
        panic!("exited before serving");
    };
    let (token, addr) = tokio::time::timeout(Duration::from_secs(30), read).await.expect("started");
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (child, token, addr)
}

async fn channel_to(addr: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn the_generated_token_stops_working_once_the_config_grants_a_token() {
    let (db, dir) = (TestDatabase::create().await, tempfile::tempdir().unwrap());
    let (mut first, generated, addr) = start_printing_a_generated_token(&write_config(dir.path(), &db.url, "")).await;
    assert!(accepted(channel_to(&addr).await, &generated).await);
    first.kill().await.unwrap();

    let chosen = generate_token();
    let server = restart(None, &write_config(dir.path(), &db.url, &format!("bootstrap_token = \"{chosen}\"\n"))).await;

    assert!(!accepted(server.channel().await, &generated).await, "the generated token still works");
    assert!(accepted(server.channel().await, &chosen).await);
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once_and_the_config_cannot_grant_it_again() {
    let (db, dir) = (TestDatabase::create().await, tempfile::tempdir().unwrap());
    let (admin, leaked) = (generate_token(), generate_token());
    let config = write_config(dir.path(), &db.url, &acme(&[(&admin, "admin,read"), (&leaked, "read")]));
    let server = restart(None, &config).await;
    assert!(accepted(server.channel().await, &leaked).await);

    let revoked = server
        .admin(&admin)
        .await
        .revoke_token(pb::RevokeTokenRequest { sha256: hash_token(&leaked) })
        .await
        .expect("revoked")
        .into_inner()
        .token
        .unwrap();

    assert!(revoked.revoked_date.is_some());
    assert!(!accepted(server.channel().await, &leaked).await, "still accepted right after revocation");
    let server = restart(Some(server), &config).await;
    assert!(!accepted(server.channel().await, &leaked).await, "the config granted a revoked token again");
    assert!(accepted(server.channel().await, &admin).await);
    let listed = server.admin(&admin).await.list_tokens(pb::ListTokensRequest {}).await.unwrap().into_inner();
    let leaked_row = listed.tokens.iter().find(|t| t.sha256 == hash_token(&leaked)).expect("listed");
    assert!(leaked_row.revoked_date.is_some());
}

#[tokio::test]
async fn a_revocation_on_one_replica_reaches_another_within_the_reload_interval() {
    let (db, dir) = (TestDatabase::create().await, tempfile::tempdir().unwrap());
    let (admin, leaked) = (generate_token(), generate_token());
    let body =
        format!("[auth]\ntoken_reload_interval_ms = 200\n{}", acme(&[(&admin, "admin,read"), (&leaked, "read")]));
    let config = write_config(dir.path(), &db.url, &body);
    let (one, two) =
        (start_server_process(&config, Some("one")).await, start_server_process(&config, Some("two")).await);
    assert!(accepted(two.channel().await, &leaked).await);

    one.admin(&admin).await.revoke_token(pb::RevokeTokenRequest { sha256: hash_token(&leaked) }).await.unwrap();
    let revoked_at = Instant::now();
    let mut refused = false;
    while revoked_at.elapsed() < Duration::from_secs(10) {
        if !accepted(two.channel().await, &leaked).await {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(refused, "the other replica still accepted the revoked token after 10 s");
    assert!(revoked_at.elapsed() < Duration::from_secs(3), "took {:?}", revoked_at.elapsed());
}

#[tokio::test]
async fn another_tenants_token_can_be_neither_listed_nor_revoked() {
    let app = spawn_accept_only().await;

    let refused = app
        .admin_as(Some(&app.other_token))
        .await
        .revoke_token(pb::RevokeTokenRequest { sha256: hash_token(&app.read_token) })
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::NotFound);
    assert!(accepted(app.channel().await, &app.read_token).await);
    let theirs = app.admin_as(Some(&app.other_token)).await.list_tokens(pb::ListTokensRequest {}).await.unwrap();
    let hashes: Vec<String> = theirs.into_inner().tokens.into_iter().map(|t| t.sha256).collect();
    assert_eq!(hashes, [hash_token(&app.other_token)]);
    let read_only = app.admin_as(Some(&app.read_token)).await.list_tokens(pb::ListTokensRequest {}).await.unwrap_err();
    assert_eq!(read_only.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn a_token_stops_working_when_it_expires() {
    let expiring = generate_token();
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.tenants[0].tokens.push(TokenConfig {
            sha256: hash_token(&expiring),
            scopes: vec!["read".into()],
            label: "until ten past".into(),
            expires_at: Some("2026-01-01T00:10:00Z".into()), // the test clock starts at midnight
        });
    })
    .await;
    assert!(accepted(app.channel().await, &expiring).await);

    app.clock.advance_ms(10 * 60_000);

    assert!(!accepted(app.channel().await, &expiring).await, "still accepted at its expiry");
    assert!(accepted(app.channel().await, &app.read_token).await);
}

#[tokio::test]
async fn an_expiry_that_is_not_a_date_time_stops_the_start_naming_the_field() {
    let token = generate_token();
    let stderr = super::webhook_secrets::refused_start(&format!(
        "[[tenants]]\nname = \"acme\"\n[[tenants.tokens]]\nsha256 = \"{}\"\nscopes = [\"read\"]\nexpires_at = \"next week\"\n",
        hash_token(&token)
    ))
    .await;

    assert!(stderr.contains("tenants[0].tokens[0].expires_at"), "{stderr}");
}

#[tokio::test]
async fn convmsg_token_revoke_and_list_work_from_the_command_line() {
    let app = spawn_accept_only().await;
    // The server runs on this test's runtime: the CLI must be awaited, not waited for.
    let cli = async |args: &[&str]| {
        let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"))
            .args(["token"])
            .args(args)
            .args(["--server", &app.url(), "--token", &app.token])
            .env_remove("CONVMSG_SERVER")
            .env_remove("CONVMSG_TOKEN")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(30), run).await.expect("convmsg finished").expect("convmsg runs")
    };

    let revoke = cli(&["revoke", &app.read_token]).await;
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    let listed = cli(&["list"]).await;

    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(!accepted(app.channel().await, &app.read_token).await);
    let lines = String::from_utf8(listed.stdout).unwrap();
    let row = lines.lines().find(|l| l.starts_with(&hash_token(&app.read_token))).expect("the revoked token listed");
    assert!(row.contains("revoked 2026-01-01T00:00:00.000Z"), "{row}");
}
