//! What is wrong with a caller's input: the field (Salesforce input names, with list
//! indexes such as `messagingEndUserIds[3]`), the kind of mistake and a message.

use std::fmt;

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, kind: ErrorKind, message: impl Into<String>) -> Self {
        Violation { field: field.into(), kind, message: message.into() }
    }

    pub fn missing(field: impl Into<String>) -> Self {
        let field = field.into();
        let message = format!("You must specify a value for the {field} parameter.");
        Violation { field, kind: ErrorKind::RequiredFieldMissing, message }
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
