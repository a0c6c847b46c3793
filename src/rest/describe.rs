//! The static documents: the version list, a version's resources, the action listings
//! and the describe of `sendConversationMessages` (with `Last-Modified` and
//! `If-Modified-Since` → 304). Salesforce publishes no describe for this action, so the
//! one here follows its documented `emailSimple` example: the same top-level and
//! per-parameter keys, values taken from the action's page (spec §3, §4, §8.2).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::format::{Format, Node, Reply};
use super::{ACTION_NAME, CURRENT_VERSION, FIRST_VERSION, Version};
use crate::domain::model::{AllowedSessionStatus, ConsentType, RequestType};
use crate::domain::send::MAX_RECIPIENTS;

/// When the describe last changed (2026-01-01T00:00:00Z). Bump it with any change to
/// `describe_node`, so cached copies are refreshed.
pub const DESCRIBE_LAST_MODIFIED: i64 = 1_767_225_600;

const LABEL: &str = "Send Conversation Messages";
/// The listing's `type` (Salesforce upper-snake-cases the action name).
const ACTION_TYPE: &str = "SEND_CONVERSATION_MESSAGES";

/// The release name of a version: 59.0 is Winter '24, then Spring, Summer, Winter '25, …
fn release_label(major: u16) -> String {
    let index = major.saturating_sub(FIRST_VERSION);
    let season = ["Winter", "Spring", "Summer"][usize::from(index % 3)];
    format!("{season} '{}", 24 + index / 3)
}

/// `GET /services/data`: every version from 59.0 to the current one.
pub fn versions() -> Reply {
    let entries = (FIRST_VERSION..=CURRENT_VERSION)
        .map(|major| {
            let v = Version::new(major);
            Node::Obj(vec![
                ("label", Node::Str(release_label(major))),
                ("url", Node::Str(v.base())),
                ("version", Node::Str(v.to_string())),
            ])
        })
        .collect();
    Reply::list("Versions", "Version", Node::List(entries))
}

/// `GET /services/data/vNN.N`: the resources of a version this bridge serves.
pub fn resources(v: Version) -> Reply {
    let url = |path: &str| Node::Str(format!("{}/{path}", v.base()));
    Reply::object(
        "urls",
        Node::Obj(vec![
            ("actions", url("actions")),
            ("query", url("query")),
            ("queryAll", url("queryAll")),
            ("sobjects", url("sobjects")),
        ]),
    )
}

/// `GET …/actions`.
pub fn actions(v: Version) -> Reply {
    Reply::object(
        "urls",
        Node::Obj(vec![
            ("standard", Node::Str(format!("{}/actions/standard", v.base()))),
            ("custom", Node::Str(format!("{}/actions/custom", v.base()))),
        ]),
    )
}

/// `GET …/actions/standard`: this action's entry.
pub fn standard_actions(v: Version) -> Reply {
    let entry = Node::Obj(vec![
        ("label", Node::str(LABEL)),
        ("name", Node::str(ACTION_NAME)),
        ("type", Node::str(ACTION_TYPE)),
        ("url", Node::Str(format!("{}/actions/standard/{ACTION_NAME}", v.base()))),
    ]);
    Reply::object("ActionList", Node::Obj(vec![("actions", Node::List(vec![entry]))]))
}

/// `GET …/actions/custom`: no custom action types.
pub fn custom_actions() -> Reply {
    Reply::object("urls", Node::Obj(Vec::new()))
}

/// `GET`/`HEAD …/actions/standard/sendConversationMessages`; 304 without a body when
/// `If-Modified-Since` is at or after `DESCRIBE_LAST_MODIFIED`.
pub fn describe(headers: &HeaderMap, format: Format) -> Response {
    let last_modified = HeaderValue::from_str(&http_date(DESCRIBE_LAST_MODIFIED)).ok();
    let since = headers.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()).and_then(parse_http_date);
    if since.is_some_and(|since| DESCRIBE_LAST_MODIFIED <= since) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        if let Some(value) = last_modified {
            response.headers_mut().insert(header::LAST_MODIFIED, value);
        }
        return response;
    }
    let mut reply = Reply::object("ActionDescribe", describe_node());
    if let Some(value) = last_modified {
        reply = reply.with_header(header::LAST_MODIFIED, value);
    }
    reply.render(format)
}

/// One parameter of the describe, with Salesforce's keys in its order.
struct Param {
    name: &'static str,
    label: &'static str,
    description: &'static str,
    kind: &'static str,
    max_occurs: i64,
    required: bool,
    picklist: Option<Picklist>,
}

struct Picklist {
    values: Vec<&'static str>,
    default: &'static str,
}

