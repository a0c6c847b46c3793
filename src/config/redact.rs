//! Keeps configuration values out of start-up errors. A config file holds secrets
//! (`bootstrap_token`, provider credentials, webhook secrets), and its errors are printed
//! to stderr and collected with the pod's logs: the TOML parser quotes the offending
//! line, and type errors quote the value found. Both are removed here; the key, the
//! file, the line and column and the reason stay, so the error still says what to fix.

use figment::error::{Actual, Kind};

/// What replaces a value an error would have quoted.
const NOT_SHOWN: &str = "a value (not shown: configuration values may be secrets)";

/// `error` and every error chained to it, with quoted lines and values removed.
pub fn config_error(error: figment::Error) -> figment::Error {
    let mut errors: Vec<figment::Error> = error.into_iter().map(redacted).collect();
    let mut chained = errors.pop().expect("an error is at least one error");
    while let Some(next) = errors.pop() {
        chained = chained.chain(next);
    }
    chained
}

fn redacted(mut error: figment::Error) -> figment::Error {
    match &mut error.kind {
        Kind::Message(message) => *message = without_source_lines(message),
        Kind::InvalidType(actual, _)
        | Kind::InvalidValue(actual, _)
        | Kind::Unsupported(actual)
        | Kind::UnsupportedKey(actual, _) => redact_actual(actual),
        Kind::UnknownVariant(value, _) => *value = NOT_SHOWN.to_owned(),
        _ => {}
    }
    error
}

fn redact_actual(actual: &mut Actual) {
    if matches!(actual, Actual::Str(_) | Actual::Bytes(_) | Actual::Char(_) | Actual::Other(_)) {
        *actual = Actual::Other(NOT_SHOWN.to_owned());
    }
}

/// A TOML parse error without the quoted source lines (`2 | bootstrap_token = "cm_…`)
/// and their caret lines, on one line.
fn without_source_lines(message: &str) -> String {
    let is_source = |line: &str| {
        let line = line.trim_start();
        let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
        digits.trim_start().starts_with('|')
    };
    let kept: Vec<&str> = message.lines().filter(|l| !is_source(l) && !l.trim().is_empty()).collect();
    if kept.len() == message.lines().filter(|l| !l.trim().is_empty()).count() {
        return message.to_owned();
    }
    format!("{} (the line is not shown: it may hold a secret)", kept.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_parse_error_keeps_its_position_and_reason_but_not_the_line() {
        let message = "TOML parse error at line 2, column 35\n  |\n2 | bootstrap_token = \"cm_SECRET\n  |                                   ^\ninvalid basic string\n";
        let shown = without_source_lines(message);
        assert!(!shown.contains("cm_SECRET"), "{shown}");
        assert!(shown.starts_with("TOML parse error at line 2, column 35: invalid basic string"), "{shown}");
        assert_eq!(without_source_lines("missing field `name`"), "missing field `name`");
    }

    #[test]
    fn a_type_error_does_not_quote_the_value_found() {
        let error = figment::Error::from(Kind::InvalidType(Actual::Str("cm_SECRET".into()), "usize".into()));
        let shown = config_error(error).to_string();
        assert!(!shown.contains("cm_SECRET") && shown.contains("usize"), "{shown}");
    }
}
