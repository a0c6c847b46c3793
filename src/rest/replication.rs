//! `GET …/sobjects/ConvMessageSendRequest/updated/?start=…&end=…` and `…/deleted/?…`:
//! the ids changed (or purged by retention) in a window, for replication, in
//! Salesforce's shapes — `{"ids":[…],"latestDateCovered":…}` and
//! `{"deletedRecords":[{"id","deletedDate"}],"earliestDateAvailable","latestDateCovered"}`.
//! `start` and `end` are ISO 8601 date-times (`2026-01-31T08:00:00+00:00`, `…Z`); a `+`
//! that arrived unencoded (read as a space) is taken for the `+` it was. The window's
//! rules are `domain::replication`'s; this module reads the parameters and writes the
//! answer.

use super::format::{Node, Reply, RestError};
use super::sobject::{percent_decode, sf_datetime};
use super::{RestState, SOBJECT};
use crate::domain::principal::Principal;
use crate::domain::query::dates::parse_instant;
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;

/// The window parameters, as Unix milliseconds.
fn window(query: Option<&str>) -> Result<(i64, i64), RestError> {
    let param = |name: &str| -> Result<i64, RestError> {
        let raw = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
            .map(percent_decode)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| AppError::invalid(Violation::missing(name)))?;
        let text = raw.trim();
        // `…T08:00:00 00:00`: an offset's `+` sent unencoded.
        let repaired = match text.len().checked_sub(6).map(|i| text.split_at(i)) {
            Some((head, zone)) if zone.starts_with(' ') => format!("{head}+{}", &zone[1..]),
            _ => text.to_owned(),
        };
        parse_instant(&repaired).ok_or_else(|| {
            AppError::invalid(Violation::new(
                name,
                ErrorKind::InvalidReplicationDate,
                format!("{name} must be an ISO 8601 date-time such as 2026-01-31T08:00:00+00:00, got {text:?}"),
            ))
            .into()
        })
    };
    Ok((param("start")?, param("end")?))
}

/// `GET …/updated/?start=…&end=…`.
pub async fn updated(state: &RestState, principal: &Principal, query: Option<&str>) -> Result<Reply, RestError> {
    let (start, end) = window(query)?;
    let updated = state.service.updated_requests(principal, start, end).await?;
    let ids = updated.ids.iter().map(|id| Node::str(id.as_str())).collect();
    Ok(Reply::object(
        SOBJECT,
        Node::Obj(vec![
            ("ids", Node::List(ids)),
            ("latestDateCovered", Node::Str(sf_datetime(updated.window.latest_covered_ms))),
        ]),
    ))
}

/// `GET …/deleted/?start=…&end=…`.
pub async fn deleted(state: &RestState, principal: &Principal, query: Option<&str>) -> Result<Reply, RestError> {
    let (start, end) = window(query)?;
    let deleted = state.service.deleted_requests(principal, start, end).await?;
    let records = deleted
        .records
        .iter()
        .map(|(id, at)| Node::Obj(vec![("id", Node::str(id.as_str())), ("deletedDate", Node::Str(sf_datetime(*at)))]))
        .collect();
    Ok(Reply::object(
        SOBJECT,
        Node::Obj(vec![
            ("deletedRecords", Node::List(records)),
            ("earliestDateAvailable", Node::Str(sf_datetime(deleted.window.earliest_ms))),
            ("latestDateCovered", Node::Str(sf_datetime(deleted.window.latest_covered_ms))),
        ]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: i64 = 1_769_846_400_000; // 2026-01-31T08:00:00Z

    #[test]
    fn start_and_end_parse_encoded_unencoded_and_zulu() {
        assert_eq!(
            window(Some("start=2026-01-31T08%3A00%3A00%2B00%3A00&end=2026-01-31T09:00:00Z")).unwrap(),
            (AT, AT + 3_600_000)
        );
        assert_eq!(
            window(Some("end=2026-01-31T10:00:00+01:00&start=2026-01-31T08:00:00+00:00")).unwrap(),
            (AT, AT + 3_600_000)
        );
    }

    #[test]
    fn a_missing_or_malformed_date_names_the_parameter() {
        let e = window(Some("end=2026-01-31T09:00:00Z")).unwrap_err().error;
        assert_eq!((e.kind(), e.fields()), (ErrorKind::RequiredFieldMissing, vec!["start".to_owned()]));
        let e = window(Some("start=2026-01-31T09:00:00Z&end=tomorrow")).unwrap_err().error;
        assert_eq!((e.kind(), e.fields()), (ErrorKind::InvalidReplicationDate, vec!["end".to_owned()]));
        let e = window(None).unwrap_err().error;
        assert_eq!(e.fields(), ["start"]);
    }
}