impl Param {
    fn node(&self) -> Node {
        let picklist = self.picklist.as_ref().map_or(Node::Null, |p| {
            Node::List(
                p.values
                    .iter()
                    .map(|value| {
                        Node::Obj(vec![
                            ("active", Node::Bool(true)),
                            ("defaultValue", Node::Bool(*value == p.default)),
                            ("label", Node::str(*value)),
                            ("value", Node::str(*value)),
                        ])
                    })
                    .collect(),
            )
        });
        Node::Obj(vec![
            ("byteLength", Node::Int(0)),
            ("description", Node::str(self.description)),
            ("label", Node::str(self.label)),
            ("maxOccurs", Node::Int(self.max_occurs)),
            ("name", Node::str(self.name)),
            ("picklistValues", picklist),
            ("required", Node::Bool(self.required)),
            ("sobjectType", Node::Null),
            ("type", Node::str(self.kind)),
        ])
    }
}

/// A picklist's API values and its default, for the describe.
fn picklist<P: Copy + PartialEq>(all: &[P], api: fn(P) -> &'static str, default: P) -> Option<Picklist> {
    Some(Picklist { values: all.iter().map(|v| api(*v)).collect(), default: api(default) })
}

fn inputs() -> Vec<Param> {
    vec![
        Param {
            name: "allowedSessionStatus",
            label: "Allowed Session Status",
            description: "Limits the time when the message can be sent. Any: send whether or not the messaging user is \
                          in a messaging session. NonActive: send once the user's session is not Active. Closed: send \
                          once the user has no open session.",
            kind: "STRING",
            max_occurs: 1,
            required: false,
            picklist: picklist(AllowedSessionStatus::ALL, AllowedSessionStatus::as_str, AllowedSessionStatus::Any),
        },
        Param {
            name: "channelConsentType",
            label: "Channel Consent Type",
            description: "How to apply consent preferences when determining which messaging users receive the \
                          message: MessagingEndUser, CommunicationSubscription (with communicationSubscriptionId) or \
                          Custom (only with isEnforceMessagingChannelConsent false).",
            kind: "STRING",
            max_occurs: 1,
            required: false,
            picklist: picklist(ConsentType::ALL, ConsentType::as_str, ConsentType::MessagingEndUser),
        },
        Param {
            name: "communicationSubscriptionId",
            label: "Communication Subscription ID",
            description: "Required when channelConsentType is CommunicationSubscription: the subscription the \
                          recipients must have opted in to.",
            kind: "STRING",
            max_occurs: 1,
            required: false,
            picklist: None,
        },
        Param {
            name: "isEnforceMessagingChannelConsent",
            label: "Enforce Messaging Channel Consent",
            description: "Indicates whether messaging consent must be verified after messages are queued for sending.",
            kind: "BOOLEAN",
            max_occurs: 1,
            required: false,
            picklist: None,
        },
        Param {
            name: "messageDefinitionName",
            label: "Messaging Component",
            description: "The API name of an active Notification messaging component used to render the messages.",
            kind: "STRING",
            max_occurs: 1,
            required: true,
            picklist: None,
        },
        Param {
            name: "messagingDefinitionInputParameters",
            label: "Messaging Component Parameters",
            description: "The messaging component's parameters: objects with name and one of textValue, \
                          recordIdValue, dateValue, dateTimeValue, numberValue, booleanValue or their list forms.",
            kind: "APEX",
            max_occurs: 100,
            required: false,
            picklist: None,
        },
        Param {
            name: "messagingEndUserIds",
            label: "Messaging User IDs",
            description: "Up to 100 messaging end user IDs to send the message to, as a list or a comma-separated \
                          string.",
            kind: "STRING",
            max_occurs: MAX_RECIPIENTS as i64,
            required: true,
            picklist: None,
        },
        Param {
            name: "requestType",
            label: "Request Type",
            description: "Specifies the type of the request. Valid values are: SendNotificationMessages.",
            kind: "STRING",
            max_occurs: 1,
            required: false,
            picklist: picklist(RequestType::ALL, RequestType::as_str, RequestType::SendNotificationMessages),
        },
    ]
}

fn outputs() -> Vec<Param> {
    vec![
        Param {
            name: "messageIdentifiers",
            label: "Message Identifiers",
            description: "The generated message UUIDs, one for each recipient in messagingEndUserIds, in the same \
                          order, comma-separated.",
            kind: "STRING",
            max_occurs: 1,
            required: false,
            picklist: None,
        },
        Param {
            name: "requestId",
            label: "Request ID",
            description: "The ID of the ConvMessageSendRequest record created by the request, used to track the \
                          message progress.",
            kind: "STRING",
            max_occurs: 1,
            required: false,
            picklist: None,
        },
    ]
}

