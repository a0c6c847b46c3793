//! The two wire formats of the bridge and Salesforce's error bodies.
//!
//! Every answer is built as a `Node` — an ordered tree, so fields come out in the order
//! Salesforce shows them — and rendered as JSON or XML according to the caller's
//! `Accept` header (`Format::of_accept`). Request bodies are read here with the size limit
//! (`read_body`) and their media type checked (`BodyFormat::of_content_type`). Errors of
//! every kind become Salesforce's `[{"message":…,"errorCode":…}]` through `RestError`,
//! whose status and code come from the one table in `crate::error::codes`.
//! Nothing here knows which resource is being served.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::ser::{SerializeMap, SerializeSeq};

use crate::domain::{ErrorKind, Violation};
use crate::error::{AppError, codes};

pub const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";
pub const XML_CONTENT_TYPE: &str = "application/xml;charset=UTF-8";
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// Salesforce's message for a path, record or version that does not exist.
pub const NOT_FOUND_MESSAGE: &str = "The requested resource does not exist";
/// Salesforce's message for a missing, unknown or expired token.
pub const INVALID_SESSION_MESSAGE: &str = "Session expired or invalid";

/// A response document: JSON value or XML element content, fields in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Node>),
    Obj(Vec<(&'static str, Node)>),
    /// An object whose keys are not known in advance (aggregate aliases).
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// A string, or null when `None`.
    pub fn opt_str(s: Option<impl Into<String>>) -> Node {
        s.map_or(Node::Null, |s| Node::Str(s.into()))
    }

    /// The field `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.fields()?.into_iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// An object's fields in order (`None` for anything else).
    pub fn fields(&self) -> Option<Vec<(&str, &Node)>> {
        match self {
            Node::Obj(fields) => Some(fields.iter().map(|(k, v)| (*k, v)).collect()),
            Node::Map(fields) => Some(fields.iter().map(|(k, v)| (k.as_str(), v)).collect()),
            _ => None,
        }
    }
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Int(n) => s.serialize_i64(*n),
            Node::Str(text) => s.serialize_str(text),
            Node::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Obj(_) | Node::Map(_) => {
                let fields = self.fields().unwrap_or_default();
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// The format of an answer, chosen by `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// JSON unless the caller prefers XML (`application/xml` or `text/xml` with a higher
    /// quality than JSON). No `Accept`, `*/*` or only unknown types: JSON, as Salesforce.
    pub fn of_accept(headers: &HeaderMap) -> Format {
        let (mut json, mut xml) = (None::<f32>, None::<f32>);
        for value in headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()) {
            for range in value.split(',') {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let slot = match media.as_str() {
                    "application/json" | "text/json" | "application/*" | "*/*" => &mut json,
                    "application/xml" | "text/xml" => &mut xml,
                    _ => continue,
                };
                *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
            }
        }
        match (json, xml) {
            (_, Some(x)) if x > 0.0 && json.is_none_or(|j| x > j) => Format::Xml,
            _ => Format::Json,
        }
    }
}

/// The format of a request body, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Xml,
}

impl BodyFormat {
    /// JSON when `Content-Type` is absent; 415 for anything but JSON and XML.
    pub fn of_content_type(headers: &HeaderMap) -> Result<BodyFormat, RestError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(BodyFormat::Json) };
        let text = value.to_str().unwrap_or_default();
        let media = text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" | "text/json" => Ok(BodyFormat::Json),
            "application/xml" | "text/xml" => Ok(BodyFormat::Xml),
            _ if media.ends_with("+json") => Ok(BodyFormat::Json),
            _ if media.ends_with("+xml") => Ok(BodyFormat::Xml),
            _ => Err(RestError::request(
                ErrorKind::UnsupportedMediaType,
                format!("Content type {text:?} is not supported; send application/json or application/xml"),
            )),
        }
    }
}

/// How much of an over-limit body is still read (and dropped) so the client gets to
/// read the 413 instead of a connection reset in the middle of its upload.
const DRAIN_AFTER_LIMIT: u64 = 8 * 1024 * 1024;

/// Reads a request body of at most `limit` bytes within `timeout`; a larger one is 413
/// and is not kept, a slower one 408.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<Bytes, RestError> {
    tokio::time::timeout(timeout, read_limited(headers, body, limit)).await.unwrap_or_else(|_| {
        Err(RestError::request(
            ErrorKind::BodyTimeout,
            format!("The request body did not arrive within {} ms", timeout.as_millis()),
        ))
    })
}

