//! 16.3 — connections are on a leash: silent sockets, half-finished HTTP/2 prefaces and
//! idle or dead peers are closed after documented timeouts, and past the connection cap
//! a new connection is closed at once instead of starving the process of descriptors.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The HTTP/2 client preface, then an empty SETTINGS frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// A server whose connections must ask within 300 ms; other limits as `adjust` sets.
async fn leashed(adjust: impl FnOnce(&mut convmsg::config::ConnectionsConfig)) -> TestApp {
    spawn_accept_only_with(|c| {
        c.connections.first_request_timeout_ms = 300;
        adjust(&mut c.connections);
    })
    .await
}

async fn spawn_accept_only_with(adjust: impl FnOnce(&mut convmsg::config::Config)) -> TestApp {
    spawn_app_with(|c| {
        c.dispatch.enabled = false;
        adjust(c);
    })
    .await
}

/// Reads (and drops) whatever the server sends until it closes the connection; the time
/// that took, or `None` if it was still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    let until_closed = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, until_closed).await.ok().map(|()| started.elapsed())
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_dropped_after_the_first_request_timeout() {
    let app = leashed(|_| {}).await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();

    let closed = closed_within(&mut silent, Duration::from_secs(10)).await.expect("the server closed it");

    assert!(closed >= Duration::from_millis(250), "not before the timeout: {closed:?}");
}

#[tokio::test]
async fn a_half_sent_http2_preface_is_dropped_after_the_first_request_timeout() {
    let app = leashed(|_| {}).await;
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(&PREFACE[..10]).await.unwrap();

    assert!(closed_within(&mut half, Duration::from_secs(10)).await.is_some(), "still open");
}

#[tokio::test]
async fn a_full_http2_preface_then_silence_is_dropped_after_the_first_request_timeout() {
    let app = leashed(|_| {}).await;
    let mut quiet = TcpStream::connect(app.addr).await.unwrap();
    quiet.write_all(PREFACE).await.unwrap();

    assert!(closed_within(&mut quiet, Duration::from_secs(10)).await.is_some(), "still open");
}

#[tokio::test]
async fn an_http1_connection_idle_after_its_request_is_closed() {
    let app = leashed(|c| c.idle_timeout_ms = 300).await;
    let mut client = TcpStream::connect(app.addr).await.unwrap();
    client.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    assert!(closed_within(&mut client, Duration::from_secs(10)).await.is_some(), "still open");
}

#[tokio::test]
async fn an_http2_connection_with_nothing_open_is_sent_goaway_after_the_idle_timeout() {
    let app = leashed(|c| {
        c.first_request_timeout_ms = 10_000;
        c.idle_timeout_ms = 300;
    })
    .await;
    let mut peer = TcpStream::connect(app.addr).await.unwrap();
    peer.write_all(PREFACE).await.unwrap();
    peer.write_all(&headers_frame(1)).await.unwrap();

    let seen = tokio::time::timeout(Duration::from_secs(10), frames_until_closed(&mut peer, true))
        .await
        .expect("the idle connection was closed");

    assert!(seen.contains(&0x7), "a GOAWAY before closing: {seen:?}");
}

#[tokio::test]
async fn a_grpc_channel_whose_idle_connection_was_closed_reconnects_for_its_next_call() {
    let app = leashed(|c| {
        c.first_request_timeout_ms = 10_000;
        c.idle_timeout_ms = 200;
    })
    .await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let check = || tonic_health::pb::HealthCheckRequest { service: String::new() };
    health.check(check()).await.expect("first call");

    tokio::time::sleep(Duration::from_secs(1)).await; // the connection is closed meanwhile

    health.check(check()).await.expect("the next call on a new connection");
}

