//! The sObject metadata resources for `ConvMessageSendRequest`, in Salesforce's shapes:
//! `GET …/sobjects` (describe global, listing this one object), `GET …/sobjects/
//! ConvMessageSendRequest` (basic information and recent items) and `GET …/sobjects/
//! ConvMessageSendRequest/describe` (every field: name, label, type, length, nillable,
//! filterable, sortable, picklist values, …). Built from `domain::query::fields`, the
//! catalogue SOQL checks against, so the describe says exactly what a query may do.
//! `If-Modified-Since` at or after `Last-Modified` answers 304 without a body.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::describe::{http_date, parse_http_date};
use super::format::{Format, Node, Reply, RestError};
use super::sobject::field_value;
use super::{RestState, SOBJECT, Version};
use crate::domain::ids::IdKind;
use crate::domain::principal::Principal;
use crate::domain::query::fields::FieldInfo;
use crate::domain::query::{Field, FieldType, OrderKey, RequestQuery};
use crate::service::Cursor;

/// When the metadata last changed (2026-12-01T00:00:00Z). Bump it with any change to
/// this module's documents, so cached copies are refreshed.
pub const SOBJECT_DESCRIBE_LAST_MODIFIED: i64 = 1_796_083_200;
/// How many recently modified requests the basic information lists.
pub const RECENT_ITEMS: u64 = 25;

const LABEL: &str = "Conversation Message Send Request";
const LABEL_PLURAL: &str = "Conversation Message Send Requests";

fn urls(v: Version) -> Node {
    let base = format!("{}/sobjects/{SOBJECT}", v.base());
    Node::Obj(vec![
        ("rowTemplate", Node::Str(format!("{base}/{{ID}}"))),
        ("describe", Node::Str(format!("{base}/describe"))),
        ("sobject", Node::Str(base)),
    ])
}

/// The object's capabilities: read-only, queryable, replicable.
fn capabilities() -> Vec<(&'static str, Node)> {
    vec![
        ("activateable", Node::Bool(false)),
        ("createable", Node::Bool(false)),
        ("custom", Node::Bool(false)),
        ("customSetting", Node::Bool(false)),
        ("deletable", Node::Bool(false)),
        ("deprecatedAndHidden", Node::Bool(false)),
        ("feedEnabled", Node::Bool(false)),
        ("hasSubtypes", Node::Bool(false)),
        ("isSubtype", Node::Bool(false)),
        ("keyPrefix", Node::str(IdKind::SendRequest.prefix())),
        ("label", Node::str(LABEL)),
        ("labelPlural", Node::str(LABEL_PLURAL)),
        ("layoutable", Node::Bool(false)),
        ("mergeable", Node::Bool(false)),
        ("mruEnabled", Node::Bool(false)),
        ("name", Node::str(SOBJECT)),
        ("queryable", Node::Bool(true)),
        ("replicateable", Node::Bool(true)),
        ("retrieveable", Node::Bool(true)),
        ("searchable", Node::Bool(false)),
        ("triggerable", Node::Bool(false)),
        ("undeletable", Node::Bool(false)),
        ("updateable", Node::Bool(false)),
    ]
}

/// The object's entry in the global describe and in its basic information.
fn global_entry(v: Version) -> Node {
    let mut fields = capabilities();
    fields.push(("urls", urls(v)));
    Node::Obj(fields)
}

/// `GET …/sobjects`.
pub fn global(v: Version, headers: &HeaderMap, format: Format) -> Response {
    let node = Node::Obj(vec![
        ("encoding", Node::str("UTF-8")),
        ("maxBatchSize", Node::Int(200)),
        ("sobjects", Node::List(vec![global_entry(v)])),
    ]);
    conditional(Reply::object("DescribeGlobal", node), SOBJECT_DESCRIBE_LAST_MODIFIED, headers, format)
}

/// `GET …/sobjects/ConvMessageSendRequest/describe`.
pub fn describe(v: Version, headers: &HeaderMap, format: Format) -> Response {
    conditional(Reply::object(SOBJECT, describe_node(v)), SOBJECT_DESCRIBE_LAST_MODIFIED, headers, format)
}

