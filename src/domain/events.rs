//! Status events as pure data: their types, a tenant's event endpoints and the checks
//! an endpoint's settings must pass. Sending them is `events`; storing them, the
//! outbox in `store::sql::outbox`. No I/O here.

use super::violation::{ErrorKind, Violation};

/// The types of status events sent to a tenant's event endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    /// Every message of a request reached a final status (Success or Failed).
    RequestCompleted,
    /// A message failed before or at the provider (status Failed).
    MessageFailed,
    MessageDelivered,
    MessageRead,
    /// A message the provider had accepted was reported undelivered.
    MessageUndelivered,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::RequestCompleted,
        EventType::MessageFailed,
        EventType::MessageDelivered,
        EventType::MessageRead,
        EventType::MessageUndelivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RequestCompleted => "request.completed",
            EventType::MessageFailed => "message.failed",
            EventType::MessageDelivered => "message.delivered",
            EventType::MessageRead => "message.read",
            EventType::MessageUndelivered => "message.undelivered",
        }
    }

    pub fn parse(raw: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

/// A tenant's event endpoint, as stored (its signing secret is kept apart: it is shown
/// once, when the endpoint is created).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEndpoint {
    /// `ep_` + 26 random characters.
    pub id: String,
    /// Unique in the tenant.
    pub name: String,
    pub url: String,
    /// The types sent; empty: every type.
    pub event_types: Vec<EventType>,
    /// False once disabled (by the operator, or after failing for too long).
    pub enabled: bool,
    /// Why it was disabled, when it was not by request.
    pub disabled_reason: Option<String>,
    /// Since when every delivery to it failed (`None`: the last one succeeded).
    pub failing_since_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl EventEndpoint {
    /// The stored form of `event_types`: empty, or the names wrapped in commas.
    pub fn types_column(types: &[EventType]) -> String {
        if types.is_empty() {
            return String::new();
        }
        let mut names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        format!(",{},", names.join(","))
    }

    /// Parses the stored form; `None` when a name is unknown.
    pub fn parse_types_column(column: &str) -> Option<Vec<EventType>> {
        column.split(',').filter(|n| !n.is_empty()).map(EventType::parse).collect()
    }
}

/// Checks an endpoint's name, URL and event types, naming each bad field.
pub fn check_endpoint(name: &str, url: &str, types: &[String]) -> Result<Vec<EventType>, Vec<Violation>> {
    let mut violations = Vec::new();
    let name = name.trim();
    if name.is_empty() {
        violations.push(Violation::new("name", ErrorKind::RequiredFieldMissing, "name is required"));
    } else if name.len() > 80 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        violations.push(Violation::new(
            "name",
            ErrorKind::InvalidInput,
            "name: at most 80 letters, digits, '_' or '-'",
        ));
    }
    let url = url.trim();
    if url.is_empty() {
        violations.push(Violation::new("url", ErrorKind::RequiredFieldMissing, "url is required"));
    } else if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000 {
        violations.push(Violation::new(
            "url",
            ErrorKind::InvalidInput,
            "url must be an http(s) URL of at most 2000 characters",
        ));
    }
    let mut parsed = Vec::new();
    for (i, raw) in types.iter().enumerate() {
        match EventType::parse(raw.trim()) {
            Some(t) => parsed.push(t),
            None => violations.push(Violation::new(
                format!("event_types[{i}]"),
                ErrorKind::InvalidInput,
                format!(
                    "event_types[{i}]: {raw:?} is not one of {}",
                    EventType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
    if violations.is_empty() { Ok(parsed) } else { Err(violations) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_their_names_and_their_stored_form() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("message.sent"), None);
        let column =
            EventEndpoint::types_column(&[EventType::MessageRead, EventType::RequestCompleted, EventType::MessageRead]);
        assert_eq!(column, ",message.read,request.completed,");
        assert_eq!(
            EventEndpoint::parse_types_column(&column),
            Some(vec![EventType::MessageRead, EventType::RequestCompleted])
        );
        assert_eq!(EventEndpoint::types_column(&[]), "");
        assert_eq!(EventEndpoint::parse_types_column(""), Some(vec![]));
    }

    #[test]
    fn a_bad_endpoint_names_each_field() {
        let err = check_endpoint("", "ftp://x", &["message.read".into(), "message.sent".into()]).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["name", "url", "event_types[1]"]);
        assert_eq!(check_endpoint("ops", "https://hooks.example.com/convmsg", &[]).unwrap(), vec![]);
    }
}