#[tokio::test]
async fn a_status_stream_open_longer_than_the_idle_timeout_is_not_cut() {
    // An idle connection is asked to close, then dropped 300 ms later if it has not: a
    // stream that did not count as a call in flight would be cut well within the wait.
    let app = leashed(|c| c.idle_timeout_ms = 200).await;
    let fx = app.provision(1).await;
    let mut conv = app.conv().await;
    let id = conv.send_conversation_messages(fx.request()).await.unwrap().into_inner().request_id;
    let mut stream = conv
        .watch_request_status(convmsg::grpc::pb::WatchRequestStatusRequest { request_id: id, follow_receipts: false })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().expect("the current state at once");

    // Several idle timeouts pass with the stream open and nothing to say.
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.dispatcher.run_once().await.unwrap();

    let mut last = None;
    while let Some(update) = stream.message().await.expect("the stream was not cut") {
        last = update.request;
    }
    let status = last.expect("updates after the wait").request_status;
    assert_eq!(status, convmsg::grpc::pb::RequestStatus::Completed as i32);
}

/// Reads HTTP/2 frames until the server closes the connection, answering each PING as a
/// live client would when `answer_pings`; the types of the frames seen.
async fn frames_until_closed(peer: &mut TcpStream, answer_pings: bool) -> Vec<u8> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut seen = Vec::new();
    loop {
        match peer.read(&mut chunk).await {
            Ok(0) | Err(_) => return seen,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
        while buffer.len() >= 9 {
            let length = u32::from_be_bytes([0, buffer[0], buffer[1], buffer[2]]) as usize;
            if buffer.len() < 9 + length {
                break;
            }
            let frame: Vec<u8> = buffer.drain(..9 + length).collect();
            let (kind, flags) = (frame[3], frame[4]);
            seen.push(kind);
            if kind == 0x6 && flags & 0x1 == 0 && answer_pings {
                let mut ack = frame.clone();
                ack[4] = 0x1;
                let _ = peer.write_all(&ack).await;
            }
        }
    }
}

/// A HEADERS frame for `GET /` (HPACK static table entries only), ending the stream.
fn headers_frame(stream: u8) -> Vec<u8> {
    let block = [0x82, 0x86, 0x84, 0x41, 0x01, b'x']; // :method GET, :scheme http, :path /, :authority x
    let mut frame = vec![0, 0, block.len() as u8, 0x01, 0x05, 0, 0, 0, stream];
    frame.extend_from_slice(&block);
    frame
}

#[tokio::test]
async fn an_http2_peer_that_stops_answering_pings_is_dropped() {
    let app = leashed(|c| {
        c.first_request_timeout_ms = 60_000;
        c.idle_timeout_ms = 0;
        c.http2_keepalive_interval_ms = 200;
        c.http2_keepalive_timeout_ms = 200;
    })
    .await;
    let mut deaf = TcpStream::connect(app.addr).await.unwrap();
    deaf.write_all(PREFACE).await.unwrap();
    deaf.write_all(&headers_frame(1)).await.unwrap();

    // Never acknowledging a PING: the server must ping, then give up.
    let seen = tokio::time::timeout(Duration::from_secs(10), frames_until_closed(&mut deaf, false))
        .await
        .expect("a peer that never answers pings was dropped");

    assert!(seen.contains(&0x6), "the server pinged before giving up: {seen:?}");
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_is_closed_at_once_and_health_returns_when_others_go() {
    let app = leashed(|c| {
        c.max = 3;
        c.first_request_timeout_ms = 60_000;
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // The server holds three; it may not have accepted them all yet when a fourth comes,
    // so wait until a fourth is turned away at once.
    let mut turned_away = None;
    for _ in 0..50 {
        let mut extra = TcpStream::connect(app.addr).await.unwrap();
        if let Some(took) = closed_within(&mut extra, Duration::from_millis(500)).await {
            turned_away = Some(took);
            break;
        }
        silent.push(extra);
        silent.remove(0);
    }
    assert!(turned_away.is_some(), "a connection past the cap was kept open");

    drop(silent);
    let http = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..100 {
        if http.get(format!("{}/healthz", app.url())).send().await.is_ok_and(|r| r.status().is_success()) {
            healthy = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(healthy, "/healthz answers once the silent connections are gone");
}
