//! Server spans and call metrics for the business doors, in one tower layer that
//! `app::routes` puts around the whole router. gRPC calls to `convmsg.v1.*` get a span
//! named `convmsg.v1.Service/Method` following the OpenTelemetry RPC conventions
//! (`rpc.system`, `rpc.service`, `rpc.method`, `rpc.grpc.status_code`); REST calls under
//! `/services/data` get one named `METHOD route` following the HTTP conventions
//! (`http.request.method`, `http.route`, `http.response.status_code`, `url.path`). Both
//! take the caller's W3C context as parent and leave `convmsg.request_id` and
//! `convmsg.tenant` for the service code to record. Probes, health, reflection and
//! `/metrics` pass through untouched: they would drown the traces.
//!
//! Labels and span names come only from what the listener serves: a `convmsg.v1` path
//! naming no method of the contract is `other`/`other`, an HTTP method outside the
//! standard ones is `other`, and an unknown REST path is `/services/data/{unknown}`, so
//! callers, authenticated or not, cannot grow `/metrics` by making names up.
//!
//! The gRPC status is read from the response headers, where tonic puts it for every
//! error of a unary call (a trailers-only response); a response without one succeeded
//! (`OK`). A status a streaming call ends with (in trailers) is not seen here.
//!
//! A call whose client went away is the client's doing, not a server error: when reading
//! the request body failed (the stream was reset or the connection closed) or the call was
//! dropped before it answered, it is counted as gRPC `CANCELLED`, or for REST as status
//! 499 ("client closed request", as nginx logs it), whatever the handler made of the
//! truncated body.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use crate::metrics::Metrics;
use crate::rest::Resource;

/// The gRPC package whose services are traced.
const GRPC_PREFIX: &str = "/convmsg.v1.";

#[derive(Clone)]
pub struct ServerTelemetryLayer {
    metrics: Arc<Metrics>,
}

impl ServerTelemetryLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ServerTelemetryLayer { metrics }
    }
}

impl<S> Layer<S> for ServerTelemetryLayer {
    type Service = ServerTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTelemetry { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct ServerTelemetry<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// The label for anything the listener does not serve.
pub const OTHER: &str = "other";

/// What kind of call a request is.
enum Call {
    /// A method of the contract, or `other`/`other`.
    Grpc {
        service: &'static str,
        method: &'static str,
    },
    Rest {
        route: &'static str,
    },
}

/// Every method of the `convmsg.v1` contract by service, read once from the descriptor
/// set the build embeds (so new RPCs are known without a list to keep in step).
static GRPC_METHODS: LazyLock<HashMap<String, HashSet<String>>> = LazyLock::new(|| {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut methods: HashMap<String, HashSet<String>> = HashMap::new();
    for file in set.file {
        for service in &file.service {
            let names = methods.entry(format!("{}.{}", file.package(), service.name())).or_default();
            names.extend(service.method.iter().map(|m| m.name().to_owned()));
        }
    }
    methods
});

/// The contract's name for a gRPC method path's parts, or `other`/`other`.
fn known_grpc(service: &str, method: &str) -> (&'static str, &'static str) {
    let known: &'static HashMap<String, HashSet<String>> = &GRPC_METHODS;
    known
        .get_key_value(service)
        .and_then(|(service, methods)| methods.get(method).map(|method| (service.as_str(), method.as_str())))
        .unwrap_or((OTHER, OTHER))
}

/// The standard HTTP methods by name; anything else is `other`.
pub fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
    KNOWN.into_iter().find(|known| *known == method.as_str()).unwrap_or(OTHER)
}

fn classify(path: &str) -> Option<Call> {
    if let Some(rest) = path.strip_prefix('/').filter(|_| path.starts_with(GRPC_PREFIX)) {
        let (service, method) = rest.split_once('/').unwrap_or((rest, ""));
        let (service, method) = known_grpc(service, method);
        return Some(Call::Grpc { service, method });
    }
    if path == "/services/data" || path.starts_with("/services/data/") {
        let route = Resource::resolve(path).map_or("/services/data/{unknown}", |r| r.route_template());
        return Some(Call::Rest { route });
    }
    if let Some(route) = crate::receipts::route_template(path) {
        return Some(Call::Rest { route });
    }
    None
}

/// The canonical name of a gRPC status code (`OK`, `INVALID_ARGUMENT`, …).
pub fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code).ok().and_then(|i| NAMES.get(i)).copied().unwrap_or("UNKNOWN")
}

/// gRPC `CANCELLED`: what a call whose client went away is counted as.
const CANCELLED: i32 = 1;

/// The REST status a call whose client went away is counted as (nginx's 499).
const CLIENT_CLOSED: u16 = 499;

/// The request body, noting whether reading it failed: the client reset the stream or
/// closed the connection before sending all of it.
struct WatchedBody {
    inner: Body,
    failed: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a call once: when it answers, or — dropped first, its client gone — as cancelled.
struct Outcome {
    metrics: Arc<Metrics>,
    call: Call,
    method: &'static str,
    started: Instant,
    counted: bool,
}

impl Outcome {
    /// Counts nothing, now or when dropped.
    fn disarm(&mut self) {
        self.counted = true;
    }

