//! Operations: health needs no token, reflection does, admission refuses at once past
//! its limit, and the `convmsg serve` binary keeps the operational contract.

use std::process::Stdio;
use std::time::Duration;

use convmsg::grpc::pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::helpers::*;

#[tokio::test]
async fn health_answers_serving_without_a_token() {
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", "convmsg.v1.ConversationMessages", "convmsg.v1.MessagingAdmin"] {
        let reply = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(reply.status, ServingStatus::Serving as i32, "{service:?}");
    }
}

#[tokio::test]
async fn reflection_needs_a_token_and_then_lists_the_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = spawn_app().await;
    let list = || {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let mut anonymous = ServerReflectionClient::with_interceptor(app.channel().await, BearerToken(None));
    let refused = anonymous.server_reflection_info(list()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let mut client =
        ServerReflectionClient::with_interceptor(app.channel().await, BearerToken(Some(app.token.clone())));
    let mut stream = client.server_reflection_info(list()).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(services)) = reply.message_response else {
        panic!("expected a service list, got {reply:?}");
    };
    let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"convmsg.v1.ConversationMessages".to_owned()), "{names:?}");
    assert!(names.contains(&"convmsg.v1.MessagingAdmin".to_owned()), "{names:?}");
}

/// The older reflection protocol, which grpcio-reflection, grpcurl before 1.9 and most
/// GUI clients speak, is served beside v1, behind the same token.
#[tokio::test]
async fn reflection_v1alpha_needs_a_token_and_then_lists_the_services() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let app = spawn_app().await;
    let list = || {
        tokio_stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let mut anonymous = ServerReflectionClient::with_interceptor(app.channel().await, BearerToken(None));
    let refused = anonymous.server_reflection_info(list()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let mut client =
        ServerReflectionClient::with_interceptor(app.channel().await, BearerToken(Some(app.token.clone())));
    let mut stream = client.server_reflection_info(list()).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(services)) = reply.message_response else {
        panic!("expected a service list, got {reply:?}");
    };
    let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"convmsg.v1.ConversationMessages".to_owned()), "{names:?}");
    assert!(names.contains(&"convmsg.v1.MessagingAdmin".to_owned()), "{names:?}");
}

#[tokio::test]
async fn past_the_concurrency_limit_calls_are_refused_at_once_with_retry_advice() {
    let app = spawn_app_with(|c| {
        c.admission.max_concurrent_requests = 1;
        c.admission.retry_after_ms = 2_000;
        c.database.acquire_timeout_ms = 20_000;
    })
    .await;
    let fx = app.provision(1).await;

    // Hold the lock an accept needs from outside (SQLite's write lock, or PostgreSQL's
    // table lock on the name sequence), so an accept waits inside the server, holding the one slot.
    let blocker = app.db.block_accepts().await;
    let mut client = app.conv().await;
    let request = fx.request();
    let held = tokio::spawn(async move { client.send_conversation_messages(request).await });

    // Until that call holds the slot, a probe may get through; once it does, probes are refused.
    let mut refused = None;
    for _ in 0..500 {
        let probe = app
            .conv()
            .await
            .get_request_status(pb::GetRequestStatusRequest { request_id: "1srAAAAAAAAAAAA".into() })
            .await;
        match probe {
            Err(status) if status.code() == Code::ResourceExhausted => {
                refused = Some(status);
                break;
            }
            _ => tokio::task::yield_now().await,
        }
    }
    let status = refused.expect("a call past the limit was refused");
    assert_eq!(error_code(&status), "REQUEST_LIMIT_EXCEEDED");
    use tonic_types::StatusExt;
    assert_eq!(status.get_error_details().retry_info().unwrap().retry_delay, Some(Duration::from_secs(2)));

    // Health is outside admission and still answers.
    let mut health = HealthClient::new(app.channel().await);
    assert!(health.check(HealthCheckRequest { service: String::new() }).await.is_ok());

    // The held call completes once the lock is released: refusal never loses accepted work.
    blocker.release().await;
    let reply = held.await.unwrap().expect("the held call succeeds").into_inner();
    assert_eq!(reply.message_identifiers.len(), 1);
}

/// `convmsg serve` from a fresh directory: env twins of the flags, a generated token shown
/// once on stderr, health on the one listener, the database file created.
#[tokio::test]
async fn the_serve_binary_starts_on_a_fresh_directory_and_prints_a_usable_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"))
        .arg("serve")
        .current_dir(dir.path())
        .env("CONVMSG_LISTEN", "127.0.0.1:0")
        .env("CONVMSG_DATABASE_URL", "sqlite://fresh.db")
        .env_remove("CONVMSG_BOOTSTRAP_TOKEN")
        .env_remove("CONVMSG_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let read = async {
        let mut token = None;
        while let Some(line) = stderr.next_line().await.unwrap() {
            if let Some(t) = line.split_whitespace().find(|w| w.starts_with("cm_")) {
                token = Some(t.to_owned());
                break;
            }
        }
        let mut addr = None;
        while let Some(line) = stdout.next_line().await.unwrap() {
            let log: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
            if log["message"] == "convmsg serving" {
                addr = log["listen"].as_str().map(str::to_owned);
                break;
            }
        }
        (token.expect("a generated token"), addr.expect("the listen address"))
    };
    let (token, addr) = tokio::time::timeout(Duration::from_secs(30), read).await.expect("server started");
    assert!(dir.path().join("fresh.db").exists());

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    assert!(health.check(HealthCheckRequest { service: String::new() }).await.is_ok());
    let mut admin =
        pb::messaging_admin_client::MessagingAdminClient::with_interceptor(channel, BearerToken(Some(token)));
    assert!(admin.list_channels(pb::ListChannelsRequest::default()).await.is_ok());
    child.kill().await.unwrap();
}
