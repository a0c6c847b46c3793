//! The one error type the doors see, and the one table mapping each error kind to a
//! gRPC code, a Salesforce error code and an HTTP status (ARCHITECTURE.md "Error table").
//! Internal causes are logged in full here and never returned to callers.

use std::time::Duration;

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{ErrorKind, Violation};
use crate::store::StoreError;

/// How one error kind shows on each door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codes {
    pub grpc: Code,
    /// Salesforce `errorCode` / per-input `statusCode`.
    pub salesforce: &'static str,
    pub http: u16,
}

/// The error table. Every door goes through here.
pub fn codes(kind: ErrorKind) -> Codes {
    let (grpc, salesforce, http) = match kind {
        ErrorKind::RequiredFieldMissing => (Code::InvalidArgument, "REQUIRED_FIELD_MISSING", 400),
        ErrorKind::InvalidType => (Code::InvalidArgument, "INVALID_TYPE", 400),
        ErrorKind::InvalidInput => (Code::InvalidArgument, "INVALID_INPUT", 400),
        ErrorKind::MalformedId => (Code::InvalidArgument, "MALFORMED_ID", 400),
        ErrorKind::InvalidIdField => (Code::InvalidArgument, "INVALID_ID_FIELD", 400),
        ErrorKind::DuplicateValue => (Code::AlreadyExists, "DUPLICATE_VALUE", 409),
        ErrorKind::Unauthenticated => (Code::Unauthenticated, "INVALID_SESSION_ID", 401),
        ErrorKind::PermissionDenied => (Code::PermissionDenied, "INSUFFICIENT_ACCESS", 403),
        ErrorKind::NotFound => (Code::NotFound, "NOT_FOUND", 404),
        ErrorKind::FailedPrecondition => (Code::FailedPrecondition, "INVALID_OPERATION", 409),
        ErrorKind::Overloaded => (Code::ResourceExhausted, "REQUEST_LIMIT_EXCEEDED", 503),
        ErrorKind::Unavailable => (Code::Unavailable, "SERVER_UNAVAILABLE", 503),
        ErrorKind::Internal => (Code::Internal, "UNKNOWN_EXCEPTION", 500),
        // Only the REST bridge meets these; the gRPC codes say what they would be.
        ErrorKind::JsonParse => (Code::InvalidArgument, "JSON_PARSER_ERROR", 400),
        ErrorKind::XmlParse => (Code::InvalidArgument, "XML_PARSER_ERROR", 400),
        ErrorKind::InvalidField => (Code::InvalidArgument, "INVALID_FIELD", 400),
        ErrorKind::UnsupportedMediaType => (Code::InvalidArgument, "UNSUPPORTED_MEDIA_TYPE", 415),
        ErrorKind::MethodNotAllowed => (Code::Unimplemented, "METHOD_NOT_ALLOWED", 405),
        ErrorKind::BodyTooLarge => (Code::ResourceExhausted, "EXCEEDED_MAX_SIZE_REQUEST", 413),
        // Reads over many requests (SOQL, replication, ListRequests).
        ErrorKind::MalformedQuery => (Code::InvalidArgument, "MALFORMED_QUERY", 400),
        ErrorKind::InvalidQueryFilterOperator => (Code::InvalidArgument, "INVALID_QUERY_FILTER_OPERATOR", 400),
        ErrorKind::NumberOutsideValidRange => (Code::InvalidArgument, "NUMBER_OUTSIDE_VALID_RANGE", 400),
        ErrorKind::InvalidQueryLocator => (Code::InvalidArgument, "INVALID_QUERY_LOCATOR", 400),
        ErrorKind::InvalidReplicationDate => (Code::InvalidArgument, "INVALID_REPLICATION_DATE", 400),
        ErrorKind::ExceededIdLimit => (Code::InvalidArgument, "EXCEEDED_ID_LIMIT", 400),
        ErrorKind::BodyTimeout => (Code::DeadlineExceeded, "REQUEST_TIMEOUT", 408),
    };
    Codes { grpc, salesforce, http }
}

/// Most violations one answer lists; the others are counted in the message, not listed.
pub const MAX_VIOLATIONS_LISTED: usize = 20;
/// Most bytes of field names and messages one answer lists. gRPC carries the details in
/// a header, and clients refuse large ones (grpc-core's default limit is 8 KiB of
/// metadata), so the listed violations stop here even before the count.
pub const MAX_LISTED_BYTES: usize = 3_000;