/// `GET …/sobjects/ConvMessageSendRequest`: the object's entry and the caller's most
/// recently modified requests (convmsg records no views, so "recent" means modified).
pub async fn basic(
    state: &RestState,
    principal: &Principal,
    v: Version,
    headers: &HeaderMap,
    format: Format,
) -> Result<Response, RestError> {
    let query = RequestQuery {
        order: vec![OrderKey::desc(Field::LastModifiedDate)],
        limit: Some(RECENT_ITEMS),
        ..RequestQuery::records(vec![Field::Id, Field::Name])
    };
    let page = state.service.query_page(principal, &query, &Cursor::default(), RECENT_ITEMS as u32, false).await?;
    let newest = page.records.first().map_or(0, |r| r.record.updated_ms.div_euclid(1000));
    let items = page
        .records
        .iter()
        .map(|r| {
            let attributes = Node::Obj(vec![
                ("type", Node::str(SOBJECT)),
                ("url", Node::Str(format!("{}/sobjects/{SOBJECT}/{}", v.base(), r.record.id))),
            ]);
            let fields = [Field::Id, Field::Name].map(|f| (f.name(), field_value(&r.record, &r.counts, f)));
            let mut node = vec![("attributes", attributes)];
            node.extend(fields);
            Node::Obj(node)
        })
        .collect();
    let node = Node::Obj(vec![("objectDescribe", global_entry(v)), ("recentItems", Node::List(items))]);
    Ok(conditional(Reply::object(SOBJECT, node), newest.max(SOBJECT_DESCRIBE_LAST_MODIFIED), headers, format))
}

/// `reply` with `Last-Modified`, or 304 when `If-Modified-Since` is at or after it.
fn conditional(reply: Reply, last_modified: i64, headers: &HeaderMap, format: Format) -> Response {
    let value = HeaderValue::from_str(&http_date(last_modified)).ok();
    let since = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()).and_then(parse_http_date);
    if since.is_some_and(|since| last_modified <= since) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        if let Some(value) = value {
            response.headers_mut().insert(header::LAST_MODIFIED, value);
        }
        return response;
    }
    match value {
        Some(value) => reply.with_header(header::LAST_MODIFIED, value).render(format),
        None => reply.render(format),
    }
}

/// The describe document.
pub fn describe_node(v: Version) -> Node {
    let mut fields = vec![
        ("actionOverrides", Node::List(Vec::new())),
        ("childRelationships", Node::List(Vec::new())),
        ("compactLayoutable", Node::Bool(false)),
    ];
    fields.extend(capabilities());
    fields.push(("fields", Node::List(Field::ALL.iter().map(|f| field_node(*f)).collect())));
    fields.push(("namedLayoutInfos", Node::List(Vec::new())));
    fields.push(("recordTypeInfos", Node::List(Vec::new())));
    fields.push(("searchLayoutable", Node::Bool(false)));
    fields.push((
        "supportedScopes",
        Node::List(vec![Node::Obj(vec![
            ("label", Node::str("All conversation message send requests")),
            ("name", Node::str("everything")),
        ])]),
    ));
    fields.push(("urls", urls(v)));
    // Salesforce lists the keys alphabetically.
    fields.sort_by_key(|(name, _)| *name);
    Node::Obj(fields)
}

