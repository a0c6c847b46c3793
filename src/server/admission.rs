//! Admission control in front of every business endpoint (gRPC services and the REST
//! bridge; health and metrics stay outside so probes always answer). The stack, outer
//! to inner:
//!
//! 1. `Admitted` — turns refusals and timeouts into answers the caller's protocol
//!    understands: a gRPC status with `RetryInfo`, or Salesforce's JSON error with HTTP
//!    503 and `Retry-After`.
//! 2. `LoadShed` — when no slot is free, refuse at once instead of queueing without bound.
//! 3. `GlobalConcurrencyLimit` — at most N calls in flight on this listener: one
//!    semaphore shared by every service, route and connection.
//! 4. `Timeout` — bound how long one call may take (for a stream: until its headers).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, StatusCode, header};
use tokio::sync::Semaphore;
use tonic::server::NamedService;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShed;
use tower::load_shed::error::Overloaded;
use tower::timeout::error::Elapsed;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};

use crate::domain::ErrorKind;
use crate::error::{AppError, codes};

type Stack<S> = LoadShed<tower::limit::ConcurrencyLimit<tower::timeout::Timeout<S>>>;

/// Shared settings; cloning shares the semaphore.
#[derive(Clone)]
pub struct AdmissionLayer {
    slots: Arc<Semaphore>,
    timeout: Duration,
    retry_after: Duration,
}

impl AdmissionLayer {
    pub fn new(max_concurrent: usize, timeout: Duration, retry_after: Duration) -> Self {
        AdmissionLayer { slots: Arc::new(Semaphore::new(max_concurrent.max(1))), timeout, retry_after }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        let stack = ServiceBuilder::new()
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(self.slots.clone()))
            .timeout(self.timeout)
            .service(inner);
        Admitted { inner: stack, retry_after: self.retry_after }
    }
}

#[derive(Clone)]
pub struct Admitted<S> {
    inner: Stack<S>,
    retry_after: Duration,
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Admitted<S>
where
    S: Service<Request<ReqB>, Response = http::Response<ResB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    http::Response<ResB>: IntoResponse,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is decided per call below (load shedding needs the call to answer).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let grpc = is_grpc(&request);
        let retry_after = self.retry_after;
        let svc = self.inner.clone();
        Box::pin(async move {
            match svc.oneshot(request).await {
                Ok(response) => Ok(response.into_response()),
                Err(e) => Ok(refusal(e, grpc, retry_after)),
            }
        })
    }
}

fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The answer for a call the stack refused or cut short.
fn refusal(error: BoxError, grpc: bool, retry_after: Duration) -> Response {
    let (kind, message) = if error.is::<Overloaded>() {
        let overloaded = AppError::Overloaded { retry_after };
        if grpc {
            return overloaded.into_status().into_http::<axum::body::Body>();
        }
        (overloaded.kind(), overloaded.public_message())
    } else if error.is::<Elapsed>() {
        tracing::warn!("call exceeded the server's time limit");
        if grpc {
            return tonic::Status::deadline_exceeded("the call exceeded the server's time limit")
                .into_http::<axum::body::Body>();
        }
        // Not an overload: the call itself took too long (e.g. waiting on the database).
        (ErrorKind::Unavailable, "the call took longer than the server allows; retry later".to_owned())
    } else {
        let bug = AppError::Internal(anyhow::anyhow!("admission stack: {error}"));
        if grpc {
            return bug.into_status().into_http::<axum::body::Body>();
        }
        bug.log();
        (bug.kind(), bug.public_message())
    };
    let codes = codes(kind);
    let body = serde_json::json!([{ "message": message, "errorCode": codes.salesforce }]);
    let mut response =
        (StatusCode::from_u16(codes.http).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}
