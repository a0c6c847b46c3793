#![allow(dead_code)] // shared by every test module; not all use everything
//! A capturing HTTP server for provider tests: it records every request it receives and
//! answers with whatever the test's responder says. Each provider's test module wraps it
//! in a responder that speaks that provider's API (routes, auth, error bodies).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use convmsg::providers::config::ProvidersConfig;
use convmsg::providers::{Delivered, FailureReason, OutboundMessage, Provider, ProviderError, ProviderName, Providers};
use tokio::task::JoinHandle;

/// Provider timeout in these tests: short, so the "never answers" tests stay quick.
pub const TIMEOUT_MS: u64 = 200;

/// The longest any single provider call may take in a test before the test fails.
const GUARD: Duration = Duration::from_secs(10);

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }

    /// An `application/x-www-form-urlencoded` body as name → value.
    pub fn form(&self) -> BTreeMap<String, String> {
        let text = std::str::from_utf8(&self.body).expect("the form body is UTF-8");
        let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).expect("parses as a query");
        url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }
}

/// What the server does with a request.
pub enum Reply {
    /// Answer with this status, headers and body.
    Answer { status: StatusCode, headers: Vec<(&'static str, String)>, body: String },
    /// Never answer (the connection stays open until the client gives up).
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            headers: vec![("content-type", "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Answer {
            status: StatusCode::from_u16(status).expect("a valid status"),
            headers: vec![("content-type", "text/plain".into())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: &str) -> Reply {
        if let Reply::Answer { headers, .. } = &mut self {
            headers.push((name, value.to_string()));
        }
        self
    }
}

type Responder = dyn Fn(&Captured) -> Reply + Send + Sync;

pub struct FakeServer {
    pub addr: SocketAddr,
    pub base_url: String,
    requests: Arc<Mutex<Vec<Captured>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start(responder: impl Fn(&Captured) -> Reply + Send + Sync + 'static) -> FakeServer {
        let responder: Arc<Responder> = Arc::new(responder);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let responder = Arc::clone(&responder);
            let seen = Arc::clone(&seen);
            async move { handle(request, responder, seen).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeServer { addr, base_url: format!("http://{addr}"), requests, task }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The one request received; fails the test if there were none or several.
    pub fn only_request(&self) -> Captured {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request, got {requests:#?}");
        requests.into_iter().next().expect("one request")
    }
}

async fn handle(request: Request<Body>, responder: Arc<Responder>, seen: Arc<Mutex<Vec<Captured>>>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let captured = Captured {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    let reply = responder(&captured);
    seen.lock().expect("requests lock").push(captured);
    match reply {
        Reply::Answer { status, headers, body } => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (name, value) in headers {
                response.headers_mut().append(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).expect("a valid header value"),
                );
            }
            response
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// An address where nothing listens: bound, then released.
pub fn refused_base_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}")
}

/// A message to `+15550123` for definition `OrderShipped` on channel `chan`.
pub fn message() -> OutboundMessage {
    OutboundMessage {
        message_identifier: "3f2b8c1e-5d4a-4e7b-9c0d-2a1b3c4d5e6f".into(),
        request_id: "1srxx0000000001AAA".into(),
        tenant: "default".into(),
        end_user_id: "0PAxx0000000001AAA".into(),
        recipient: "+15550123".into(),
        channel_developer_name: "chan".into(),
        channel_platform_key: "+15550100".into(),
        channel_options: BTreeMap::new(),
        definition_api_name: "OrderShipped".into(),
        text: "Hi Ada, order 42 ships on 2026-11-24.".into(),
        template: None,
        traceparent: None,
    }
}

/// The named provider from a registry built from `config`.
pub fn provider(config: &ProvidersConfig, name: &str) -> Arc<dyn Provider> {
    let providers = Providers::from_config(config).expect("providers from config");
    let name = ProviderName::parse(name).expect("a provider name");
    providers.get(name).expect("the provider is registered")
}

/// Sends under a guard, so a provider that ignores its timeout fails the test instead of
/// hanging it.
pub async fn send(provider: &dyn Provider, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
    bounded(provider.send(message)).await
}

pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future).await.expect("the provider call finished within the guard")
}

/// Asserts a permanent failure with `reason`; returns its detail.
#[track_caller]
pub fn assert_permanent(result: Result<Delivered, ProviderError>, reason: FailureReason) -> String {
    match result {
        Err(ProviderError::Permanent { reason: got, detail }) => {
            assert_eq!(got, reason, "detail: {detail}");
            detail
        }
        other => panic!("expected Permanent {reason}, got {other:?}"),
    }
}

/// Asserts a transient failure; returns its retry-after.
#[track_caller]
pub fn assert_transient(result: Result<Delivered, ProviderError>) -> Option<Duration> {
    match result {
        Err(ProviderError::Transient { retry_after, .. }) => retry_after,
        other => panic!("expected Transient, got {other:?}"),
    }
}
