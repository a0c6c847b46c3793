//! Serves the router on the one listener, in plain text (HTTP/1.1, and h2c by prior
//! knowledge for gRPC) or over TLS (ALPN `h2`, `http/1.1`), and shuts down in two steps:
//! when `stop_accepting` resolves the listener closes and every open connection is
//! asked to finish (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close` after the response in
//! flight); when `deadline` resolves whatever is still open (long watch streams) is cut.
//! axum::serve cannot do TLS, hence this loop. It knows nothing about routes or health.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A client that opens a TCP connection and never finishes the TLS handshake is dropped
/// after this, so it cannot hold a task forever.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After an accept error that is not about one connection (out of file descriptors),
/// wait this long before accepting again instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Serves `router` on `listener` (over TLS when `tls` is set) until `stop_accepting`,
/// then lets connections finish until `deadline`. Returns when every connection is gone.
pub async fn serve_until_stopped(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop_accepting: impl Future<Output = ()>,
    deadline: impl Future<Output = ()>,
) {
    let tls = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // With a timer, hyper drops an HTTP/1.1 client that takes over 30 s to send its
    // request headers (its default header read timeout), so idle sockets cannot pile up.
    builder.http1().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    // Every connection's task, so that those still open at the deadline can be cut.
    let mut connections = JoinSet::new();
    tokio::pin!(stop_accepting);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop_accepting => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true); // gRPC: small frames must not wait for Nagle
        let watcher = graceful.watcher();
        // Every request learns its peer's address (server spans record it).
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            },
        ));
        let builder = builder.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let result = match tls {
                None => watcher.watch(builder.serve_connection(TokioIo::new(tcp), service)).await,
                Some(acceptor) => match handshake(&acceptor, tcp).await {
                    Some(stream) => watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await,
                    None => return,
                },
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(open_connections = connections.len(), "listener closed; open connections are finishing");
    let drained = tokio::select! {
        _ = async {
            graceful.shutdown().await;
            while connections.join_next().await.is_some() {}
        } => true,
        _ = deadline => false,
    };
    if !drained {
        tracing::warn!(cut = connections.len(), "drain period over; cutting connections still open");
        connections.shutdown().await;
    }
}

async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Errors that concern only the connection being accepted; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}