    fn count(&mut self, grpc_code: i32, http_status: u16) {
        self.disarm();
        let elapsed = self.started.elapsed();
        match &self.call {
            Call::Grpc { service, method } => {
                self.metrics.observe_rpc(service, method, grpc_code_name(grpc_code), elapsed)
            }
            Call::Rest { route } => self.metrics.observe_http(self.method, route, http_status, elapsed),
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.counted {
            self.count(CANCELLED, CLIENT_CLOSED);
        }
    }
}

/// The gRPC codes that are server errors in the OpenTelemetry RPC conventions.
fn grpc_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

impl<S, R> Service<Request<Body>> for ServerTelemetry<S>
where
    S: Service<Request<Body>, Response = Response<R>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(call) = classify(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let span = match &call {
            Call::Grpc { service, method } => tracing::info_span!(
                "grpc.server",
                otel.name = %format!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
                server.address = Empty,
                network.peer.address = Empty,
                convmsg.request_id = Empty,
                convmsg.tenant = Empty,
            ),
            Call::Rest { route } => tracing::info_span!(
                "http.server",
                otel.name = %format!("{} {route}", method_label(request.method())),
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = method_label(request.method()),
                http.route = %route,
                url.path = %request.uri().path(),
                http.response.status_code = Empty,
                server.address = Empty,
                network.peer.address = Empty,
                convmsg.request_id = Empty,
                convmsg.tenant = Empty,
            ),
        };
        crate::telemetry::set_parent(&span, crate::telemetry::extract(request.headers()));
        let host = request.uri().host().map(str::to_owned).or_else(|| {
            let host = request.headers().get(http::header::HOST)?.to_str().ok()?;
            Some(host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned())
        });
        if let Some(host) = host {
            span.record("server.address", host);
        }
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
            span.record("network.peer.address", peer.ip().to_string());
        }
        let method = method_label(request.method());
        let failed = Arc::new(AtomicBool::new(false));
        let request = request.map(|inner| Body::new(WatchedBody { inner, failed: failed.clone() }));
        let mut outcome =
            Outcome { metrics: self.metrics.clone(), call, method, started: Instant::now(), counted: false };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            if let Ok(response) = &result {
                let grpc = matches!(outcome.call, Call::Grpc { .. });
                if failed.load(Ordering::Relaxed) {
                    if grpc {
                        span.record("rpc.grpc.status_code", CANCELLED);
                    } else {
                        span.record("http.response.status_code", CLIENT_CLOSED);
                    }
                    outcome.count(CANCELLED, CLIENT_CLOSED);
                } else if grpc {
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(if response.status().is_success() { 0 } else { 2 });
                    span.record("rpc.grpc.status_code", code);
                    if grpc_server_error(code) {
                        span.record("otel.status_code", "ERROR");
                    }
                    outcome.count(code, 0);
                } else {
                    let status = response.status().as_u16();
                    span.record("http.response.status_code", status);
                    if status >= 500 {
                        span.record("otel.status_code", "ERROR");
                    }
                    outcome.count(0, status);
                }
            } else {
                // The inner service failed without answering: not counted before either.
                outcome.disarm();
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_classified_by_path_with_route_templates() {
        match classify("/convmsg.v1.ConversationMessages/SendConversationMessages") {
            Some(Call::Grpc { service, method }) => {
                assert_eq!(service, "convmsg.v1.ConversationMessages");
                assert_eq!(method, "SendConversationMessages");
            }
            _ => panic!("not gRPC"),
        }
        match classify("/services/data/v65.0/actions/standard/sendConversationMessages") {
            Some(Call::Rest { route }) => {
                assert_eq!(route, "/services/data/{version}/actions/standard/sendConversationMessages")
            }
            _ => panic!("not REST"),
        }
        for made_up in ["/convmsg.v1.Svc1/Method1", "/convmsg.v1.ConversationMessages/Nope", "/convmsg.v1.x"] {
            match classify(made_up) {
                Some(Call::Grpc { service, method }) => assert_eq!((service, method), (OTHER, OTHER), "{made_up}"),
                _ => panic!("{made_up} is still a gRPC call"),
            }
        }
        match classify("/convmsg.v1.MessagingAdmin/UpsertChannel") {
            Some(Call::Grpc { service, method }) => {
                assert_eq!((service, method), ("convmsg.v1.MessagingAdmin", "UpsertChannel"))
            }
            _ => panic!("not gRPC"),
        }
        assert_eq!(method_label(&http::Method::from_bytes(b"FROB").unwrap()), OTHER);
        assert_eq!(method_label(&http::Method::PATCH), "PATCH");
        assert!(classify("/grpc.health.v1.Health/Check").is_none());
        assert!(classify("/healthz").is_none());
        assert!(classify("/metrics").is_none());
        assert_eq!(grpc_code_name(3), "INVALID_ARGUMENT");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
    }
}