/// The violations an answer lists (at least one; the first ones, in order) and how many
/// it leaves out.
pub fn listed(violations: &[Violation]) -> (&[Violation], usize) {
    let mut bytes = 0;
    let mut n = 0;
    for v in violations.iter().take(MAX_VIOLATIONS_LISTED) {
        bytes += v.field.len() + v.message.len();
        if n > 0 && bytes > MAX_LISTED_BYTES {
            break;
        }
        n += 1;
    }
    (&violations[..n], violations.len() - n)
}

/// What an answer says about the violations it does not list.
pub fn omitted_note(listed: usize, omitted: usize) -> String {
    format!("{} problems in all; only the first {listed} are listed", listed + omitted)
}

/// What a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The caller's input is wrong; each violation names its field.
    #[error("{}", join_violations(.0))]
    Invalid(Vec<Violation>),
    /// A value that must be unique is reused (idempotency key with another body).
    #[error("{message}")]
    Duplicate { field: String, message: String },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("this token lacks the {0} scope")]
    PermissionDenied(&'static str),
    #[error("{0}")]
    NotFound(String),
    /// The record's state does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the server is at capacity; retry after {} s", .retry_after.as_secs().max(1))]
    Overloaded { retry_after: Duration },
    #[error("the database is unavailable; retry later")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// An HTTP request the REST bridge cannot read as asked (malformed body, unsupported
    /// media type, method not allowed, body too large); `kind` is one of the HTTP-only kinds.
    #[error("{message}")]
    Request { kind: ErrorKind, message: String },
}

/// The first violation, and how many more there are (each is in the details): the
/// message stays short however many there are.
fn join_violations(v: &[Violation]) -> String {
    match v {
        [] => "invalid input".to_owned(),
        [only] => only.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more problems; see the field violations)", rest.len()),
    }
}

impl AppError {
    pub fn invalid(v: Violation) -> Self {
        AppError::Invalid(vec![v])
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            AppError::Invalid(v) => v.first().map(|v| v.kind).unwrap_or(ErrorKind::InvalidInput),
            AppError::Duplicate { .. } => ErrorKind::DuplicateValue,
            AppError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            AppError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            AppError::NotFound(_) => ErrorKind::NotFound,
            AppError::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            AppError::Overloaded { .. } => ErrorKind::Overloaded,
            AppError::Unavailable(_) => ErrorKind::Unavailable,
            AppError::Internal(_) => ErrorKind::Internal,
            AppError::Request { kind, .. } => *kind,
        }
    }

    /// The message a caller may see (internal causes stay in the log), at most
    /// [`crate::domain::violation::MAX_MESSAGE_CHARS`] characters and a note.
    pub fn public_message(&self) -> String {
        crate::domain::violation::echo_capped(self.to_string())
    }

    /// Fields named by this error, for Salesforce's `fields` arrays.
    pub fn fields(&self) -> Vec<String> {
        match self {
            AppError::Invalid(v) => v.iter().map(|v| v.field.clone()).collect(),
            AppError::Duplicate { field, .. } => vec![field.clone()],
            _ => Vec::new(),
        }
    }

    /// Logs the full cause chain of server-side failures; callers' mistakes are not logged as errors.
    pub fn log(&self) {
        match self {
            AppError::Unavailable(e) => tracing::warn!(error = %error_chain(e), "database unavailable"),
            AppError::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            _ => {}
        }
    }

    /// The gRPC status with rich details: `BadRequest` field violations, `ErrorInfo`
    /// whose reason is the Salesforce code, and `RetryInfo` when retrying helps.
    pub fn into_status(self) -> tonic::Status {
        self.log();
        let codes = codes(self.kind());
        let mut details = ErrorDetails::new();
        let mut info = std::collections::HashMap::new();
        match &self {
            AppError::Invalid(violations) => {
                let (shown, omitted) = listed(violations);
                for v in shown {
                    details.add_bad_request_violation(v.field.clone(), v.message.clone());
                }
                if omitted > 0 {
                    // The count a client can read without parsing the note.
                    info.insert("violations".to_owned(), violations.len().to_string());
                    details.add_bad_request_violation("", omitted_note(shown.len(), omitted));
                }
            }
            AppError::Duplicate { field, message } => {
                details.add_bad_request_violation(field.clone(), message.clone());
            }
            AppError::Overloaded { retry_after } => {
                details.set_retry_info(Some(*retry_after));
            }
            AppError::Unavailable(_) => {
                details.set_retry_info(Some(Duration::from_secs(1)));
            }
            _ => {}
        }
        details.set_error_info(codes.salesforce, "convmsg", info);
        tonic::Status::with_error_details(codes.grpc, self.public_message(), details)
    }
}

