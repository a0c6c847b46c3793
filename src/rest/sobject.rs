//! `GET …/sobjects/ConvMessageSendRequest/{id}`: the request record in Salesforce's
//! sObject shape (spec §9.1, §9.3), with `?fields=` selection and `If-Modified-Since`.
//! The record comes from `Service::get_request` (which checks the scope and the tenant);
//! this module only writes it out: multi-value fields comma-joined without spaces (null
//! when empty), date-times as `yyyy-MM-dd'T'HH:mm:ss.SSS+0000`, one failure reason per
//! failed identifier in the same order, `RequestConsentType` null for `Custom`. Query
//! results (`query`) render their records with the same `field_value`.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use time::OffsetDateTime;
use time::macros::format_description;

use super::describe::{http_date, parse_http_date};
use super::format::{Format, Node, Reply, RestError};
use super::{RestState, SOBJECT, Version};
use crate::domain::model::{ConsentType, DeliveryState, MessageRecord, MessageState, RequestRecord};
use crate::domain::principal::Principal;
use crate::domain::query::{Field, Source};
use crate::domain::reason::FailureReason;
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::store::reads::MessageCounts;

pub async fn get(
    state: &RestState,
    principal: &Principal,
    version: Version,
    raw_id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    format: Format,
) -> Result<Response, RestError> {
    let selection = selection(query)?;
    let record = state.service.get_request(principal, raw_id).await.map_err(|e| salesforce_id_error(e, raw_id))?;
    let modified = record.updated_ms.div_euclid(1000);
    let last_modified = HeaderValue::from_str(&http_date(modified)).ok();
    let since = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()).and_then(parse_http_date);
    if since.is_some_and(|since| modified <= since) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        if let Some(value) = last_modified {
            response.headers_mut().insert(header::LAST_MODIFIED, value);
        }
        return Ok(response);
    }
    let mut reply = Reply::object(SOBJECT, record_node(version, &record, selection.as_deref()));
    if let Some(value) = last_modified {
        reply = reply.with_header(header::LAST_MODIFIED, value);
    }
    Ok(reply.render(format))
}

/// A malformed id reads as Salesforce's (`fields: ["Id"]`).
fn salesforce_id_error(error: AppError, raw_id: &str) -> AppError {
    match error {
        AppError::Invalid(violations) if violations.iter().all(|v| v.kind == ErrorKind::MalformedId) => {
            AppError::invalid(Violation::new(
                "Id",
                ErrorKind::MalformedId,
                format!("{SOBJECT} ID: id value of incorrect type: {raw_id}"),
            ))
        }
        other => other,
    }
}

/// The fields `?fields=a,b` selects (names matched case-insensitively), or `None` for
/// all. An unknown name is 400 `INVALID_FIELD` naming it.
pub fn selection(query: Option<&str>) -> Result<Option<Vec<&'static str>>, RestError> {
    let Some(raw) = query.into_iter().flat_map(|q| q.split('&')).find_map(|pair| pair.strip_prefix("fields=")) else {
        return Ok(None);
    };
    let decoded = percent_decode(raw);
    let mut selected = Vec::new();
    let mut unknown = Vec::new();
    for name in decoded.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match Field::parse(name).map(Field::name) {
            Some(field) if !selected.contains(&field) => selected.push(field),
            Some(_) => {}
            None => unknown.push(Violation::new(
                name,
                ErrorKind::InvalidField,
                format!("No such column '{name}' on sobject of type {SOBJECT}"),
            )),
        }
    }
    if !unknown.is_empty() {
        return Err(AppError::Invalid(unknown).into());
    }
    Ok(if selected.is_empty() { None } else { Some(selected) })
}

/// `%XX` and `+` decoding of a query value; invalid escapes are kept as they are.
pub fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `yyyy-MM-dd'T'HH:mm:ss.SSS+0000`.
pub fn sf_datetime(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"))
        .unwrap_or_default()
}

