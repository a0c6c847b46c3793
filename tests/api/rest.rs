//! The Salesforce REST bridge through a real HTTP client against the running server:
//! invocation (JSON and XML), describe and listings, the request record, and
//! Salesforce-shaped errors for every mistake a client can make.

use convmsg::config::TokenConfig;
use convmsg::domain::principal::{generate_token, hash_token};
use convmsg::grpc::pb;
use quick_xml::events::Event;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

pub use crate::helpers::*;

mod control;
mod describe;
mod errors;
mod invoke;
mod metadata;
mod query;
mod record;
mod replication;

const ACTION: &str = "/services/data/v65.0/actions/standard/sendConversationMessages";
const RECORD: &str = "/services/data/v65.0/sobjects/ConvMessageSendRequest";
const NOT_FOUND: &str = r#"[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]"#;
const INVALID_SESSION: &str = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;

/// Every field of the record, in order (spec §9.1).
const RECORD_FIELDS: [&str; 39] = [
    "Id",
    "IsDeleted",
    "Name",
    "CreatedDate",
    "CreatedById",
    "LastModifiedDate",
    "LastModifiedById",
    "SystemModstamp",
    "MessageDefinition",
    "MessageDefinitionParameters",
    "RequestType",
    "RequestStatus",
    "CompletedDate",
    "ShouldEnforceChannelConsent",
    "AllowExistingSessionStatus",
    "RequestConsentType",
    "CommSubscriptionId",
    "SessionLongevityPreference",
    "TotalMessageCount",
    "PendingMessageCount",
    "InProgressMessageCount",
    "SuccessMessageCount",
    "FailedMessageCount",
    "PendingMessageIdentifiers",
    "InProgressMessageIdentifiers",
    "SuccessMessageIdentifiers",
    "FailedMessageIdentifiers",
    "PendingMessagingEndUserIds",
    "InProgressMessagingEndUserIds",
    "InProgressMessagingSessionIds",
    "PendingMeuPlatformKeys",
    "InProgressMeuPlatformKeys",
    "SuccessMeuPlatformKeys",
    "FailedMeuPlatformKeys",
    "FailedMessageErrorReasons",
    "DeliveredMessageIdentifiers",
    "ReadMessageIdentifiers",
    "UndeliveredMessageIdentifiers",
    "UndeliveredMessageErrorCodes",
];

// ---- a small HTTP client -----------------------------------------------------------

struct Http<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

/// What came back: status, headers and the body as text.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    async fn from(response: Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Answer { status, headers, body }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn xml(&self) -> XmlNode {
        parse_xml(&self.body)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

fn http(app: &TestApp) -> Http<'_> {
    Http { app, client: reqwest::Client::new() }
}

impl Http<'_> {
    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.app.url()))
    }

    fn authed(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(&self.app.token)
    }

    async fn send(&self, request: RequestBuilder) -> Answer {
        Answer::from(request.send().await.expect("request sent")).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.authed(Method::GET, path)).await
    }

    async fn invoke(&self, body: Value) -> Answer {
        self.send(self.authed(Method::POST, ACTION).json(&body)).await
    }

    async fn invoke_xml(&self, xml: String, accept: &str) -> Answer {
        let request = self
            .authed(Method::POST, ACTION)
            .header("content-type", "application/xml")
            .header("accept", accept)
            .body(xml);
        self.send(request).await
    }

    /// The record as JSON (200 expected).
    async fn record(&self, id: &str) -> Value {
        let answer = self.get(&format!("{RECORD}/{id}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }

    /// Sends one valid input and returns `(requestId, messageIdentifiers)`.
    async fn accept(&self, input: Value) -> (String, String) {
        let answer = self.invoke(json!({ "inputs": [input] })).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let out = &answer.json()[0]["outputValues"];
        (out["requestId"].as_str().unwrap().to_owned(), out["messageIdentifiers"].as_str().unwrap().to_owned())
    }
}

/// A valid input to every end user of the fixture.
fn input(fx: &Fixture) -> Value {
    json!({
        "messageDefinitionName": fx.definition.api_name,
        "messagingEndUserIds": fx.end_user_ids,
        "messagingDefinitionInputParameters": [{"name": "CustomerName", "textValue": "Ada"}],
    })
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s == s.to_lowercase() && s.len() == 36
}

// ---- a small XML reader, independent of the server's --------------------------------

#[derive(Debug, Default, Clone)]
struct XmlNode {
    name: String,
    attributes: Vec<(String, String)>,
    nil: bool,
    text: String,
    children: Vec<XmlNode>,
}

impl XmlNode {
    fn child(&self, name: &str) -> &XmlNode {
        self.children.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no <{name}> in <{}>", self.name))
    }

    fn all(&self, name: &str) -> Vec<&XmlNode> {
        self.children.iter().filter(|c| c.name == name).collect()
    }

    fn attribute(&self, name: &str) -> &str {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

fn parse_xml(text: &str) -> XmlNode {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<XmlNode> = vec![XmlNode::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push(open(&e)),
            Event::Empty(e) => {
                let node = open(&e);
                stack.last_mut().unwrap().children.push(node);
            }
            Event::End(_) => {
                let node = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(node);
            }
            Event::Text(t) => stack.last_mut().unwrap().text.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let resolved = quick_xml::escape::resolve_predefined_entity(&name).expect("known entity");
                stack.last_mut().unwrap().text.push_str(resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut document = stack.pop().unwrap();
    assert_eq!(document.children.len(), 1, "one root element");
    document.children.remove(0)
}

fn open(e: &quick_xml::events::BytesStart<'_>) -> XmlNode {
    let mut node = XmlNode { name: e.name().as_ref().to_owned(), ..XmlNode::default() };
    for a in e.attributes() {
        let a = a.expect("attribute");
        let key = a.key.as_ref().to_owned();
        let value = a.value.to_string();
        if key == "xsi:nil" && value == "true" {
            node.nil = true;
        }
        node.attributes.push((key, value));
    }
    node
}

/// The text a JSON scalar has in XML (`null` → `None`).
fn xml_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

async fn provision_sample_component(app: &TestApp) {
    app.admin()
        .await
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest {
            message_definition: Some(pb::MessageDefinition {
                api_name: "Notification".into(),
                r#type: pb::DefinitionType::Notification as i32,
                is_active: true,
                text_layout: "Hello {!custom_parameter_name}".into(),
                parameters: vec![pb::MessageParameter {
                    name: "custom_parameter_name".into(),
                    value_type: pb::ParameterValueType::Text as i32,
                    is_required: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .expect("component");
}