impl From<crate::domain::principal::MissingScope> for AppError {
    fn from(e: crate::domain::principal::MissingScope) -> Self {
        AppError::PermissionDenied(e.0.as_str())
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => AppError::Unavailable(e),
            // The database is up but could not take the call in time: the server is busy.
            StoreError::Busy(_) => {
                tracing::warn!(error = %error_chain(&e), "database busy; the call is refused for a retry");
                AppError::Overloaded { retry_after: Duration::from_secs(1) }
            }
            StoreError::Conflict(v) => AppError::Invalid(vec![v]),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<AppError> for tonic::Status {
    fn from(e: AppError) -> Self {
        e.into_status()
    }
}

pub use crate::telemetry::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_caller_mistake_is_invalid_argument_with_a_400() {
        for kind in [
            ErrorKind::RequiredFieldMissing,
            ErrorKind::InvalidType,
            ErrorKind::InvalidInput,
            ErrorKind::MalformedId,
            ErrorKind::InvalidIdField,
        ] {
            let c = codes(kind);
            assert_eq!((c.grpc, c.http), (Code::InvalidArgument, 400), "{kind:?}");
        }
    }

    #[test]
    fn invalid_input_becomes_a_status_with_field_violations_and_the_salesforce_code() {
        let status = AppError::invalid(Violation::missing("messageDefinitionName")).into_status();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let br = details.bad_request().expect("bad request details");
        assert_eq!(br.field_violations[0].field, "messageDefinitionName");
        assert_eq!(details.error_info().unwrap().reason, "REQUIRED_FIELD_MISSING");
    }

    #[test]
    fn the_http_only_kinds_have_salesforce_s_codes_and_statuses() {
        let table: Vec<(&str, u16)> = [
            ErrorKind::JsonParse,
            ErrorKind::XmlParse,
            ErrorKind::InvalidField,
            ErrorKind::UnsupportedMediaType,
            ErrorKind::MethodNotAllowed,
            ErrorKind::BodyTooLarge,
        ]
        .into_iter()
        .map(|kind| (codes(kind).salesforce, codes(kind).http))
        .collect();
        assert_eq!(
            table,
            [
                ("JSON_PARSER_ERROR", 400),
                ("XML_PARSER_ERROR", 400),
                ("INVALID_FIELD", 400),
                ("UNSUPPORTED_MEDIA_TYPE", 415),
                ("METHOD_NOT_ALLOWED", 405),
                ("EXCEEDED_MAX_SIZE_REQUEST", 413),
            ]
        );
        let e = AppError::Request { kind: ErrorKind::XmlParse, message: "bad".into() };
        assert_eq!((e.kind(), e.public_message(), e.fields()), (ErrorKind::XmlParse, "bad".to_owned(), vec![]));
    }

    #[test]
    fn an_answer_lists_at_most_20_violations_and_says_how_many_there_were() {
        let many: Vec<Violation> = (0..500)
            .map(|i| Violation::new(format!("messagingEndUserIds[{i}]"), ErrorKind::MalformedId, "x".repeat(400)))
            .collect();
        let status = AppError::Invalid(many).into_status();
        let details = status.get_error_details();
        let listed = &details.bad_request().unwrap().field_violations;
        assert!(listed.len() <= MAX_VIOLATIONS_LISTED + 1, "{}", listed.len());
        let note = listed.last().unwrap();
        assert!(note.description.contains("500 problems in all"), "{}", note.description);
        assert_eq!(details.error_info().unwrap().metadata["violations"], "500");
        assert!(status.message().contains("and 499 more problems"), "{}", status.message());
        let metadata: usize = status.details().len() + status.message().len();
        assert!(metadata < 6_000, "{metadata} bytes of error metadata");
    }

    #[test]
    fn overload_carries_retry_info() {
        let status = AppError::Overloaded { retry_after: Duration::from_secs(2) }.into_status();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.get_error_details().retry_info().unwrap().retry_delay, Some(Duration::from_secs(2)));
    }
}
