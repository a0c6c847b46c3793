//! `ListRequests`: the typed filter, order and page of the proto → the same
//! `RequestQuery` the REST bridge's SOQL resolves to, run by the same
//! `Service::query_page`; and page tokens. A token is base64url(check ‖ JSON of the last
//! record's sort values and the count so far), where the check is the first 8 bytes of
//! SHA-256 over the caller's tenant, the request's filter and order, and the JSON: a
//! token given with another filter or order, by another tenant, or altered is
//! `INVALID_ARGUMENT` naming `page_token`. Tokens hold no server state.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message;
use sha2::{Digest, Sha256};

use super::pb;
use crate::domain::query::{CmpOp, Condition, Field, OrderKey, RequestQuery, SortValue, Value};
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::service::{Cursor, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// A checked `ListRequestsRequest`.
#[derive(Debug, Clone)]
pub struct ListPlan {
    pub query: RequestQuery,
    pub cursor: Cursor,
    pub page_size: u32,
    pub with_messages: bool,
    /// What the page token is bound to (the filter and the order).
    context: Vec<u8>,
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::invalid(Violation::new(field, ErrorKind::InvalidInput, message))
}

fn ms(field: &str, t: &prost_types::Timestamp) -> Result<i64, AppError> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(field, "nanos must be from 0 to 999,999,999"));
    }
    t.seconds
        .checked_mul(1000)
        .and_then(|s| s.checked_add(i64::from(t.nanos / 1_000_000)))
        .ok_or_else(|| invalid(field, "timestamp out of range"))
}

fn status(raw: i32, index: usize) -> Result<&'static str, AppError> {
    match pb::RequestStatus::try_from(raw) {
        Ok(pb::RequestStatus::Pending) => Ok("Pending"),
        Ok(pb::RequestStatus::InProgress) => Ok("InProgress"),
        Ok(pb::RequestStatus::Completed) => Ok("Completed"),
        _ => Err(invalid(
            &format!("filter.request_statuses[{index}]"),
            "must be REQUEST_STATUS_PENDING, REQUEST_STATUS_IN_PROGRESS or REQUEST_STATUS_COMPLETED",
        )),
    }
}

fn condition(filter: &pb::RequestFilter) -> Result<Condition, AppError> {
    let mut all = Vec::new();
    let statuses = filter
        .request_statuses
        .iter()
        .enumerate()
        .map(|(i, raw)| status(*raw, i).map(Value::Pick))
        .collect::<Result<Vec<_>, _>>()?;
    if !statuses.is_empty() {
        all.push(Condition::In { field: Field::RequestStatus, values: statuses, negated: false });
    }
    let definition = filter.message_definition.trim();
    if !definition.is_empty() {
        all.push(Condition::Compare {
            field: Field::MessageDefinition,
            op: CmpOp::Eq,
            value: Value::Text(definition.to_ascii_uppercase()),
        });
    }
    let mut range = |field: Field, name: &str, op: CmpOp, t: &Option<prost_types::Timestamp>| -> Result<(), AppError> {
        if let Some(t) = t {
            all.push(Condition::Compare { field, op, value: Value::Time(ms(&format!("filter.{name}"), t)?) });
        }
        Ok(())
    };
    range(Field::CreatedDate, "created_from", CmpOp::Ge, &filter.created_from)?;
    range(Field::CreatedDate, "created_before", CmpOp::Lt, &filter.created_before)?;
    range(Field::CompletedDate, "completed_from", CmpOp::Ge, &filter.completed_from)?;
    range(Field::CompletedDate, "completed_before", CmpOp::Lt, &filter.completed_before)?;
    Ok(Condition::and(all))
}

fn order(raw: i32) -> Result<OrderKey, AppError> {
    let last = |field, descending| OrderKey { field, descending, nulls_first: false };
    Ok(match pb::RequestOrder::try_from(raw) {
        Ok(pb::RequestOrder::Unspecified | pb::RequestOrder::CreatedDateAsc) => OrderKey::asc(Field::CreatedDate),
        Ok(pb::RequestOrder::CreatedDateDesc) => OrderKey::desc(Field::CreatedDate),
        Ok(pb::RequestOrder::LastModifiedDateAsc) => OrderKey::asc(Field::LastModifiedDate),
        Ok(pb::RequestOrder::LastModifiedDateDesc) => OrderKey::desc(Field::LastModifiedDate),
        Ok(pb::RequestOrder::CompletedDateAsc) => last(Field::CompletedDate, false),
        Ok(pb::RequestOrder::CompletedDateDesc) => last(Field::CompletedDate, true),
        Err(_) => return Err(invalid("order_by", format!("unknown RequestOrder {raw}"))),
    })
}

