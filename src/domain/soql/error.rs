//! Why a SOQL query is refused: Salesforce's error code, the offending token and where
//! it starts. `message` renders it the way Salesforce does — the query's line, a caret
//! under the token, `ERROR at Row:r:Column:c`, then what is wrong.

use std::fmt;

use super::lexer::Pos;

/// Salesforce's `errorCode` for a refused query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Not valid SOQL, or SOQL this bridge does not serve (GROUP BY, FOR UPDATE, …).
    MalformedQuery,
    /// A field the object lacks, one that cannot be filtered or sorted, or a value of the
    /// wrong type for its field.
    InvalidField,
    /// An object other than `ConvMessageSendRequest`.
    InvalidType,
    /// An operator the field's type does not take, or a malformed id value.
    InvalidQueryFilterOperator,
    /// `OFFSET` above 2,000.
    NumberOutsideValidRange,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedQuery => "MALFORMED_QUERY",
            Code::InvalidField => "INVALID_FIELD",
            Code::InvalidType => "INVALID_TYPE",
            Code::InvalidQueryFilterOperator => "INVALID_QUERY_FILTER_OPERATOR",
            Code::NumberOutsideValidRange => "NUMBER_OUTSIDE_VALID_RANGE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoqlError {
    pub code: Code,
    pub pos: Pos,
    /// The token as written.
    pub token: String,
    /// What is wrong, naming the token.
    pub detail: String,
}

impl SoqlError {
    /// `what: 'token'`.
    pub fn at(code: Code, pos: Pos, token: impl Into<String>, what: &str) -> SoqlError {
        let token = token.into();
        SoqlError { code, pos, detail: format!("{what}: '{token}'"), token }
    }

    /// A detail written out in full (it names the token itself).
    pub fn detailed(code: Code, pos: Pos, token: impl Into<String>, detail: impl Into<String>) -> SoqlError {
        SoqlError { code, pos, token: token.into(), detail: detail.into() }
    }

    /// Salesforce's message: the line of `query` holding the token, a caret under it,
    /// the position and the detail.
    pub fn message(&self, query: &str) -> String {
        let line = query.lines().nth(self.pos.row.saturating_sub(1) as usize).unwrap_or_default();
        let caret = " ".repeat(self.pos.column.saturating_sub(1) as usize);
        format!("{line}\n{caret}^\nERROR at Row:{}:Column:{}\n{}", self.pos.row, self.pos.column, self.detail)
    }
}

impl fmt::Display for SoqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at Row:{}:Column:{}: {}", self.code.as_str(), self.pos.row, self.pos.column, self.detail)
    }
}

impl std::error::Error for SoqlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_points_a_caret_at_the_token_on_its_line() {
        let e = SoqlError::at(Code::MalformedQuery, Pos { row: 2, column: 6 }, "FRM", "unexpected token");
        let query = "SELECT Id\nFROM FRM";
        assert_eq!(e.message(query), "FROM FRM\n     ^\nERROR at Row:2:Column:6\nunexpected token: 'FRM'");
        assert_eq!(e.to_string(), "MALFORMED_QUERY at Row:2:Column:6: unexpected token: 'FRM'");
    }
}