/// Comma-joined without spaces; null when there is nothing to join.
fn joined<'a>(items: impl Iterator<Item = &'a str>) -> Node {
    let items: Vec<&str> = items.collect();
    if items.is_empty() { Node::Null } else { Node::Str(items.join(",")) }
}

/// The sObject `attributes` of a record.
fn attributes(version: Version, r: &RequestRecord) -> Node {
    Node::Obj(vec![
        ("type", Node::str(SOBJECT)),
        ("url", Node::Str(format!("{}/sobjects/{SOBJECT}/{}", version.base(), r.id))),
    ])
}

/// One field's value on the record. `counts` are the record's message counts (from its
/// messages, or read alongside it when its messages were not loaded); the list fields
/// need `r.messages`.
pub fn field_value(r: &RequestRecord, counts: &MessageCounts, field: Field) -> Node {
    let in_state = |state: MessageState| r.messages.iter().filter(move |m| m.status == state);
    let identifiers = |state| joined(in_state(state).map(|m: &MessageRecord| m.identifier.as_str()));
    let end_users = |state| joined(in_state(state).map(|m: &MessageRecord| m.end_user_id.as_str()));
    let keys = |state| joined(in_state(state).map(|m: &MessageRecord| m.platform_key.as_str()));
    let delivered = |state: Option<DeliveryState>| {
        joined(r.messages.iter().filter(|m| m.delivery.state == state).map(|m| m.identifier.as_str()))
    };
    if let Source::MessageCount(state) = field.info().source {
        return Node::Int(counts.get(state));
    }
    match field {
        Field::Id => Node::str(r.id.as_str()),
        Field::IsDeleted => Node::Bool(false),
        Field::Name => Node::str(&r.name),
        Field::CreatedDate => Node::Str(sf_datetime(r.created_ms)),
        Field::LastModifiedDate | Field::SystemModstamp => Node::Str(sf_datetime(r.updated_ms)),
        Field::MessageDefinition => Node::str(&r.message_definition),
        Field::MessageDefinitionParameters => {
            if r.parameters_json.trim().is_empty() || r.parameters_json.trim() == "[]" {
                Node::Null
            } else {
                Node::str(&r.parameters_json)
            }
        }
        Field::RequestType => Node::str(r.request_type.as_str()),
        Field::RequestStatus => Node::str(r.status.as_str()),
        Field::CompletedDate => Node::opt_str(r.completed_ms.map(sf_datetime)),
        Field::ShouldEnforceChannelConsent => Node::Bool(r.enforce_consent),
        Field::AllowExistingSessionStatus => Node::str(r.allowed_session_status.as_str()),
        Field::RequestConsentType => match r.consent_type {
            ConsentType::Custom => Node::Null,
            other => Node::str(other.as_str()),
        },
        Field::CommSubscriptionId => Node::opt_str(r.subscription_id.as_ref().map(|id| id.as_str())),
        Field::PendingMessageIdentifiers => identifiers(MessageState::Pending),
        Field::InProgressMessageIdentifiers => identifiers(MessageState::InProgress),
        Field::SuccessMessageIdentifiers => identifiers(MessageState::Success),
        Field::FailedMessageIdentifiers => identifiers(MessageState::Failed),
        Field::PendingMessagingEndUserIds => end_users(MessageState::Pending),
        Field::InProgressMessagingEndUserIds => end_users(MessageState::InProgress),
        Field::PendingMeuPlatformKeys => keys(MessageState::Pending),
        Field::InProgressMeuPlatformKeys => keys(MessageState::InProgress),
        Field::SuccessMeuPlatformKeys => keys(MessageState::Success),
        Field::FailedMeuPlatformKeys => keys(MessageState::Failed),
        Field::FailedMessageErrorReasons => {
            joined(in_state(MessageState::Failed).map(|m| m.reason.map_or("Unknown", FailureReason::as_str)))
        }
        Field::DeliveredMessageIdentifiers => delivered(Some(DeliveryState::Delivered)),
        Field::ReadMessageIdentifiers => delivered(Some(DeliveryState::Read)),
        Field::UndeliveredMessageIdentifiers => delivered(Some(DeliveryState::Undelivered)),
        // One code per undelivered identifier, in the same order.
        Field::UndeliveredMessageErrorCodes => joined(
            r.messages
                .iter()
                .filter(|m| m.delivery.state == Some(DeliveryState::Undelivered))
                .map(|m| m.delivery.error_code.as_deref().unwrap_or("Unknown")),
        ),
        // Never set by convmsg: no users, no session longevity input, no session ids.
        Field::CreatedById
        | Field::LastModifiedById
        | Field::SessionLongevityPreference
        | Field::InProgressMessagingSessionIds => Node::Null,
        // Counted above.
        Field::TotalMessageCount
        | Field::PendingMessageCount
        | Field::InProgressMessageCount
        | Field::SuccessMessageCount
        | Field::FailedMessageCount => Node::Null,
    }
}

