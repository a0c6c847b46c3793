//! `POST …/actions/standard/sendConversationMessages`: the invocation. The body
//! (`{"inputs":[…]}` as JSON, or its XML form read by `xml`) is turned into one
//! `SendInput` per input, each sent through `Service::send` in order, and the results are
//! written as Salesforce's array (one element per input). This module only converts:
//! every rule about what a valid request is lives in the domain and the service.

use axum::body::Body;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::format::{self, BodyFormat, Node, Reply, RestError};
use super::{ACTION_NAME, RestState, xml};
use crate::domain::model::{AllowedSessionStatus, ConsentType, Picklist, Priority, RequestType};
use crate::domain::params::{RawItem, RawParam, RawValue, ValueKey};
use crate::domain::principal::{Principal, Scope};
use crate::domain::send::SendInput;
use crate::domain::violation::{Violations, echo, quoted};
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::store::Accepted;

/// The input keys of the action (spec §3), in the describe's order.
pub const INPUT_KEYS: [&str; 8] = [
    "allowedSessionStatus",
    "channelConsentType",
    "communicationSubscriptionId",
    "isEnforceMessagingChannelConsent",
    "messageDefinitionName",
    "messagingDefinitionInputParameters",
    "messagingEndUserIds",
    "requestType",
];

pub async fn invoke(
    state: &RestState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Reply, RestError> {
    // A token that may not send is refused for the whole call, not input by input.
    principal.require(Scope::Send).map_err(AppError::from)?;
    let body_format = BodyFormat::of_content_type(headers)?;
    let bytes = format::read_body(
        headers,
        body,
        state.config.body_limit_bytes,
        std::time::Duration::from_millis(state.config.body_timeout_ms.max(1)),
    )
    .await?;
    let inputs = parse_body(&bytes, body_format, state.config.max_inputs_per_call)?;
    let key = idempotency_key(headers)?;
    let (priority, send_at_ms) = delivery_headers(headers)?;
    let trace = crate::telemetry::traceparent(headers.get("traceparent").and_then(|v| v.to_str().ok()));

    let count = inputs.len();
    let mut outcomes: Vec<Result<Accepted, AppError>> = Vec::with_capacity(count);
    // In order, one at a time: results — and request names — follow the inputs.
    for (index, input) in inputs.into_iter().enumerate() {
        let key = key.as_ref().map(|k| if count == 1 { k.clone() } else { format!("{k}:{index}") });
        let outcome = match send_input(input, key) {
            Ok(input) => {
                let input = SendInput { priority, send_at_ms, ..input };
                state.service.send(principal, input, trace.clone()).await
            }
            Err(violations) => Err(AppError::Invalid(violations)),
        };
        outcomes.push(outcome);
    }

    // Nothing accepted and every failure on our side: answer for the whole call (503 with
    // Retry-After when the database is unavailable), so clients retry it.
    let all_server_side = outcomes.iter().all(|o| o.as_ref().is_err_and(is_server_side));
    if all_server_side && let Some(Err(last)) = outcomes.pop() {
        return Err(last.into());
    }
    let failed = outcomes.iter().any(Result::is_err);
    let results = outcomes.iter().map(result_node).collect();
    let status = if failed { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(Reply::list("Results", "result", Node::List(results)).with_status(status))
}

/// A body (JSON, or XML read as the same JSON) → its input objects: pure, so the fuzz
/// targets drive it directly.
pub fn parse_body(bytes: &[u8], body_format: BodyFormat, max: usize) -> Result<Vec<Map<String, Value>>, RestError> {
    let document = match body_format {
        BodyFormat::Json => serde_json::from_slice::<Value>(bytes).map_err(|e| {
            let message = if bytes.iter().all(u8::is_ascii_whitespace) {
                "The request body is empty; send {\"inputs\":[…]}".to_owned()
            } else {
                format!("The request body is not valid JSON: {e}")
            };
            RestError::request(ErrorKind::JsonParse, message)
        })?,
        BodyFormat::Xml => xml::invoke_body_to_json(bytes)
            .map_err(|e| RestError::request(ErrorKind::XmlParse, format!("The request body is not valid XML: {e}")))?,
    };
    inputs_of(document, body_format, max)
}

fn is_server_side(error: &AppError) -> bool {
    matches!(error.kind(), ErrorKind::Unavailable | ErrorKind::Internal | ErrorKind::Overloaded)
}

/// One element of the answer array.
fn result_node(outcome: &Result<Accepted, AppError>) -> Node {
    let (errors, success, outputs) = match outcome {
        Ok(accepted) => (
            Node::Null,
            true,
            Node::Obj(vec![
                ("messageIdentifiers", Node::str(accepted.message_identifiers.join(","))),
                ("requestId", Node::str(accepted.request_id.as_str())),
            ]),
        ),
        Err(error) => {
            let entries = format::error_entries(error)
                .into_iter()
                .map(|e| {
                    Node::Obj(vec![
                        ("statusCode", Node::str(e.code)),
                        ("message", Node::Str(e.message)),
                        ("fields", Node::List(e.fields.into_iter().map(Node::Str).collect())),
                    ])
                })
                .collect();
            (Node::List(entries), false, Node::Null)
        }
    };
    Node::Obj(vec![
        ("actionName", Node::str(ACTION_NAME)),
        ("errors", errors),
        ("isSuccess", Node::Bool(success)),
        ("outputValues", outputs),
    ])
}

/// The input objects of a body: an object whose only key is `inputs`, a list of 1 to
/// `max` objects. Anything else is wrong for the whole call.
fn inputs_of(document: Value, body_format: BodyFormat, max: usize) -> Result<Vec<Map<String, Value>>, RestError> {
    let parse_error = |message: String| {
        let kind = match body_format {
            BodyFormat::Json => ErrorKind::JsonParse,
            BodyFormat::Xml => ErrorKind::XmlParse,
        };
        RestError::request(kind, message)
    };
    let Value::Object(mut body) = document else {
        return Err(parse_error("The request body must be an object: {\"inputs\":[…]}".into()));
    };
    if let Some(unknown) = body.keys().find(|k| *k != "inputs") {
        return Err(AppError::invalid(Violation::new(
            unknown.clone(),
            ErrorKind::InvalidInput,
            format!("Unknown key {} in the request body; the body has one key, inputs", quoted(unknown)),
        ))
        .into());
    }
    let inputs = match body.remove("inputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(inputs)) => inputs,
        Some(_) => return Err(parse_error("inputs must be a list of input objects".into())),
    };
    if inputs.is_empty() {
        return Err(AppError::invalid(Violation::new(
            "inputs",
            ErrorKind::RequiredFieldMissing,
            "Missing required input: inputs must hold at least one input",
        ))
        .into());
    }
    if inputs.len() > max {
        return Err(AppError::invalid(Violation::new(
            "inputs",
            ErrorKind::InvalidInput,
            format!(
                "{} inputs given; at most {max} are allowed per call — split the inputs over several calls",
                inputs.len()
            ),
        ))
        .into());
    }
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| match input {
            Value::Object(map) => Ok(map),
            _ => Err(parse_error(format!("inputs[{i}] must be an object of input keys"))),
        })
        .collect()
}

/// The `Idempotency-Key` header, if any.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, RestError> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map_err(|_| {
        AppError::invalid(Violation::new(
            "Idempotency-Key",
            ErrorKind::InvalidInput,
            "the Idempotency-Key header must be visible ASCII",
        ))
    })?;
    Ok(Some(key.trim().to_owned()).filter(|k| !k.is_empty()))
}

