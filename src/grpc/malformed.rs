//! A request tonic cannot read — bytes that are not the method's protobuf message, or
//! gRPC framing that is broken (a truncated frame, a bad compressed flag, a body that
//! does not decompress) — is the caller's mistake: `INVALID_ARGUMENT` with convmsg's
//! usual details (`ErrorInfo.reason` `INVALID_INPUT`), not tonic's `INTERNAL`, which would
//! count as a server error in metrics and traces. (gRPC's own table of library-generated
//! codes says INTERNAL; convmsg answers as for any other malformed input, as its REST
//! bridge does with `JSON_PARSER_ERROR`.)
//!
//! tonic builds these answers itself, before any handler runs, so this layer recognises
//! them in the response — a trailers-only `grpc-status: 13` whose message is one of
//! tonic's decoding messages — and answers anew. convmsg's own INTERNAL answers always
//! say `internal error`, so they are never taken for these.

use std::task::{Context, Poll};

use axum::response::Response;
use futures_util::future::BoxFuture;
use http::Request;
use tonic::server::NamedService;
use tower::{Layer, Service};

use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;

/// How tonic (and prost through it) begins the message of a request it could not decode.
const DECODING_MESSAGES: [&str; 4] =
    ["failed to decode Protobuf message", "protocol error:", "Unexpected EOF decoding stream", "Error decompressing"];

#[derive(Clone, Copy, Default)]
pub struct MalformedLayer;

impl<S> Layer<S> for MalformedLayer {
    type Service = Malformed<S>;

    fn layer(&self, inner: S) -> Malformed<S> {
        Malformed { inner }
    }
}

#[derive(Clone)]
pub struct Malformed<S> {
    inner: S,
}

impl<S: NamedService> NamedService for Malformed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<Request<B>> for Malformed<S>
where
    S: Service<Request<B>, Response = Response> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(match undecodable(&response) {
                Some(why) => invalid(&why),
                None => response,
            })
        })
    }
}

/// tonic's message when `response` is its answer to a request it could not decode.
fn undecodable(response: &Response) -> Option<String> {
    let headers = response.headers();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some("13") {
        return None;
    }
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok())?;
    let message = percent_decode(message);
    DECODING_MESSAGES.iter().any(|prefix| message.starts_with(prefix)).then_some(message)
}

fn invalid(why: &str) -> Response {
    let violation = Violation::new(
        "request",
        ErrorKind::InvalidInput,
        format!("the request is not a well-formed gRPC message of this method: {why}"),
    );
    AppError::invalid(violation).into_status().into_http::<axum::body::Body>()
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2, "Responses").
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: tonic::Status) -> Response {
        status.into_http::<axum::body::Body>()
    }

    #[test]
    fn tonics_decoding_failures_are_recognised_and_convmsgs_own_internal_errors_are_not() {
        let decode = tonic::Status::internal("failed to decode Protobuf message: invalid wire type value: 7");
        assert!(undecodable(&answered(decode)).unwrap().contains("invalid wire type"));
        assert!(undecodable(&answered(tonic::Status::internal("Unexpected EOF decoding stream."))).is_some());
        let ours = AppError::Internal(anyhow::anyhow!("a bug")).into_status();
        assert!(undecodable(&answered(ours)).is_none());
        assert!(undecodable(&answered(tonic::Status::invalid_argument("failed to decode Protobuf message"))).is_none());
    }

    #[test]
    fn the_new_answer_is_invalid_argument_with_convmsgs_details() {
        let response = invalid("failed to decode Protobuf message: buffer underflow");
        assert_eq!(response.headers()["grpc-status"], "3");
        assert!(response.headers().contains_key("grpc-status-details-bin"));
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(percent_decode("a%20b%3A%zz"), "a b:%zz");
    }
}