/// Checks a `ListRequestsRequest` for `tenant`'s caller.
pub fn plan(tenant: &str, request: &pb::ListRequestsRequest) -> Result<ListPlan, AppError> {
    let filter = request.filter.clone().unwrap_or_default();
    let with_messages = match pb::RequestView::try_from(request.view) {
        Ok(pb::RequestView::Unspecified | pb::RequestView::Basic) => false,
        Ok(pb::RequestView::Full) => true,
        Err(_) => return Err(invalid("view", format!("unknown RequestView {}", request.view))),
    };
    let page_size = match request.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 || n as u32 > MAX_PAGE_SIZE => {
            return Err(invalid(
                "page_size",
                format!("page_size must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
            ));
        }
        n => n as u32,
    };
    let query = RequestQuery {
        condition: condition(&filter)?,
        order: vec![order(request.order_by)?],
        ..RequestQuery::records(Field::ALL.to_vec())
    };
    let mut context = tenant.as_bytes().to_vec();
    context.push(0);
    filter.encode(&mut context).ok();
    context.extend_from_slice(&request.order_by.to_le_bytes());
    let cursor = if request.page_token.is_empty() { Cursor::default() } else { open(&context, &request.page_token)? };
    Ok(ListPlan { query, cursor, page_size, with_messages, context })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Token {
    #[serde(rename = "k")]
    after: Vec<SortValue>,
    #[serde(rename = "n")]
    returned: u64,
}

fn check(context: &[u8], payload: &[u8]) -> [u8; 8] {
    let digest = Sha256::new().chain_update(context).chain_update([0]).chain_update(payload).finalize();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn open(context: &[u8], text: &str) -> Result<Cursor, AppError> {
    let bad = || invalid("page_token", "page_token is not one this server returned for this filter and order");
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    if bytes.len() <= 8 {
        return Err(bad());
    }
    let (sum, payload) = bytes.split_at(8);
    if sum != check(context, payload) {
        return Err(bad());
    }
    let token: Token = serde_json::from_slice(payload).map_err(|_| bad())?;
    Ok(Cursor { after: Some(token.after), returned: token.returned })
}

impl ListPlan {
    /// The token of the page after `cursor`.
    pub fn token(&self, cursor: Cursor) -> String {
        let token = Token { after: cursor.after.unwrap_or_default(), returned: cursor.returned };
        let payload = serde_json::to_vec(&token).unwrap_or_default();
        let mut bytes = check(&self.context, &payload).to_vec();
        bytes.extend_from_slice(&payload);
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::ListRequestsRequest {
        pb::ListRequestsRequest {
            filter: Some(pb::RequestFilter {
                request_statuses: vec![pb::RequestStatus::Completed as i32, pb::RequestStatus::Pending as i32],
                message_definition: "Notice".into(),
                created_from: Some(prost_types::Timestamp { seconds: 10, nanos: 5_000_000 }),
                completed_before: Some(prost_types::Timestamp { seconds: 20, nanos: 0 }),
                ..Default::default()
            }),
            order_by: pb::RequestOrder::CompletedDateDesc as i32,
            page_size: 50,
            ..Default::default()
        }
    }

    #[test]
    fn the_filter_becomes_the_query_soql_would_give() {
        let planned = plan("acme", &request()).unwrap();
        assert_eq!(
            planned.query.condition,
            Condition::And(vec![
                Condition::In {
                    field: Field::RequestStatus,
                    values: vec![Value::Pick("Completed"), Value::Pick("Pending")],
                    negated: false
                },
                Condition::Compare {
                    field: Field::MessageDefinition,
                    op: CmpOp::Eq,
                    value: Value::Text("NOTICE".into())
                },
                Condition::Compare { field: Field::CreatedDate, op: CmpOp::Ge, value: Value::Time(10_005) },
                Condition::Compare { field: Field::CompletedDate, op: CmpOp::Lt, value: Value::Time(20_000) },
            ])
        );
        assert_eq!(
            planned.query.order,
            [OrderKey { field: Field::CompletedDate, descending: true, nulls_first: false }]
        );
        assert_eq!((planned.page_size, planned.with_messages), (50, false));
        let everything = plan("acme", &pb::ListRequestsRequest::default()).unwrap();
        assert_eq!((everything.query.condition, everything.page_size), (Condition::Const(true), DEFAULT_PAGE_SIZE));
    }

    #[test]
    fn a_token_works_only_with_its_tenant_filter_and_order() {
        let first = plan("acme", &request()).unwrap();
        let token =
            first.token(Cursor { after: Some(vec![SortValue::Null, SortValue::Text("1srX".into())]), returned: 50 });
        let next = plan("acme", &pb::ListRequestsRequest { page_token: token.clone(), ..request() }).unwrap();
        assert_eq!(next.cursor.returned, 50);
        let field = |r: Result<ListPlan, AppError>| r.unwrap_err().fields();
        let other_order = pb::ListRequestsRequest { page_token: token.clone(), order_by: 1, ..request() };
        assert_eq!(field(plan("acme", &other_order)), ["page_token"]);
        assert_eq!(
            field(plan("other", &pb::ListRequestsRequest { page_token: token.clone(), ..request() })),
            ["page_token"]
        );
        let mut filter = request().filter.unwrap();
        filter.message_definition = "Other".into();
        let other_filter = pb::ListRequestsRequest { page_token: token, filter: Some(filter), ..request() };
        assert_eq!(field(plan("acme", &other_filter)), ["page_token"]);
        assert_eq!(
            field(plan("acme", &pb::ListRequestsRequest { page_token: "junk".into(), ..request() })),
            ["page_token"]
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |r: pb::ListRequestsRequest| plan("t", &r).unwrap_err().fields();
        assert_eq!(field(pb::ListRequestsRequest { page_size: 1001, ..request() }), ["page_size"]);
        assert_eq!(field(pb::ListRequestsRequest { page_size: -1, ..request() }), ["page_size"]);
        assert_eq!(field(pb::ListRequestsRequest { order_by: 99, ..request() }), ["order_by"]);
        assert_eq!(field(pb::ListRequestsRequest { view: 7, ..request() }), ["view"]);
        let mut filter = request().filter.unwrap();
        filter.request_statuses = vec![pb::RequestStatus::Completed as i32, 0];
        assert_eq!(
            field(pb::ListRequestsRequest { filter: Some(filter), ..request() }),
            ["filter.request_statuses[1]"]
        );
        let mut filter = request().filter.unwrap();
        filter.created_before = Some(prost_types::Timestamp { seconds: 1, nanos: -1 });
        assert_eq!(field(pb::ListRequestsRequest { filter: Some(filter), ..request() }), ["filter.created_before"]);
    }
}