/// The header that picks the queue lane for every input of the call (Salesforce's action
/// has no such input): `transactional` (the default) or `bulk`, in any case.
pub const PRIORITY_HEADER: &str = "x-convmsg-priority";
/// The header that schedules every input of the call: an RFC 3339 instant.
pub const SEND_AT_HEADER: &str = "x-convmsg-send-at";

/// The `X-Convmsg-Priority` and `X-Convmsg-Send-At` headers, each refused naming the
/// header when it does not parse (the send-at window is checked by the service, as for
/// gRPC, and named `sendAt`).
fn delivery_headers(headers: &HeaderMap) -> Result<(Option<Priority>, Option<i64>), RestError> {
    let header_text = |name: &str, field: &str| -> Result<Option<String>, RestError> {
        let Some(value) = headers.get(name) else { return Ok(None) };
        let text = value.to_str().map_err(|_| {
            AppError::invalid(Violation::new(
                field,
                ErrorKind::InvalidInput,
                format!("the {field} header must be visible ASCII"),
            ))
        })?;
        Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
    };
    let priority = match header_text(PRIORITY_HEADER, "X-Convmsg-Priority")? {
        None => None,
        Some(t) if t.eq_ignore_ascii_case("transactional") => Some(Priority::Transactional),
        Some(t) if t.eq_ignore_ascii_case("bulk") => Some(Priority::Bulk),
        Some(t) => {
            return Err(AppError::invalid(Violation::new(
                "X-Convmsg-Priority",
                ErrorKind::InvalidInput,
                format!("X-Convmsg-Priority {} is not one of transactional, bulk", quoted(&t)),
            ))
            .into());
        }
    };
    let send_at_ms = match header_text(SEND_AT_HEADER, "X-Convmsg-Send-At")? {
        None => None,
        Some(t) => match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
            Ok(at) => Some((at.unix_timestamp_nanos() / 1_000_000) as i64),
            Err(_) => {
                return Err(AppError::invalid(Violation::new(
                    "X-Convmsg-Send-At",
                    ErrorKind::InvalidType,
                    format!("X-Convmsg-Send-At {} is not an RFC 3339 instant (2026-01-01T09:30:00Z)", quoted(&t)),
                ))
                .into());
            }
        },
    };
    Ok((priority, send_at_ms))
}

