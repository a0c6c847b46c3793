//! SOQL for `ConvMessageSendRequest`: a small hand-written lexer (`lexer`), a
//! recursive-descent parser into a syntax tree (`parser`) and a resolver (`resolve`) that
//! checks names, operators and values against the object's fields and evaluates date
//! literals, producing the typed `domain::query::RequestQuery` a store runs. Everything
//! Salesforce's SOQL has that this subset does not serve is refused with Salesforce's
//! error code, naming the token and its row and column. Pure: no I/O, no SQL.

pub mod error;
pub mod lexer;
pub mod parser;
pub mod resolve;

#[cfg(test)]
mod tests;

pub use error::{Code, SoqlError};

use crate::domain::query::RequestQuery;

/// Salesforce's longest SOQL statement, in characters.
pub const MAX_QUERY_CHARS: usize = 100_000;

/// Parses and checks `text`, with date literals evaluated at `now_ms` (UTC).
pub fn parse_query(text: &str, now_ms: i64) -> Result<RequestQuery, SoqlError> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(SoqlError::detailed(
            Code::MalformedQuery,
            lexer::Pos { row: 1, column: 1 },
            "",
            format!("SOQL statements cannot be longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let tokens = lexer::tokenize(text)?;
    let query = parser::parse(tokens)?;
    resolve::resolve(query, now_ms)
}
