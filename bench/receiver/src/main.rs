//! A webhook receiver for `scripts/bench` that answers every request `204 No Content`
//! after a fixed delay, like a provider's API that takes its time: nginx cannot delay its
//! answers, and a delivery benchmark into a slow receiver measures how well convmsg keeps
//! its in-progress limit busy. Its own process, on loopback, until killed.
//!
//! `receiver PORT DELAY_MS` (port 0 picks one); prints `listening on ADDR` once bound.

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || std::io::Error::other("usage: receiver PORT DELAY_MS");
    let port: u16 = args.next().and_then(|p| p.parse().ok()).ok_or_else(usage)?;
    let delay = Duration::from_millis(args.next().and_then(|d| d.parse().ok()).ok_or_else(usage)?);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let answer = service_fn(move |request: Request<Incoming>| async move {
                // Read the whole body, as a provider would, before answering.
                let _ = drain(request.into_body()).await;
                tokio::time::sleep(delay).await;
                let mut response = Response::new(String::new());
                *response.status_mut() = StatusCode::NO_CONTENT;
                Ok::<_, Infallible>(response)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), answer).await;
        });
    }
}

/// Drains a request body frame by frame.
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    use hyper::body::Body;
    use std::pin::Pin;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frame?;
    }
    Ok(())
}
