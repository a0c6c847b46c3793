//! A call whose client went away mid-request is the client's doing: `/metrics` counts it
//! as gRPC `CANCELLED` (REST: 499), never as `UNKNOWN` or a 5xx, a server-error class.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, spawn_accept_only};

const SEND: &str =
    r#"convmsg_rpc_requests_total{service="convmsg.v1.ConversationMessages",method="SendConversationMessages",code="#;

async fn scrape(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.url())).await.unwrap().text().await.unwrap()
}

/// The value of the first series starting with `prefix`, if one is there.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map(|v| v.parse().unwrap())
}

/// Scrapes until `prefix` shows `want`, for at most 10 s; returns the last scrape.
async fn until_counted(app: &TestApp, prefix: &str, want: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(app).await;
        if value(&text, prefix) == Some(want) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_grpc_call_whose_client_resets_the_stream_mid_body_is_counted_as_cancelled() {
    let app = spawn_accept_only().await;
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = |path: &str| {
        http::Request::post(format!("http://{}{path}", app.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {}", app.token))
            .body(())
            .unwrap()
    };
    // A send whose message promises 100 bytes and delivers 2.
    let (_, mut send) =
        client.send_request(request("/convmsg.v1.ConversationMessages/SendConversationMessages"), false).unwrap();
    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 100, 0x0a, 0x04]), false).unwrap();
    // A health check after it on the same connection: once it is answered, the server has
    // taken the send in hand (streams are accepted in order).
    let (health, mut body) = client.send_request(request("/grpc.health.v1.Health/Check"), false).unwrap();
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true).unwrap();
    assert_eq!(health.await.unwrap().status(), 200);
    send.send_reset(h2::Reason::CANCEL);

    let text = until_counted(&app, &format!("{SEND}\"CANCELLED\"}}"), 1.0).await;
    assert_eq!(value(&text, &format!("{SEND}\"CANCELLED\"}}")), Some(1.0), "{text}");
    assert_eq!(value(&text, &format!("{SEND}\"UNKNOWN\"}}")), None, "{text}");
}

#[tokio::test]
async fn a_rest_call_whose_client_closes_the_connection_mid_body_is_counted_as_499() {
    let app = spawn_accept_only().await;
    let fixture = app.provision(1).await;
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let body = format!(
        r#"{{"inputs":[{{"messageDefinitionName":"{}","messagingEndUserIds":["{}"]}}]}}"#,
        fixture.definition.api_name, fixture.end_user_ids[0]
    );
    let head = format!(
        "POST /services/data/v62.0/actions/standard/sendConversationMessages HTTP/1.1\r\nhost: {}\r\n\
         authorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        app.addr,
        app.token,
        body.len() + 100
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    tcp.flush().await.unwrap();
    drop(tcp);

    let route = r#"convmsg_http_requests_total{method="POST",route="/services/data/{version}/actions/standard/sendConversationMessages",status="#;
    let text = until_counted(&app, &format!("{route}\"499\"}}"), 1.0).await;
    assert_eq!(value(&text, &format!("{route}\"499\"}}")), Some(1.0), "{text}");
    assert!(!text.lines().any(|l| l.starts_with(route) && !l.starts_with(&format!("{route}\"499\""))), "{text}");
}