/// One input object → `SendInput`. Keys are Salesforce's; an unknown key, or a value of
/// the wrong JSON type, is a violation naming it.
pub fn send_input(input: Map<String, Value>, idempotency_key: Option<String>) -> Result<SendInput, Vec<Violation>> {
    let mut v = Violations::default();
    let mut send = SendInput { idempotency_key, ..SendInput::default() };
    for (key, value) in input {
        match key.as_str() {
            "messageDefinitionName" => send.message_definition_name = text(&key, value, &mut v).unwrap_or_default(),
            "messagingDefinitionInputParameters" => send.parameters = parameters(value, &mut v),
            "requestType" => send.request_type = picklist::<RequestType>(&key, value, &mut v),
            "isEnforceMessagingChannelConsent" => send.enforce_consent = boolean(&key, value, &mut v),
            "channelConsentType" => send.consent_type = picklist::<ConsentType>(&key, value, &mut v),
            "communicationSubscriptionId" => send.communication_subscription_id = text(&key, value, &mut v),
            "allowedSessionStatus" => {
                send.allowed_session_status = picklist::<AllowedSessionStatus>(&key, value, &mut v)
            }
            "messagingEndUserIds" => send.end_user_ids = end_user_ids(value, &mut v),
            unknown => v.push(Violation::new(
                unknown,
                ErrorKind::InvalidInput,
                format!("Unknown input {}; {ACTION_NAME} takes {}", quoted(unknown), INPUT_KEYS.join(", ")),
            )),
        }
    }
    v.into_result(send)
}

fn wrong_type(field: impl Into<String>, expected: &str, v: &mut Violations) {
    let field = field.into();
    let message = format!("{field} must be {expected}");
    v.push(Violation::new(field, ErrorKind::InvalidType, message));
}

fn text(key: &str, value: Value, v: &mut Violations) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        Value::Null => None,
        _ => {
            wrong_type(key, "a string", v);
            None
        }
    }
}

/// A boolean, also given as the strings "true"/"false" (as Salesforce accepts).
fn boolean(key: &str, value: Value, v: &mut Violations) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(b),
        Value::Null => None,
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => {
            wrong_type(key, "true or false", v);
            None
        }
    }
}

/// A picklist by its API value; empty or null is "not given".
fn picklist<P: Picklist>(key: &str, value: Value, v: &mut Violations) -> Option<P> {
    let raw = text(key, value, v)?;
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let parsed = P::parse_api(raw);
    if parsed.is_none() {
        v.push(Violation::new(key, ErrorKind::InvalidInput, format!("{} is not a valid value for {key}", quoted(raw))));
    }
    parsed
}