async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, RestError> {
    let too_large = || {
        RestError::request(
            ErrorKind::BodyTooLarge,
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    };
    let limit_u64 = limit as u64;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit_u64 + DRAIN_AFTER_LIMIT) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0).min(limit_u64) as usize);
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RestError::request(ErrorKind::JsonParse, format!("The request body could not be read: {e}"))
        })?;
        seen += chunk.len() as u64;
        if seen > limit_u64 + DRAIN_AFTER_LIMIT {
            break;
        }
        if seen <= limit_u64 {
            buffer.extend_from_slice(&chunk);
        }
    }
    if seen > limit_u64 {
        return Err(too_large());
    }
    Ok(Bytes::from(buffer))
}

/// A successful answer: status, document, XML names and extra headers.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub node: Node,
    /// XML root element.
    pub root: &'static str,
    /// XML element of each entry when `node` is a list.
    pub item: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    /// An object answer whose XML root element is `root`.
    pub fn object(root: &'static str, node: Node) -> Reply {
        Reply { status: StatusCode::OK, node, root, item: "", headers: Vec::new() }
    }

    /// A list answer: XML `<root><item>…</item>…</root>`.
    pub fn list(root: &'static str, item: &'static str, node: Node) -> Reply {
        Reply { status: StatusCode::OK, node, root, item, headers: Vec::new() }
    }

    pub fn with_status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn render(self, format: Format) -> Response {
        let (content_type, body) = match format {
            Format::Json => (JSON_CONTENT_TYPE, serde_json::to_vec(&self.node).unwrap_or_default()),
            Format::Xml => (XML_CONTENT_TYPE, to_xml(&self.node, self.root, self.item).into_bytes()),
        };
        let length = HeaderValue::from(body.len());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        // Explicit, so that a HEAD answer (whose body is dropped) still tells the GET's length.
        headers.insert(header::CONTENT_LENGTH, length);
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

/// One entry of a Salesforce error list.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorEntry {
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

/// Salesforce's entries for an error: one per violation (each with its own code and
/// field), else one with the error's public message. Salesforce's fixed messages are
/// used for authentication and not-found errors.
pub fn error_entries(error: &AppError) -> Vec<ErrorEntry> {
    error.log();
    let entry = |kind: ErrorKind, message: String, fields: Vec<String>| ErrorEntry {
        code: codes(kind).salesforce,
        message,
        fields: fields.into_iter().filter(|f| !f.is_empty()).collect(),
    };
    match error {
        AppError::Invalid(violations) if !violations.is_empty() => {
            let (shown, omitted) = crate::error::listed(violations);
            let mut entries: Vec<ErrorEntry> = shown
                .iter()
                .map(|Violation { field, kind, message }| entry(*kind, message.clone(), vec![field.clone()]))
                .collect();
            if omitted > 0 {
                let kind = violations[shown.len()].kind;
                entries.push(entry(kind, crate::error::omitted_note(shown.len(), omitted), Vec::new()));
            }
            entries
        }
        AppError::Unauthenticated(_) => {
            vec![entry(ErrorKind::Unauthenticated, INVALID_SESSION_MESSAGE.into(), Vec::new())]
        }
        AppError::NotFound(_) => vec![entry(ErrorKind::NotFound, NOT_FOUND_MESSAGE.into(), Vec::new())],
        other => vec![entry(other.kind(), other.public_message(), other.fields())],
    }
}

/// An error answered for the whole call, in Salesforce's shape.
#[derive(Debug)]
pub struct RestError {
    pub error: AppError,
    /// The methods the resource allows, for a 405's `Allow` header.
    pub allow: Option<&'static str>,
}

impl From<AppError> for RestError {
    fn from(error: AppError) -> Self {
        RestError { error, allow: None }
    }
}

impl RestError {
    pub fn request(kind: ErrorKind, message: impl Into<String>) -> RestError {
        AppError::Request { kind, message: message.into() }.into()
    }

    pub fn not_found() -> RestError {
        AppError::NotFound(NOT_FOUND_MESSAGE.into()).into()
    }

    pub fn method_not_allowed(method: &http::Method, allow: &'static str) -> RestError {
        let message = format!("HTTP Method '{method}' not allowed. Allowed are {allow}");
        RestError { error: AppError::Request { kind: ErrorKind::MethodNotAllowed, message }, allow: Some(allow) }
    }

    pub fn render(self, format: Format) -> Response {
        let kind = self.error.kind();
        let status = StatusCode::from_u16(codes(kind).http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let entries = error_entries(&self.error)
            .into_iter()
            .map(|e| {
                let mut fields = vec![("message", Node::Str(e.message)), ("errorCode", Node::str(e.code))];
                if !e.fields.is_empty() {
                    fields.push(("fields", Node::List(e.fields.into_iter().map(Node::Str).collect())));
                }
                Node::Obj(fields)
            })
            .collect();
        let mut reply = Reply::list("Errors", "Error", Node::List(entries)).with_status(status);
        if let Some(allow) = self.allow {
            reply = reply.with_header(header::ALLOW, HeaderValue::from_static(allow));
        }
        if kind == ErrorKind::Unauthenticated {
            reply = reply.with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if matches!(kind, ErrorKind::BodyTimeout | ErrorKind::BodyTooLarge) {
            // The rest of the body is not read: the connection cannot carry another request.
            reply = reply.with_header(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let retry_after = match &self.error {
            AppError::Overloaded { retry_after } => Some(*retry_after),
            AppError::Unavailable(_) => Some(Duration::from_secs(1)),
            _ => None,
        };
        if let Some(after) = retry_after {
            reply = reply.with_header(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        reply.render(format)
    }
}

/// Renders `node` as an XML document: `<root>` holds an object's fields, or one `<item>`
/// per entry of a list. Fields named `attributes` become XML attributes of their element
/// (the sObject convention, on the root and on the records of a query result); null is
/// `xsi:nil="true"`; a list field repeats its element.
pub fn to_xml(node: &Node, root: &str, item: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    out.push('<');
    out.push_str(root);
    out.push_str(&format!(" xmlns:xsi=\"{XSI_NAMESPACE}\""));
    match node {
        Node::Obj(_) | Node::Map(_) => {
            write_attributes(&mut out, node);
            out.push('>');
            for (name, value) in node.fields().unwrap_or_default().into_iter().filter(|(name, _)| *name != "attributes")
            {
                write_element(&mut out, name, value);
            }
        }
        Node::List(items) => {
            out.push('>');
            for entry in items {
                write_element(&mut out, item, entry);
            }
        }
        scalar => {
            out.push('>');
            out.push_str(&escape(&scalar_text(scalar)));
        }
    }
    out.push_str(&format!("</{root}>"));
    out
}

fn write_element(out: &mut String, name: &str, node: &Node) {
    match node {
        Node::Null => out.push_str(&format!("<{name} xsi:nil=\"true\"/>")),
        Node::List(items) => {
            for item in items {
                write_element(out, name, item);
            }
        }
        Node::Obj(_) | Node::Map(_) => {
            out.push_str(&format!("<{name}"));
            write_attributes(out, node);
            out.push('>');
            for (field, value) in node.fields().unwrap_or_default().into_iter().filter(|(f, _)| *f != "attributes") {
                write_element(out, field, value);
            }
            out.push_str(&format!("</{name}>"));
        }
        scalar => out.push_str(&format!("<{name}>{}</{name}>", escape(&scalar_text(scalar)))),
    }
}

/// An object's `attributes` field as XML attributes of its element.
fn write_attributes(out: &mut String, node: &Node) {
    if let Some(attributes) = node.get("attributes").and_then(Node::fields) {
        for (name, value) in attributes {
            out.push_str(&format!(" {name}=\"{}\"", escape(&scalar_text(value))));
        }
    }
}

fn scalar_text(node: &Node) -> String {
    match node {
        Node::Bool(b) => b.to_string(),
        Node::Int(n) => n.to_string(),
        Node::Str(s) => s.clone(),
        Node::Null | Node::List(_) | Node::Obj(_) | Node::Map(_) => String::new(),
    }
}

/// Escapes markup and replaces characters XML 1.0 cannot carry at all (most control
/// characters) with U+FFFD, so any text a caller sent can be echoed in a valid document.
fn escape(text: &str) -> String {
    let legal = |c: char| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}');
    let cleaned: String = text.chars().map(|c| if legal(c) { c } else { '\u{FFFD}' }).collect();
    quick_xml::escape::escape(cleaned.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Format {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        Format::of_accept(&h)
    }

    #[test]
    fn json_is_the_default_and_xml_is_chosen_only_when_preferred() {
        assert_eq!(Format::of_accept(&HeaderMap::new()), Format::Json);
        assert_eq!(accept("*/*"), Format::Json);
        assert_eq!(accept("text/html"), Format::Json);
        assert_eq!(accept("application/xml"), Format::Xml);
        assert_eq!(accept("text/xml; charset=UTF-8"), Format::Xml);
        assert_eq!(accept("application/json, application/xml"), Format::Json);
        assert_eq!(accept("application/json;q=0.5, application/xml"), Format::Xml);
        assert_eq!(accept("application/xml;q=0"), Format::Json);
    }

    #[test]
    fn content_types_other_than_json_and_xml_are_unsupported() {
        let of = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            BodyFormat::of_content_type(&h).map_err(|e| e.error.kind())
        };
        assert_eq!(BodyFormat::of_content_type(&HeaderMap::new()).unwrap(), BodyFormat::Json);
        assert_eq!(of("application/json; charset=UTF-8"), Ok(BodyFormat::Json));
        assert_eq!(of("Application/XML"), Ok(BodyFormat::Xml));
        assert_eq!(of("text/plain"), Err(ErrorKind::UnsupportedMediaType));
        assert_eq!(of("application/x-www-form-urlencoded"), Err(ErrorKind::UnsupportedMediaType));
    }

    #[test]
    fn objects_keep_their_field_order_in_json() {
        let node = Node::Obj(vec![("z", Node::Int(1)), ("a", Node::Null), ("m", Node::List(vec![Node::Bool(true)]))]);
        assert_eq!(serde_json::to_string(&node).unwrap(), r#"{"z":1,"a":null,"m":[true]}"#);
    }

    #[test]
    fn xml_puts_sobject_attributes_on_the_root_repeats_lists_and_marks_nulls_nil() {
        let node = Node::Obj(vec![
            ("attributes", Node::Obj(vec![("type", Node::str("T")), ("url", Node::str("/a?b&c"))])),
            ("Id", Node::str("1")),
            ("Gone", Node::Null),
            ("Tags", Node::List(vec![Node::str("a<b"), Node::str("c")])),
            ("Inner", Node::Obj(vec![("n", Node::Int(3)), ("ok", Node::Bool(false))])),
        ]);
        assert_eq!(
            to_xml(&node, "T", ""),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><T xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             type=\"T\" url=\"/a?b&amp;c\"><Id>1</Id><Gone xsi:nil=\"true\"/><Tags>a&lt;b</Tags><Tags>c</Tags>\
             <Inner><n>3</n><ok>false</ok></Inner></T>"
        );
    }

    #[test]
    fn xml_puts_the_attributes_of_nested_records_on_their_elements_and_writes_dynamic_keys() {
        let record = |id: &str| {
            Node::Obj(vec![("attributes", Node::Obj(vec![("type", Node::str("T"))])), ("Id", Node::str(id))])
        };
        let aggregate = Node::Map(vec![
            ("attributes".into(), Node::Obj(vec![("type", Node::str("AggregateResult"))])),
            ("total".into(), Node::Int(7)),
        ]);
        let node = Node::Obj(vec![("records", Node::List(vec![record("1"), record("2"), aggregate]))]);
        assert!(to_xml(&node, "QueryResult", "").ends_with(
            "<records type=\"T\"><Id>1</Id></records><records type=\"T\"><Id>2</Id></records>\
             <records type=\"AggregateResult\"><total>7</total></records></QueryResult>"
        ));
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            r#"{"records":[{"attributes":{"type":"T"},"Id":"1"},{"attributes":{"type":"T"},"Id":"2"},{"attributes":{"type":"AggregateResult"},"total":7}]}"#
        );
    }

    #[test]
    fn xml_replaces_characters_xml_cannot_carry() {
        let xml = to_xml(&Node::List(vec![Node::str("a\u{0}b\u{1b}c\td")]), "R", "i");
        assert!(
            xml.ends_with(
                "<R xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><i>a\u{FFFD}b\u{FFFD}c\td</i></R>"
            )
        );
    }

    #[test]
    fn an_error_lists_one_entry_per_violation_with_its_own_code_and_field() {
        let error = AppError::Invalid(vec![
            Violation::missing("messageDefinitionName"),
            Violation::new("messagingEndUserIds[0]", ErrorKind::MalformedId, "bad id"),
        ]);
        let entries = error_entries(&error);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].code, "REQUIRED_FIELD_MISSING");
        assert_eq!(
            entries[1],
            ErrorEntry {
                code: "MALFORMED_ID",
                message: "bad id".into(),
                fields: vec!["messagingEndUserIds[0]".into()]
            }
        );
    }

    #[test]
    fn authentication_and_not_found_errors_use_salesforce_messages() {
        let entries = error_entries(&AppError::Unauthenticated("missing authorization"));
        assert_eq!(
            (entries[0].code, entries[0].message.as_str()),
            ("INVALID_SESSION_ID", "Session expired or invalid")
        );
        let entries = error_entries(&AppError::NotFound("no ConvMessageSendRequest x".into()));
        assert_eq!((entries[0].code, entries[0].message.as_str()), ("NOT_FOUND", NOT_FOUND_MESSAGE));
    }
}
