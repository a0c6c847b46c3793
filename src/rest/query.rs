//! `GET …/query?q=SOQL` and `…/queryAll?q=SOQL`, and their query-more pages
//! `…/query/{locator}` (also under `queryAll`): SOQL over the caller's
//! `ConvMessageSendRequest` records in Salesforce's result shape —
//! `{"totalSize","done","nextRecordsUrl"?,"records":[{"attributes":{type,url},…}]}`,
//! `COUNT()` as `totalSize` with no records, `COUNT(field)` as one `AggregateResult`.
//! Batches hold 2,000 records unless `Sforce-Query-Options: batchSize=n` asks for fewer
//! (200 to 2,000). `queryAll` returns what `query` does: convmsg deletes requests for
//! good (retention), so there is no recycle bin to include.
//!
//! Parsing and checking are `domain::soql`'s; the page is `Service::query_page`'s, the
//! same function gRPC's `ListRequests` calls; this module reads the HTTP request and
//! writes the answer.

use http::HeaderMap;

use super::format::{Node, Reply, RestError};
use super::locator::{self, Locator};
use super::sobject::{percent_decode, query_record};
use super::{RestState, Version};
use crate::domain::principal::Principal;
use crate::domain::query::{RequestQuery, Selection};
use crate::domain::soql::{self, Code, SoqlError};
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::service::{Cursor, QueryPage};

/// Records per batch unless the caller asks for fewer (Salesforce's default and maximum).
pub const DEFAULT_BATCH: u32 = 2000;
/// The smallest batch Salesforce serves.
pub const MIN_BATCH: u32 = 200;
/// The header that sets the batch size.
pub const QUERY_OPTIONS: &str = "Sforce-Query-Options";

/// The error code of a SOQL refusal.
fn kind_of(code: Code) -> ErrorKind {
    match code {
        Code::MalformedQuery => ErrorKind::MalformedQuery,
        Code::InvalidField => ErrorKind::InvalidField,
        Code::InvalidType => ErrorKind::InvalidType,
        Code::InvalidQueryFilterOperator => ErrorKind::InvalidQueryFilterOperator,
        Code::NumberOutsideValidRange => ErrorKind::NumberOutsideValidRange,
    }
}

/// A SOQL refusal as Salesforce writes it (the line, a caret, the position, the detail).
pub fn soql_error(error: &SoqlError, soql: &str) -> RestError {
    RestError::request(kind_of(error.code), error.message(soql))
}

/// The `q` parameter of a query string, decoded.
fn soql_param(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| pair.strip_prefix("q=")).map(percent_decode)
}

/// The batch size `Sforce-Query-Options: batchSize=n` asks for, within 200 to 2,000.
fn batch_size(headers: &HeaderMap) -> Result<Option<u32>, RestError> {
    let Some(value) = headers.get(QUERY_OPTIONS) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default();
    for option in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (name, raw) = option.split_once('=').unwrap_or((option, ""));
        if !name.trim().eq_ignore_ascii_case("batchSize") {
            continue;
        }
        let n: u32 = raw.trim().parse().map_err(|_| {
            AppError::invalid(Violation::new(
                QUERY_OPTIONS,
                ErrorKind::InvalidInput,
                format!("batchSize must be a whole number from {MIN_BATCH} to {DEFAULT_BATCH}, got {:?}", raw.trim()),
            ))
        })?;
        return Ok(Some(n.clamp(MIN_BATCH, DEFAULT_BATCH)));
    }
    Ok(None)
}

/// `GET …/query?q=…` (or `queryAll`): the first page of a query.
pub async fn start(
    state: &RestState,
    principal: &Principal,
    version: Version,
    query_string: Option<&str>,
    headers: &HeaderMap,
) -> Result<Reply, RestError> {
    let soql = soql_param(query_string).filter(|q| !q.trim().is_empty()).ok_or_else(|| {
        RestError::request(ErrorKind::MalformedQuery, "A query string has to be specified (the q parameter)")
    })?;
    let now_ms = state.service.now_ms();
    let query = soql::parse_query(&soql, now_ms).map_err(|e| soql_error(&e, &soql))?;
    let batch = batch_size(headers)?.unwrap_or(DEFAULT_BATCH);
    match &query.selection {
        Selection::Count => {
            let total = state.service.count_query(principal, &query).await?;
            Ok(result(total, None, Vec::new()))
        }
        Selection::Aggregates(aggregates) => {
            let values = state.service.aggregate_query(principal, &query).await?;
            let mut fields: Vec<(String, Node)> =
                vec![("attributes".into(), Node::Obj(vec![("type", Node::str("AggregateResult"))]))];
            fields.extend(aggregates.iter().zip(values).map(|(a, n)| (a.alias.clone(), Node::Int(n))));
            // One aggregate row, which OFFSET and LIMIT apply to as to any row.
            let rows = if query.offset == 0 && query.limit != Some(0) { vec![Node::Map(fields)] } else { Vec::new() };
            Ok(result(rows.len() as u64, None, rows))
        }
        Selection::Records(_) => {
            let page = state.service.query_page(principal, &query, &Cursor::default(), batch, needs(&query)).await?;
            let total = match page.next {
                None => page.records.len() as u64,
                Some(_) => state.service.count_query(principal, &query).await?,
            };
            Ok(records(principal, version, &query, Paging { soql, now_ms, total, batch }, page))
        }
    }
}

