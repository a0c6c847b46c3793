//! Serves the router on the one listener, in plain text (HTTP/1.1, and h2c by prior
//! knowledge for gRPC) or over TLS (ALPN `h2`, `http/1.1`), keeps every connection on a
//! short leash, and shuts down in two steps: when `stop_accepting` resolves the listener
//! closes and every open connection is asked to finish (HTTP/2 GOAWAY, HTTP/1.1
//! `Connection: close` after the response in flight); when `deadline` resolves whatever
//! is still open (long watch streams) is cut. axum::serve cannot do TLS, hence this loop.
//! It knows nothing about routes or health; hyper's own bare error answers (414, 431,
//! 400 for a malformed head) get the REST bridge's shape through `rest::automatic`.
//!
//! The leash (`[connections]`): at most `max` connections are open (one more is closed at
//! once); a connection must deliver its first request's headers within
//! `first_request_timeout_ms` of being accepted — TLS handshake and HTTP/2 preface
//! included — or it is dropped; a connection with no call in flight (a streaming
//! response counts until its last byte) for `idle_timeout_ms` is closed gracefully;
//! HTTP/2 peers are pinged and dropped when they stop answering; HTTP/1.1 waits at most
//! `first_request_timeout_ms` for each later request's headers too.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use futures_util::future::BoxFuture;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::ConnectionsConfig;
use crate::rest::automatic::Reshaped;

/// After an accept error that is not about one connection (out of file descriptors),
/// wait this long before accepting again instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(200);

/// Refused connections are logged at most this often (with a count), so a flood of them
/// cannot flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// `[connections]` as durations; zero durations turn that limit off.
#[derive(Debug, Clone)]
pub struct Leash {
    pub max: usize,
    pub first_request_timeout: Duration,
    pub idle_timeout: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
}

impl From<&ConnectionsConfig> for Leash {
    fn from(c: &ConnectionsConfig) -> Self {
        let optional = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        Leash {
            max: c.max.max(1),
            first_request_timeout: Duration::from_millis(c.first_request_timeout_ms.max(1)),
            idle_timeout: optional(c.idle_timeout_ms),
            keepalive_interval: optional(c.http2_keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(c.http2_keepalive_timeout_ms.max(1)),
        }
    }
}

/// Serves `router` on `listener` (over TLS when `tls` is set) until `stop_accepting`,
/// then lets connections finish until `deadline`. Returns when every connection is gone.
pub async fn serve_until_stopped(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    leash: Leash,
    stop_accepting: impl Future<Output = ()>,
    deadline: impl Future<Output = ()>,
) {
    let tls = tls.map(TlsAcceptor::from);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(leash.first_request_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(leash.keepalive_interval)
        .keep_alive_timeout(leash.keepalive_timeout);
    let slots = Arc::new(Semaphore::new(leash.max));
    // Cancelled when the listener closes: every connection is asked to finish.
    let closing = CancellationToken::new();
    let mut refusals = Refusals::default();
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
        let accepted_at = Instant::now();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(tcp); // closed at once: the peer sees the connection end, not a hang
            refusals.count(leash.max);
            continue;
        };
        let _ = tcp.set_nodelay(true); // gRPC: small frames must not wait for Nagle
        let activity = Arc::new(Activity::new(accepted_at));
        // Every request learns its peer's address (server spans record it).
        let router = tower::ServiceExt::map_request(router.clone(), move |mut request: http::Request<_>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            request
        });
        let service = TowerToHyperService::new(Tracked { inner: router, activity: activity.clone() });
        let (builder, tls, leash, closing) = (builder.clone(), tls.clone(), leash.clone(), closing.clone());
        connections.spawn(async move {
            let _slot = slot;
            let first_request_by = accepted_at + leash.first_request_timeout;
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(Reshaped::new(tcp)), service);
                    drive(conn, &activity, &leash, closing).await;
                }
                Some(acceptor) => {
                    let Some(stream) = handshake(&acceptor, tcp, first_request_by).await else { return };
                    let conn = builder.serve_connection(TokioIo::new(Reshaped::new(stream)), service);
                    drive(conn, &activity, &leash, closing).await;
                }
            }
        });
    }
    drop(listener);
    closing.cancel();
    tracing::info!(open_connections = connections.len(), "listener closed; open connections are finishing");
    let drained = tokio::select! {
        _ = async { while connections.join_next().await.is_some() {} } => true,
        _ = deadline => false,
    };
    if !drained {
        tracing::warn!(cut = connections.len(), "drain period over; cutting connections still open");
        connections.shutdown().await;
    }
}

