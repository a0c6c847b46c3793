//! What is wrong with a caller's input: the field (Salesforce input names, with list
//! indexes such as `messagingEndUserIds[3]`), the kind of mistake and a message.

use std::borrow::Cow;
use std::fmt;

/// Most characters of a caller's value an error message repeats; a longer value is cut
/// and the message says how long it was, so an answer never grows with the input.
pub const MAX_ECHO_CHARS: usize = 64;

/// A caller's text as an error message shows it: itself when short, else its first
/// [`MAX_ECHO_CHARS`] characters, `…`, and its length.
pub fn echo(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} characters)", &text[..cut], text.chars().count())),
    }
}

/// Longest field name and message a violation carries; longer ones are cut (they can
/// only be that long by repeating what a caller sent).
pub const MAX_FIELD_CHARS: usize = 200;
pub const MAX_MESSAGE_CHARS: usize = 500;

fn capped(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text,
        Some((cut, _)) => format!("{}… ({} characters in all)", &text[..cut], text.chars().count()),
    }
}

/// A message cut at [`MAX_MESSAGE_CHARS`], saying so.
pub fn echo_capped(message: String) -> String {
    capped(message, MAX_MESSAGE_CHARS)
}

/// [`echo`] in quotes, control characters escaped (`{:?}` of a short value).
pub fn quoted(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} characters)", &text[..cut], text.chars().count()),
    }
}

/// The kinds of error a caller can see. `crate::error` maps each to a gRPC code,
/// a Salesforce error code and an HTTP status, in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A required field or component parameter is missing.
    RequiredFieldMissing,
    /// A value has the wrong type, or a date does not parse.
    InvalidType,
    /// Unknown parameter, bad enum, bad recipient list, unknown/inactive definition.
    InvalidInput,
    /// A string that should be a record id is not one.
    MalformedId,
    /// A well-formed id names no record of the caller's tenant.
    InvalidIdField,
    /// An idempotency key reused with another body; a unique name taken.
    DuplicateValue,
    /// No or bad token.
    Unauthenticated,
    /// The token lacks a scope.
    PermissionDenied,
    /// Unknown record, or another tenant's.
    NotFound,
    /// The record is in a state that does not allow the operation (cancelling a request
    /// that completed).
    FailedPrecondition,
    /// Admission refused the call; retry later.
    Overloaded,
    /// The database cannot be reached.
    Unavailable,
    /// A bug.
    Internal,
    /// HTTP only (REST bridge): the body is not well-formed JSON.
    JsonParse,
    /// HTTP only (REST bridge): the body is not well-formed XML.
    XmlParse,
    /// HTTP only (REST bridge): a `?fields=` selection names a field the record lacks.
    InvalidField,
    /// HTTP only (REST bridge): the body's media type is neither JSON nor XML.
    UnsupportedMediaType,
    /// HTTP only (REST bridge): the resource exists but not with this method.
    MethodNotAllowed,
    /// HTTP only (REST bridge): the body is larger than the configured limit.
    BodyTooLarge,
    /// A SOQL query that is not valid SOQL or not in the subset served.
    MalformedQuery,
    /// A SOQL operator the field's type does not take, or a malformed id value.
    InvalidQueryFilterOperator,
    /// A number outside its allowed range (SOQL `OFFSET` above 2,000).
    NumberOutsideValidRange,
    /// A query locator (`nextRecordsUrl`) or page token this server did not issue.
    InvalidQueryLocator,
    /// A replication window (`updated`, `deleted`) outside the allowed dates.
    InvalidReplicationDate,
    /// A replication window holding more ids than one answer may carry.
    ExceededIdLimit,
    /// HTTP only (REST bridge): the body did not arrive within the configured time.
    BodyTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl Violation {
    /// Field and message are cut at [`MAX_FIELD_CHARS`] / [`MAX_MESSAGE_CHARS`].
    pub fn new(field: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Violation {
            field: capped(field.into(), MAX_FIELD_CHARS),
            kind,
            message: capped(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    pub fn missing(field: impl Into<String>) -> Self {
        let field = capped(field.into(), MAX_FIELD_CHARS);
        let message = format!("You must specify a value for the {field} parameter.");
        Violation { field, kind: ErrorKind::RequiredFieldMissing, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_echoed_whole_and_long_ones_cut_with_their_length() {
        assert_eq!(echo("abc"), "abc");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        let long = "x".repeat(10_000);
        assert_eq!(echo(&long), format!("{}… (10000 characters)", "x".repeat(MAX_ECHO_CHARS)));
        assert_eq!(quoted(&long), format!("\"{}\"… (10000 characters)", "x".repeat(MAX_ECHO_CHARS)));
        let v = Violation::new("f".repeat(1_000), ErrorKind::InvalidInput, "m".repeat(100_000));
        assert!(v.field.chars().count() < MAX_FIELD_CHARS + 40, "{}", v.field.len());
        assert!(v.message.ends_with("… (100000 characters in all)"), "{}", &v.message[v.message.len() - 40..]);
        let wide = "é".repeat(MAX_ECHO_CHARS + 1);
        assert!(echo(&wide).ends_with("… (65 characters)"), "cut on a character boundary");
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Violations collected while checking one input.
#[derive(Debug, Default)]
pub struct Violations(Vec<Violation>);

impl Violations {
    pub fn push(&mut self, v: Violation) {
        self.0.push(v);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Violations) {
        self.0.extend(other.0);
    }

    /// `Ok(value)` when nothing was found wrong.
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<Violation>> {
        if self.0.is_empty() { Ok(value) } else { Err(self.0) }
    }
}