/// `GET …/query/{locator}`: the next page.
pub async fn more(
    state: &RestState,
    principal: &Principal,
    version: Version,
    locator_text: &str,
    headers: &HeaderMap,
) -> Result<Reply, RestError> {
    let locator = locator::decode(&principal.tenant, locator_text)?;
    let invalid =
        || RestError::request(ErrorKind::InvalidQueryLocator, format!("invalid query locator: {locator_text}"));
    // The locator's own query, evaluated at its own moment: the same records as page one.
    let query = soql::parse_query(&locator.soql, locator.now_ms).map_err(|_| invalid())?;
    if !matches!(query.selection, Selection::Records(_)) {
        return Err(invalid());
    }
    let batch = batch_size(headers)?.unwrap_or(locator.batch);
    let page = state.service.query_page(principal, &query, &locator.cursor(), batch, needs(&query)).await?;
    let paging = Paging { soql: locator.soql, now_ms: locator.now_ms, total: locator.total, batch };
    Ok(records(principal, version, &query, paging, page))
}

fn needs(query: &RequestQuery) -> bool {
    query.selection.needs_messages()
}

/// What every page of one query shares, carried from page to page by the locator.
struct Paging {
    soql: String,
    now_ms: i64,
    total: u64,
    batch: u32,
}

fn records(principal: &Principal, version: Version, query: &RequestQuery, paging: Paging, page: QueryPage) -> Reply {
    let Paging { soql, now_ms, total, batch } = paging;
    let Selection::Records(fields) = &query.selection else { return result(total, None, Vec::new()) };
    let nodes = page.records.iter().map(|r| query_record(version, &r.record, &r.counts, fields)).collect();
    let next = page.next.and_then(|cursor| {
        let after = cursor.after?;
        let locator = Locator { soql, now_ms, after, returned: cursor.returned, total, batch };
        // Under `query` also for queryAll, as Salesforce: both resources take it.
        Some(format!("{}/query/{}", version.base(), locator::encode(&principal.tenant, &locator)))
    });
    result(total, next, nodes)
}

/// Salesforce's query result.
fn result(total: u64, next: Option<String>, records: Vec<Node>) -> Reply {
    let mut fields =
        vec![("totalSize", Node::Int(i64::try_from(total).unwrap_or(i64::MAX))), ("done", Node::Bool(next.is_none()))];
    if let Some(url) = next {
        fields.push(("nextRecordsUrl", Node::Str(url)));
    }
    fields.push(("records", Node::List(records)));
    Reply::object("QueryResult", Node::Obj(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(QUERY_OPTIONS, value.parse().unwrap());
        h
    }

    #[test]
    fn the_q_parameter_is_found_among_others_and_decoded() {
        assert_eq!(
            soql_param(Some("x=1&q=SELECT+Id+FROM+ConvMessageSendRequest+WHERE+Name+%3D+%27MSJ-1%27")).as_deref(),
            Some("SELECT Id FROM ConvMessageSendRequest WHERE Name = 'MSJ-1'")
        );
        assert_eq!(soql_param(Some("x=1")), None);
        assert_eq!(soql_param(None), None);
    }

    #[test]
    fn batch_sizes_are_read_from_the_query_options_header_and_kept_within_200_to_2000() {
        assert_eq!(batch_size(&HeaderMap::new()).unwrap(), None);
        assert_eq!(batch_size(&headers("batchSize=1000")).unwrap(), Some(1000));
        assert_eq!(batch_size(&headers("batchSize=50")).unwrap(), Some(200));
        assert_eq!(batch_size(&headers("other=1, batchsize=5000")).unwrap(), Some(2000));
        assert_eq!(batch_size(&headers("other=1")).unwrap(), None);
        let e = batch_size(&headers("batchSize=lots")).unwrap_err().error;
        assert_eq!((e.kind(), e.fields()), (ErrorKind::InvalidInput, vec![QUERY_OPTIONS.to_owned()]));
    }

    #[test]
    fn a_refused_query_keeps_salesforce_s_code_and_caret_message() {
        let soql = "SELECT Id FROM Account";
        let e = soql::parse_query(soql, 0).unwrap_err();
        let rest = soql_error(&e, soql).error;
        assert_eq!(rest.kind(), ErrorKind::InvalidType);
        assert_eq!(
            rest.public_message(),
            "SELECT Id FROM Account\n               ^\nERROR at Row:1:Column:16\nsObject type 'Account' is not supported."
        );
    }

    #[test]
    fn a_result_says_done_and_links_the_next_page_only_when_there_is_one() {
        let done = result(3, None, vec![]);
        assert_eq!(serde_json::to_string(&done.node).unwrap(), r#"{"totalSize":3,"done":true,"records":[]}"#);
        let more = result(4500, Some("/services/data/v65.0/query/01gX-2000".into()), vec![]);
        assert_eq!(
            serde_json::to_string(&more.node).unwrap(),
            r#"{"totalSize":4500,"done":false,"nextRecordsUrl":"/services/data/v65.0/query/01gX-2000","records":[]}"#
        );
    }
}