/// Runs one connection to its end under the leash. The first-request timeout drops the
/// connection outright (the peer never finished asking for anything); the idle timeout
/// and the listener closing ask it to finish gracefully, and a connection that then
/// still does not finish within the first-request timeout is dropped.
async fn drive<C>(conn: C, activity: &Activity, leash: &Leash, closing: CancellationToken)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut finishing_by: Option<Instant> = None;
    loop {
        let wake = finishing_by.or_else(|| activity.deadline(leash));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = closing.cancelled(), if finishing_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                finishing_by = Some(Instant::now() + leash.first_request_timeout);
            }
            _ = activity.changed.notified() => {}
            _ = sleep_until(wake) => {
                if finishing_by.is_some() {
                    tracing::debug!("connection did not finish after being asked to; dropped");
                    return;
                }
                match activity.expired(leash, Instant::now()) {
                    Some(Expired::FirstRequest) => {
                        tracing::debug!("no request within the first-request timeout; connection dropped");
                        return;
                    }
                    Some(Expired::Idle) => {
                        tracing::debug!("connection idle past the idle timeout; closing it");
                        conn.as_mut().graceful_shutdown();
                        finishing_by = Some(Instant::now() + leash.first_request_timeout);
                    }
                    None => {}
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    by: Instant,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout_at(by, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake not done within the first-request timeout");
            None
        }
    }
}

/// Errors that concern only the connection being accepted; the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// Connections closed at the cap since the last log line.
#[derive(Default)]
struct Refusals {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn count(&mut self, max: usize) {
        self.unlogged += 1;
        let now = Instant::now();
        if self.logged_at.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                refused = self.unlogged,
                max_connections = max,
                "connection limit reached; new connections are closed at once (connections.max)"
            );
            self.unlogged = 0;
            self.logged_at = Some(now);
        }
    }
}

/// What a connection is doing, as its requests report it.
struct Activity {
    accepted_at: Instant,
    /// A request's headers have arrived at least once.
    asked: AtomicBool,
    /// Calls whose response has not been sent to its end.
    in_flight: AtomicUsize,
    /// When the last call in flight ended.
    idle_since: Mutex<Instant>,
    /// Woken on every change, so the connection task recomputes its deadline.
    changed: Notify,
}

enum Expired {
    FirstRequest,
    Idle,
}

impl Activity {
    fn new(accepted_at: Instant) -> Self {
        Activity {
            accepted_at,
            asked: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(accepted_at),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> CallGuard {
        self.asked.store(true, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        CallGuard(self.clone())
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When the leash next bites, if nothing changes: `None` while calls are in flight.
    fn deadline(&self, leash: &Leash) -> Option<Instant> {
        if !self.asked.load(Ordering::SeqCst) {
            return Some(self.accepted_at + leash.first_request_timeout);
        }
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        leash.idle_timeout.map(|idle| self.idle_since() + idle)
    }

    fn expired(&self, leash: &Leash, now: Instant) -> Option<Expired> {
        let due = self.deadline(leash)?;
        if now < due {
            return None;
        }
        Some(if self.asked.load(Ordering::SeqCst) { Expired::Idle } else { Expired::FirstRequest })
    }
}

/// One call in flight; dropped when its response body has been sent (or abandoned).
struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        *activity.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        activity.changed.notify_one();
    }
}

/// The router, reporting each call to its connection's `Activity`.
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S, R> tower::Service<R> for Tracked<S>
where
    S: tower::Service<R, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let guard = self.activity.begin();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|body| Body::new(Guarded { body, _guard: guard })))
        })
    }
}

/// A response body that keeps its call counted as in flight until it is done.
struct Guarded {
    body: Body,
    _guard: CallGuard,
}

impl hyper::body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