/// The describe document.
pub fn describe_node() -> Node {
    Node::Obj(vec![
        (
            "description",
            Node::str(
                "Send a messaging component to messaging users in an enhanced messaging channel. The request is \
                 recorded as a ConvMessageSendRequest and the messages are sent asynchronously; the request record \
                 tracks their progress.",
            ),
        ),
        ("inputs", Node::List(inputs().iter().map(Param::node).collect())),
        ("label", Node::str(LABEL)),
        ("name", Node::str(ACTION_NAME)),
        ("outputs", Node::List(outputs().iter().map(Param::node).collect())),
        ("standard", Node::Bool(true)),
        ("targetEntityName", Node::Null),
        ("type", Node::str(ACTION_TYPE)),
    ])
}

/// `Thu, 01 Jan 2026 00:00:00 GMT`.
pub fn http_date(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap_or_default()
}

/// Seconds since the epoch of an `If-Modified-Since` value in Salesforce's documented
/// format `EEE, dd MMM yyyy HH:mm:ss z`: the zone is GMT/UTC/UT/Z, a numeric offset
/// (`+0200`, `GMT+02:00`) or a North American abbreviation. Anything else: `None` (the
/// header is then ignored, as HTTP says).
pub fn parse_http_date(value: &str) -> Option<i64> {
    let value = value.trim();
    let (_weekday, rest) = value.split_once(',')?;
    let rest = rest.trim();
    let (stamp, zone) = rest.rsplit_once(' ')?;
    let at = PrimitiveDateTime::parse(
        stamp,
        format_description!("[day padding:none] [month repr:short] [year] [hour]:[minute]:[second]"),
    )
    .ok()?;
    let offset = zone_offset(zone)?;
    Some(at.assume_offset(offset).unix_timestamp())
}

/// North American zone abbreviations Java's `z` may print, with their UTC offsets.
const ZONES: [(&str, i8); 12] = [
    ("GMT", 0),
    ("UTC", 0),
    ("UT", 0),
    ("Z", 0),
    ("EST", -5),
    ("EDT", -4),
    ("CST", -6),
    ("CDT", -5),
    ("MST", -7),
    ("MDT", -6),
    ("PST", -8),
    ("PDT", -7),
];

fn zone_offset(zone: &str) -> Option<UtcOffset> {
    if let Some((_, hours)) = ZONES.iter().find(|(name, _)| name.eq_ignore_ascii_case(zone)) {
        return UtcOffset::from_hms(*hours, 0, 0).ok();
    }
    let numeric = zone.strip_prefix("GMT").or_else(|| zone.strip_prefix("UTC")).unwrap_or(zone);
    let (sign, digits) = match numeric.as_bytes().first()? {
        b'+' => (1, &numeric[1..]),
        b'-' => (-1, &numeric[1..]),
        _ => return None,
    };
    let digits: String = digits.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i8 = digits[..2].parse().ok()?;
    let m: i8 = digits[2..].parse().ok()?;
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_list_runs_from_winter_24_to_summer_26() {
        let labels: Vec<String> = (FIRST_VERSION..=CURRENT_VERSION).map(release_label).collect();
        assert_eq!(
            labels,
            [
                "Winter '24",
                "Spring '24",
                "Summer '24",
                "Winter '25",
                "Spring '25",
                "Summer '25",
                "Winter '26",
                "Spring '26",
                "Summer '26"
            ]
        );
    }

    #[test]
    fn http_dates_format_and_parse_in_salesforce_s_format() {
        assert_eq!(http_date(DESCRIBE_LAST_MODIFIED), "Thu, 01 Jan 2026 00:00:00 GMT");
        assert_eq!(parse_http_date("Thu, 01 Jan 2026 00:00:00 GMT"), Some(DESCRIBE_LAST_MODIFIED));
        assert_eq!(parse_http_date("Thu, 1 Jan 2026 02:00:00 +0200"), Some(DESCRIBE_LAST_MODIFIED));
        assert_eq!(parse_http_date("Wed, 31 Dec 2025 16:00:00 PST"), Some(DESCRIBE_LAST_MODIFIED));
        assert_eq!(parse_http_date("Wed, 31 Dec 2025 19:00:00 GMT-05:00"), Some(DESCRIBE_LAST_MODIFIED));
        for bad in
            ["", "yesterday", "2026-01-01T00:00:00Z", "Thu, 01 Jan 2026 00:00:00 XYZ", "Thu, 32 Jan 2026 00:00:00 GMT"]
        {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_describe_lists_every_input_with_salesforce_s_parameter_keys() {
        let node = describe_node();
        let Some(Node::List(inputs)) = node.get("inputs") else { panic!("inputs") };
        let names: Vec<&Node> = inputs.iter().filter_map(|i| i.get("name")).collect();
        let expected: Vec<Node> = super::super::invoke::INPUT_KEYS.iter().map(|k| Node::str(*k)).collect();
        assert_eq!(names, expected.iter().collect::<Vec<_>>());
        let Node::Obj(fields) = &inputs[0] else { panic!("object") };
        let keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "byteLength",
                "description",
                "label",
                "maxOccurs",
                "name",
                "picklistValues",
                "required",
                "sobjectType",
                "type"
            ]
        );
    }
}
