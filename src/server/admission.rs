//! Admission control in front of every business endpoint (gRPC services and the REST
//! bridge; health and metrics stay outside so probes always answer). `Admitted`, per call:
//!
//! 1. A slot: at most N calls in flight on this listener (one semaphore shared by every
//!    service, route and connection). A call waits for a slot at most `queue_timeout`,
//!    then is refused — RESOURCE_EXHAUSTED with `RetryInfo`, or Salesforce's 503 with
//!    `Retry-After`. The short wait absorbs bursts, and a client that ignores the retry
//!    advice can come back at most once per `queue_timeout` per stream instead of in a
//!    tight loop, so refusing past the limit costs little and goodput holds under many
//!    times the load the server can take (no congestion collapse).
//! 2. A time limit: how long one call may take once admitted (for a stream: until its
//!    headers).
//!
//! Refusals and time-outs become answers the caller's protocol understands.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, header};
use tokio::sync::Semaphore;
use tonic::server::NamedService;
use tower::{BoxError, Layer, Service, ServiceExt};

use crate::domain::ErrorKind;
use crate::error::AppError;
use crate::rest::format::{Format, RestError};

/// Shared settings; cloning shares the semaphore.
#[derive(Clone)]
pub struct AdmissionLayer {
    limits: Arc<Limits>,
}

struct Limits {
    /// The calls in flight on this listener.
    slots: Arc<Semaphore>,
    /// Longest a call waits for a slot before it is refused.
    queue_timeout: Duration,
    /// Longest an admitted call may take.
    timeout: Duration,
    /// Retry advice sent with a refusal.
    retry_after: Duration,
}

impl AdmissionLayer {
    pub fn new(max_concurrent: usize, queue_timeout: Duration, timeout: Duration, retry_after: Duration) -> Self {
        let slots = Arc::new(Semaphore::new(max_concurrent.max(1)));
        AdmissionLayer { limits: Arc::new(Limits { slots, queue_timeout, timeout, retry_after }) }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted { inner, limits: self.limits.clone() }
    }
}

#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    limits: Arc<Limits>,
}

/// Why the stack did not let a call through.
enum Refused {
    /// No slot within the queue timeout.
    Overloaded,
    /// Admitted, but the call took longer than the time limit.
    TimedOut,
    /// The service failed (a bug).
    Failed(BoxError),
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
        let door = door(&request);
        let limits = self.limits.clone();
        let svc = self.inner.clone();
        Box::pin(async move {
            let retry_after = limits.retry_after;
            let Ok(Ok(slot)) = tokio::time::timeout(limits.queue_timeout, limits.slots.clone().acquire_owned()).await
            else {
                return Ok(refusal(Refused::Overloaded, door, retry_after));
            };
            let answer = tokio::time::timeout(limits.timeout, svc.oneshot(request)).await;
            drop(slot);
            match answer {
                Ok(Ok(response)) => Ok(response.into_response()),
                Ok(Err(e)) => Ok(refusal(Refused::Failed(e.into()), door, retry_after)),
                Err(_) => Ok(refusal(Refused::TimedOut, door, retry_after)),
            }
        })
    }
}

/// Which door a call came through, and so how its refusal is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Grpc,
    Rest(Format),
}

fn door<B>(request: &Request<B>) -> Door {
    let grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc { Door::Grpc } else { Door::Rest(Format::of_accept(request.headers())) }
}

/// The answer for a call the stack refused or cut short: through the one error table,
/// rendered as each door renders its own errors (gRPC status; Salesforce JSON or XML as
/// the caller's `Accept` asks).
fn refusal(refused: Refused, door: Door, retry_after: Duration) -> Response {
    let error = match refused {
        Refused::Overloaded => AppError::Overloaded { retry_after },
        Refused::TimedOut => {
            tracing::warn!("call exceeded the server's time limit");
            if door == Door::Grpc {
                return tonic::Status::deadline_exceeded("the call exceeded the server's time limit")
                    .into_http::<axum::body::Body>();
            }
            // Not an overload: the call itself took too long (e.g. waiting on the database).
            AppError::Request {
                kind: ErrorKind::Unavailable,
                message: "the call took longer than the server allows; retry later".to_owned(),
            }
        }
        Refused::Failed(error) => {
            let bug = AppError::Internal(anyhow::anyhow!("admission stack: {error}"));
            bug.log();
            bug
        }
    };
    match door {
        Door::Grpc => error.into_status().into_http::<axum::body::Body>(),
        Door::Rest(format) => {
            let mut response = RestError::from(error).render(format);
            if !response.headers().contains_key(header::RETRY_AFTER) {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            response
        }
    }
}
