//! 16.9 — the small things a hostile or broken client meets: undecodable gRPC requests
//! are INVALID_ARGUMENT (not a server error), a stalled REST body is 408 and frees its
//! slot, hyper's own refusals (414, 431, a malformed head) carry a Salesforce-shaped
//! body, and a config file's secrets never appear in its parse errors.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

use super::webhook_secrets::refused_start;
use crate::helpers::*;

/// A unary call to `path` whose request body is `body`, as raw bytes; the answer's
/// `grpc-status` and `grpc-message`.
async fn raw_grpc(app: &TestApp, path: &str, body: Vec<u8>) -> (String, String) {
    let mut channel = app.channel().await;
    let request = http::Request::post(format!("{}{path}", app.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {}", app.token))
        .body(tonic::body::Body::new(axum::body::Body::from(body)))
        .unwrap();
    let response = channel.ready().await.unwrap().call(request).await.unwrap();
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (header("grpc-status"), header("grpc-message").replace("%20", " ").replace("%3A", ":"))
}

/// A gRPC frame: uncompressed, `payload` after its length.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

const SEND: &str = "/convmsg.v1.ConversationMessages/SendConversationMessages";

#[tokio::test]
async fn bytes_that_are_not_the_methods_protobuf_message_are_invalid_argument() {
    let app = spawn_accept_only().await;
    // Field 1 (message_definition_name, a string) sent as a varint: not decodable.
    let (status, message) = raw_grpc(&app, SEND, frame(&[0x08, 0x96, 0x01])).await;

    assert_eq!(status, "3", "{message}");
    assert!(message.contains("not a well-formed gRPC message"), "{message}");
}

#[tokio::test]
async fn a_truncated_grpc_frame_is_invalid_argument() {
    let app = spawn_accept_only().await;
    let mut truncated = frame(&[0u8; 100]);
    truncated.truncate(20);

    let (status, message) = raw_grpc(&app, SEND, truncated).await;

    assert_eq!(status, "3", "{message}");
}

#[tokio::test]
async fn undecodable_calls_are_not_counted_as_server_errors() {
    let app = spawn_accept_only().await;
    raw_grpc(&app, SEND, frame(&[0x08, 0x96, 0x01])).await;

    let text = reqwest::get(format!("{}/metrics", app.url())).await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"method="SendConversationMessages",code="INVALID_ARGUMENT"} 1"#), "{text}");
    assert!(!text.contains(r#"code="INTERNAL""#), "{text}");
}

/// Writes `head` (and nothing after it) on a new connection, then reads the answer.
async fn raw_http(app: &TestApp, head: &[u8]) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 10 s")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status line and the JSON body of a raw answer.
fn status_and_body(answer: &str) -> (&str, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().unwrap();
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}")))
}

#[tokio::test]
async fn a_stalled_rest_body_is_408_and_its_slot_is_freed() {
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.rest.body_timeout_ms = 300;
        c.admission.max_concurrent_requests = 1;
    })
    .await;
    let head = format!(
        "POST /services/data/v65.0/actions/standard/sendConversationMessages HTTP/1.1\r\nhost: x\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"inputs\":",
        app.token
    );

    let answer = raw_http(&app, head.as_bytes()).await;

    let (status, body) = status_and_body(&answer);
    assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{answer}");
    assert_eq!(body[0]["errorCode"], "REQUEST_TIMEOUT");
    // The one admission slot is free again.
    let versions = reqwest::Client::new()
        .get(format!("{}/services/data/v65.0", app.url()))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(versions.status(), 200);
}

#[tokio::test]
async fn hypers_own_refusals_carry_salesforce_shaped_bodies() {
    let app = spawn_accept_only().await;
    let long_uri = format!("GET /services/data/{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET /services/data HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..150).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    let bad_length = "POST /services/data HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n";

    for (head, status, code) in [
        (long_uri.as_str(), "HTTP/1.1 414 URI Too Long", "URI_TOO_LONG"),
        (many_headers.as_str(), "HTTP/1.1 431 Request Header Fields Too Large", "REQUEST_HEADER_FIELDS_TOO_LARGE"),
        (bad_length, "HTTP/1.1 400 Bad Request", "MALFORMED_REQUEST"),
    ] {
        let answer = raw_http(&app, head.as_bytes()).await;
        let (got, body) = status_and_body(&answer);
        assert_eq!(got, status, "{answer}");
        assert_eq!(body[0]["errorCode"], code, "{answer}");
        assert!(answer.to_ascii_lowercase().contains("content-type: application/json"), "{answer}");
    }
}

#[tokio::test]
async fn a_config_parse_error_does_not_print_the_line_with_the_token() {
    let secret = "cm_do-not-print-me-anywhere-0123456789abcdef";
    let stderr = refused_start(&format!("bootstrap_token = \"{secret}\n")).await;

    assert!(!stderr.contains("do-not-print-me"), "the token was printed: {stderr}");
    assert!(stderr.contains("TOML parse error at line 3"), "{stderr}");

    let stderr = refused_start(&format!("[admission]\nmax_concurrent_requests = \"{secret}\"\n")).await;
    assert!(!stderr.contains("do-not-print-me"), "the value was printed: {stderr}");
    assert!(stderr.contains("max_concurrent_requests"), "{stderr}");
}