/// A JSON list of ids, or one comma-joined string (the documented sample's form).
fn end_user_ids(value: Value, v: &mut Violations) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::String(joined) => {
            joined.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned).collect()
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Value::String(id) => Some(id.trim().to_owned()),
                _ => {
                    wrong_type(format!("messagingEndUserIds[{i}]"), "a string id", v);
                    None
                }
            })
            .collect(),
        _ => {
            wrong_type("messagingEndUserIds", "a list of ids or a comma-separated string of ids", v);
            Vec::new()
        }
    }
}

fn parameters(value: Value, v: &mut Violations) -> Vec<RawParam> {
    let items = match value {
        Value::Null => return Vec::new(),
        Value::Array(items) => items,
        _ => {
            wrong_type("messagingDefinitionInputParameters", "a list of parameter objects", v);
            return Vec::new();
        }
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let field = format!("messagingDefinitionInputParameters[{i}]");
            match item {
                Value::Object(object) => Some(parameter(&field, object, v)),
                _ => {
                    wrong_type(field, "a parameter object such as {\"name\":…,\"textValue\":…}", v);
                    None
                }
            }
        })
        .collect()
}

/// `{"name":…, "<typed>Value(s)":…}` → `RawParam`; the typing is checked by the domain.
fn parameter(field: &str, object: Map<String, Value>, v: &mut Violations) -> RawParam {
    let mut param = RawParam { name: String::new(), values: Vec::new() };
    for (key, value) in object {
        if key == "name" {
            param.name = text(&format!("{field}.name"), value, v).unwrap_or_default();
            continue;
        }
        let Some(value_key) = ValueKey::from_json_key(&key) else {
            let keys: Vec<&str> = ValueKey::ALL.iter().map(|k| k.json_key()).collect();
            v.push(Violation::new(
                format!("{field}.{}", echo(&key)),
                ErrorKind::InvalidInput,
                format!("Unknown key {} in a parameter object; use name and one of {}", quoted(&key), keys.join(", ")),
            ));
            continue;
        };
        let items = match (value_key.is_list(), value) {
            (false, value) => vec![raw_item(value)],
            (true, Value::Array(items)) => items.into_iter().map(raw_item).collect(),
            (true, _) => {
                wrong_type(format!("{field}.{key}"), "a list", v);
                continue;
            }
        };
        param.values.push(RawValue { key: value_key, items });
    }
    param
}