/// The record, every field (or the selected ones, `Id` and `attributes` always).
pub fn record_node(version: Version, r: &RequestRecord, selected: Option<&[&str]>) -> Node {
    let counts = MessageCounts::of(&r.messages);
    let mut fields = vec![("attributes", attributes(version, r))];
    fields.extend(
        Field::ALL
            .into_iter()
            .filter(|f| *f == Field::Id || selected.is_none_or(|selected| selected.contains(&f.name())))
            .map(|f| (f.name(), field_value(r, &counts, f))),
    );
    Node::Obj(fields)
}

/// A query result's record: `attributes`, then exactly the selected fields, in order.
pub fn query_record(version: Version, r: &RequestRecord, counts: &MessageCounts, fields: &[Field]) -> Node {
    let mut out = vec![("attributes", attributes(version, r))];
    out.extend(fields.iter().map(|f| (f.name(), field_value(r, counts, *f))));
    Node::Obj(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RecordId;
    use crate::domain::ids::IdKind;
    use crate::domain::model::{AllowedSessionStatus, RequestStatus, RequestType};

    fn message(n: u8, status: MessageState, reason: Option<&str>) -> MessageRecord {
        MessageRecord {
            identifier: format!("00000000-0000-4000-8000-00000000000{n}"),
            end_user_id: RecordId::generate(IdKind::MessagingEndUser),
            platform_key: format!("+1555000000{n}"),
            status,
            reason: reason.map(|r| FailureReason::parse(r).unwrap()),
            waiting_reason: None,
            attempts: 1,
            provider_message_id: None,
            created_ms: 0,
            updated_ms: 0,
            delivery: Default::default(),
        }
    }

    fn record() -> RequestRecord {
        RequestRecord {
            id: RecordId::generate(IdKind::SendRequest),
            name: "MSJ-00000042".into(),
            message_definition: "Notification".into(),
            request_type: RequestType::SendNotificationMessages,
            status: RequestStatus::Completed,
            enforce_consent: true,
            consent_type: ConsentType::MessagingEndUser,
            subscription_id: None,
            allowed_session_status: AllowedSessionStatus::Any,
            parameters_json: r#"[{"name":"CustomerName","textValue":"Ada"}]"#.into(),
            messages: vec![
                message(1, MessageState::Success, None),
                message(2, MessageState::Failed, Some("EndUserIsNotOptedIn")),
                message(3, MessageState::Pending, None),
                message(4, MessageState::Failed, Some("ProviderRejected")),
            ],
            created_ms: 1_762_178_712_000,
            updated_ms: 1_762_178_720_123,
            completed_ms: Some(1_762_178_720_123),
            priority: crate::domain::model::Priority::Transactional,
            send_at_ms: None,
            canceled_ms: None,
        }
    }

    fn text<'a>(node: &'a Node, field: &str) -> &'a Node {
        node.get(field).unwrap_or_else(|| panic!("no field {field}"))
    }

    #[test]
    fn every_field_of_the_record_is_shown_in_order_after_the_attributes() {
        let r = record();
        let node = record_node(Version::new(65), &r, None);
        let Node::Obj(fields) = &node else { panic!("object") };
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(names[0], "attributes");
        assert_eq!(names[1..], Field::ALL.map(Field::name));
        assert_eq!(
            text(text(&node, "attributes"), "url"),
            &Node::Str(format!("/services/data/v65.0/sobjects/ConvMessageSendRequest/{}", r.id))
        );
        assert_eq!(text(&node, "CreatedDate"), &Node::str("2025-11-03T14:05:12.000+0000"));
        assert_eq!(text(&node, "CompletedDate"), &Node::str("2025-11-03T14:05:20.123+0000"));
        assert_eq!(text(&node, "MessageDefinitionParameters"), &Node::str(&r.parameters_json));
        assert_eq!(text(&node, "RequestConsentType"), &Node::str("MessagingEndUser"));
    }

    #[test]
    fn lists_are_comma_joined_per_state_with_one_reason_per_failed_identifier() {
        let r = record();
        let node = record_node(Version::new(65), &r, None);
        let ids = |i: usize| r.messages[i].identifier.clone();
        assert_eq!(text(&node, "TotalMessageCount"), &Node::Int(4));
        assert_eq!(text(&node, "FailedMessageCount"), &Node::Int(2));
        assert_eq!(text(&node, "FailedMessageIdentifiers"), &Node::Str(format!("{},{}", ids(1), ids(3))));
        assert_eq!(text(&node, "FailedMessageErrorReasons"), &Node::str("EndUserIsNotOptedIn,ProviderRejected"));
        assert_eq!(text(&node, "FailedMeuPlatformKeys"), &Node::str("+15550000002,+15550000004"));
        assert_eq!(text(&node, "SuccessMessageIdentifiers"), &Node::Str(ids(0)));
        assert_eq!(text(&node, "PendingMessagingEndUserIds"), &Node::str(r.messages[2].end_user_id.as_str()));
        assert_eq!(text(&node, "InProgressMessageIdentifiers"), &Node::Null);
        assert_eq!(text(&node, "InProgressMessagingEndUserIds"), &Node::Null);
        assert_eq!(text(&node, "InProgressMessagingSessionIds"), &Node::Null);
    }

    #[test]
    fn custom_consent_has_no_request_consent_type_and_no_parameters_is_null() {
        let r = RequestRecord { consent_type: ConsentType::Custom, parameters_json: "[]".into(), ..record() };
        let node = record_node(Version::new(60), &r, None);
        assert_eq!(text(&node, "RequestConsentType"), &Node::Null);
        assert_eq!(text(&node, "MessageDefinitionParameters"), &Node::Null);
    }

    #[test]
    fn a_selection_keeps_id_and_attributes_and_matches_names_case_insensitively() {
        let selected = selection(Some("x=1&fields=requeststatus,%20Name,Name")).unwrap().unwrap();
        assert_eq!(selected, ["RequestStatus", "Name"]);
        let node = record_node(Version::new(65), &record(), Some(&selected));
        let Node::Obj(fields) = &node else { panic!("object") };
        let names: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, ["attributes", "Id", "Name", "RequestStatus"]);
        assert_eq!(selection(None).unwrap(), None);
        assert_eq!(selection(Some("fields=")).unwrap(), None);
    }

    #[test]
    fn an_unknown_selected_field_is_invalid_field_naming_it() {
        let error = selection(Some("fields=Name,Colour")).unwrap_err().error;
        assert_eq!(error.kind(), ErrorKind::InvalidField);
        assert_eq!(error.fields(), ["Colour"]);
    }

    #[test]
    fn query_values_are_percent_decoded_and_bad_escapes_kept() {
        assert_eq!(percent_decode("a%2Cb+c%zz%4"), "a,b c%zz%4");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }
}