/// One field's describe.
fn field_node(field: Field) -> Node {
    let info: FieldInfo = field.info();
    let text = matches!(info.kind, FieldType::String | FieldType::Picklist | FieldType::TextArea);
    let (length, byte_length) = match info.kind {
        FieldType::Id | FieldType::Reference => (18, 18),
        _ if text => (info.length, info.length * 3),
        _ => (0, 0),
    };
    let picklist = info
        .picklist
        .iter()
        .map(|value| {
            Node::Obj(vec![
                ("active", Node::Bool(true)),
                ("defaultValue", Node::Bool(false)),
                ("label", Node::str(*value)),
                ("validFor", Node::Null),
                ("value", Node::str(*value)),
            ])
        })
        .collect();
    let default_value = match field {
        Field::IsDeleted | Field::ShouldEnforceChannelConsent => Node::Bool(false),
        _ => Node::Null,
    };
    let restricted = info.kind == FieldType::Picklist;
    Node::Obj(vec![
        ("aggregatable", Node::Bool(field.is_filterable())),
        ("autoNumber", Node::Bool(field == Field::Name)),
        ("byteLength", Node::Int(i64::from(byte_length))),
        ("calculated", Node::Bool(field == Field::TotalMessageCount)),
        ("caseSensitive", Node::Bool(false)),
        ("createable", Node::Bool(false)),
        ("custom", Node::Bool(false)),
        ("defaultValue", default_value),
        ("defaultedOnCreate", Node::Bool(info.defaulted_on_create)),
        ("deprecatedAndHidden", Node::Bool(false)),
        ("digits", Node::Int(i64::from(info.digits))),
        ("externalId", Node::Bool(false)),
        ("filterable", Node::Bool(field.is_filterable())),
        ("groupable", Node::Bool(false)),
        ("htmlFormatted", Node::Bool(false)),
        ("idLookup", Node::Bool(matches!(field, Field::Id | Field::Name))),
        ("label", Node::str(info.label)),
        ("length", Node::Int(i64::from(length))),
        ("name", Node::str(info.name)),
        ("nameField", Node::Bool(field == Field::Name)),
        ("nillable", Node::Bool(info.nillable)),
        ("picklistValues", Node::List(picklist)),
        ("precision", Node::Int(0)),
        ("referenceTo", Node::List(info.reference_to.into_iter().map(Node::str).collect())),
        ("relationshipName", Node::Null),
        ("restrictedPicklist", Node::Bool(restricted)),
        ("scale", Node::Int(0)),
        ("soapType", Node::str(info.kind.soap_type())),
        ("sortable", Node::Bool(field.is_sortable())),
        ("type", Node::str(info.kind.api_name())),
        ("unique", Node::Bool(false)),
        ("updateable", Node::Bool(false)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(describe: &'a Node, name: &str) -> &'a Node {
        let Some(Node::List(fields)) = describe.get("fields") else { panic!("fields") };
        fields.iter().find(|f| f.get("name") == Some(&Node::str(name))).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn the_describe_lists_every_field_of_the_record_in_order_with_its_type_and_what_queries_may_do() {
        let d = describe_node(Version::new(65));
        let Some(Node::List(fields)) = d.get("fields") else { panic!("fields") };
        let names: Vec<&Node> = fields.iter().filter_map(|f| f.get("name")).collect();
        assert_eq!(names, Field::ALL.map(|f| Node::str(f.name())).iter().collect::<Vec<_>>());
        let status = field(&d, "RequestStatus");
        assert_eq!(status.get("type"), Some(&Node::str("picklist")));
        assert_eq!(status.get("filterable"), Some(&Node::Bool(true)));
        let Some(Node::List(values)) = status.get("picklistValues") else { panic!("values") };
        let values: Vec<&Node> = values.iter().filter_map(|v| v.get("value")).collect();
        assert_eq!(values, [&Node::str("Pending"), &Node::str("InProgress"), &Node::str("Completed")]);
        let reasons = field(&d, "FailedMessageErrorReasons");
        assert_eq!(reasons.get("filterable"), Some(&Node::Bool(false)));
        assert_eq!(reasons.get("length"), Some(&Node::Int(700)));
        assert_eq!(field(&d, "CompletedDate").get("nillable"), Some(&Node::Bool(true)));
        assert_eq!(field(&d, "Id").get("type"), Some(&Node::str("id")));
        assert_eq!(
            field(&d, "CommSubscriptionId").get("referenceTo"),
            Some(&Node::List(vec![Node::str("CommSubscription")]))
        );
        assert_eq!(d.get("queryable"), Some(&Node::Bool(true)));
        assert_eq!(d.get("keyPrefix"), Some(&Node::str("1sr")));
    }

    #[test]
    fn the_describe_s_keys_are_alphabetical_as_salesforce_s() {
        let describe = describe_node(Version::new(60));
        let Some(keys) = describe.fields() else { panic!("object") };
        let keys: Vec<&str> = keys.into_iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
    }
}