fn raw_item(value: Value) -> RawItem {
    match value {
        Value::String(s) => RawItem::Str(s),
        Value::Number(n) => n.as_f64().map_or(RawItem::Other("a number out of range"), RawItem::Number),
        Value::Bool(b) => RawItem::Bool(b),
        Value::Null => RawItem::Other("null"),
        Value::Array(_) => RawItem::Other("a list"),
        Value::Object(_) => RawItem::Other("an object"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: Value) -> Result<SendInput, Vec<Violation>> {
        let Value::Object(map) = value else { panic!("test input must be an object") };
        send_input(map, None)
    }

    #[test]
    fn the_documented_sample_input_converts_with_its_comma_joined_recipients() {
        let send = input(json!({
            "messageDefinitionName": "Notification",
            "requestType": "SendNotificationMessages",
            "isEnforceMessagingChannelConsent": true,
            "channelConsentType": "MessagingEndUser",
            "allowedSessionStatus": "Any",
            "messagingEndUserIds": "0PARM000000Lc3I, 0PARM000000MZ3p",
            "messagingDefinitionInputParameters": [{"name": "custom_parameter_name", "textValue": "custom parameter value"}]
        }))
        .unwrap();
        assert_eq!(send.message_definition_name, "Notification");
        assert_eq!(send.request_type, Some(RequestType::SendNotificationMessages));
        assert_eq!(send.enforce_consent, Some(true));
        assert_eq!(send.consent_type, Some(ConsentType::MessagingEndUser));
        assert_eq!(send.allowed_session_status, Some(AllowedSessionStatus::Any));
        assert_eq!(send.end_user_ids, ["0PARM000000Lc3I", "0PARM000000MZ3p"]);
        assert_eq!(
            send.parameters,
            vec![RawParam {
                name: "custom_parameter_name".into(),
                values: vec![RawValue {
                    key: ValueKey::Text,
                    items: vec![RawItem::Str("custom parameter value".into())]
                }],
            }]
        );
    }

    #[test]
    fn recipients_may_be_a_json_list_and_consent_a_string_boolean() {
        let send =
            input(json!({"messagingEndUserIds": [" a ", "b"], "isEnforceMessagingChannelConsent": "FALSE"})).unwrap();
        assert_eq!(send.end_user_ids, ["a", "b"]);
        assert_eq!(send.enforce_consent, Some(false));
    }

    #[test]
    fn absent_null_and_empty_picklists_are_not_given() {
        let send =
            input(json!({"requestType": null, "channelConsentType": "", "messageDefinitionName": null})).unwrap();
        assert_eq!((send.request_type, send.consent_type), (None, None));
        assert_eq!(send.message_definition_name, "");
    }

    #[test]
    fn unknown_keys_and_wrong_json_types_are_violations_naming_the_field() {
        let v = input(json!({
            "messageDefinitionName": 7,
            "isEnforceMessagingChannelConsent": 1,
            "allowedSessionStatus": "Sometimes",
            "messagingEndUserIds": ["ok", 5],
            "recipients": [],
        }))
        .unwrap_err();
        let found: Vec<(&str, ErrorKind)> = v.iter().map(|v| (v.field.as_str(), v.kind)).collect();
        assert_eq!(
            found,
            [
                ("allowedSessionStatus", ErrorKind::InvalidInput),
                ("isEnforceMessagingChannelConsent", ErrorKind::InvalidType),
                ("messageDefinitionName", ErrorKind::InvalidType),
                ("messagingEndUserIds[1]", ErrorKind::InvalidType),
                ("recipients", ErrorKind::InvalidInput),
            ]
        );
        assert!(v[4].message.contains("messageDefinitionName"), "{}", v[4].message);
    }

    #[test]
    fn parameter_objects_become_raw_params_and_unknown_keys_in_them_are_named() {
        let send = input(json!({"messagingDefinitionInputParameters": [
            {"name": "A", "numberValue": 1.5},
            {"name": "B", "booleanValues": [true, null, {}]},
            {"name": "C", "textValue": null},
        ]}))
        .unwrap();
        assert_eq!(send.parameters[0].values[0].items, [RawItem::Number(1.5)]);
        assert_eq!(
            send.parameters[1].values[0].items,
            [RawItem::Bool(true), RawItem::Other("null"), RawItem::Other("an object")]
        );
        assert_eq!(send.parameters[2].values[0].items, [RawItem::Other("null")]);

        let v = input(json!({"messagingDefinitionInputParameters": [
            {"name": "A", "textValue": "x", "colour": "red"},
            {"name": "B", "textValues": "not a list"},
            "C",
        ]}))
        .unwrap_err();
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "messagingDefinitionInputParameters[0].colour",
                "messagingDefinitionInputParameters[1].textValues",
                "messagingDefinitionInputParameters[2]",
            ]
        );
        assert_eq!(v[0].kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn the_body_must_hold_between_one_and_max_input_objects() {
        let kind = |doc: Value| inputs_of(doc, BodyFormat::Json, 2).map(|i| i.len()).map_err(|e| e.error.kind());
        assert_eq!(kind(json!({"inputs": [{}]})), Ok(1));
        assert_eq!(kind(json!({})), Err(ErrorKind::RequiredFieldMissing));
        assert_eq!(kind(json!({"inputs": []})), Err(ErrorKind::RequiredFieldMissing));
        assert_eq!(kind(json!({"inputs": [{}, {}, {}]})), Err(ErrorKind::InvalidInput));
        assert_eq!(kind(json!({"inputs": [{}], "extra": 1})), Err(ErrorKind::InvalidInput));
        assert_eq!(kind(json!({"inputs": {}})), Err(ErrorKind::JsonParse));
        assert_eq!(kind(json!({"inputs": [1]})), Err(ErrorKind::JsonParse));
        assert_eq!(kind(json!([])), Err(ErrorKind::JsonParse));
    }
}
