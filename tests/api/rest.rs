//! The Salesforce REST bridge through a real HTTP client against the running server:
//! invocation (JSON and XML), describe and listings, the request record, and
//! Salesforce-shaped errors for every mistake a client can make.

use convmsg::auth::{generate_token, hash_token};
use convmsg::config::TokenConfig;
use convmsg::grpc::pb;
use quick_xml::events::Event;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

use crate::helpers::*;

const ACTION: &str = "/services/data/v65.0/actions/standard/sendConversationMessages";
const RECORD: &str = "/services/data/v65.0/sobjects/ConvMessageSendRequest";
const NOT_FOUND: &str = r#"[{"message":"The requested resource does not exist","errorCode":"NOT_FOUND"}]"#;
const INVALID_SESSION: &str = r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#;

/// Every field of the record, in order (spec §9.1).
const RECORD_FIELDS: [&str; 35] = [
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

// ---- invocation --------------------------------------------------------------------

#[tokio::test]
async fn the_documented_sample_input_returns_the_documented_sample_shape() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    provision_sample_component(&app).await;
    // The spec's §5 sample, verbatim but for the ids: 15-character, comma-joined.
    let ids15: Vec<&str> = fx.end_user_ids.iter().map(|id| &id[..15]).collect();
    let sample = json!({
      "inputs": [{
          "messageDefinitionName":"Notification",
          "requestType":"SendNotificationMessages",
          "isEnforceMessagingChannelConsent":true,
          "channelConsentType":"MessagingEndUser",
          "allowedSessionStatus":"Any",
          "messagingEndUserIds": ids15.join(","),
          "messagingDefinitionInputParameters":[{"name":"custom_parameter_name","textValue":"custom parameter value"}]
      }]
    });
    let answer = http(&app).invoke(sample).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), "application/json;charset=UTF-8");
    let results = answer.json();
    let results = results.as_array().expect("an array");
    assert_eq!(results.len(), 1);
    let result = &results[0];
    assert_eq!(keys(result), ["actionName", "errors", "isSuccess", "outputValues"]);
    assert_eq!(result["actionName"], "sendConversationMessages");
    assert_eq!(result["errors"], Value::Null);
    assert_eq!(result["isSuccess"], true);
    assert_eq!(keys(&result["outputValues"]), ["messageIdentifiers", "requestId"]);
    let request_id = result["outputValues"]["requestId"].as_str().unwrap();
    assert!(request_id.len() == 18 && request_id.starts_with("1sr"), "{request_id}");
    let identifiers: Vec<&str> = result["outputValues"]["messageIdentifiers"].as_str().unwrap().split(',').collect();
    assert_eq!(identifiers.len(), 2);
    assert!(identifiers.iter().all(|id| is_uuid(id)), "{identifiers:?}");

    let record = http(&app).record(request_id).await;
    assert_eq!(record["MessageDefinition"], "Notification");
    assert_eq!(record["PendingMessagingEndUserIds"], fx.end_user_ids.join(","));
    assert_eq!(record["PendingMessageIdentifiers"], identifiers.join(","));
    assert_eq!(record["ShouldEnforceChannelConsent"], true);
    app.stop().await;
}

#[tokio::test]
async fn recipients_may_be_a_json_list_or_a_comma_joined_string_with_spaces() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let mut as_string = input(&fx);
    as_string["messagingEndUserIds"] = json!(format!(" {} , {} ", fx.end_user_ids[0], fx.end_user_ids[1]));
    let answer = client.invoke(json!({ "inputs": [input(&fx), as_string] })).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    for result in answer.json().as_array().unwrap() {
        assert_eq!(result["outputValues"]["messageIdentifiers"].as_str().unwrap().split(',').count(), 2);
        let record = client.record(result["outputValues"]["requestId"].as_str().unwrap()).await;
        assert_eq!(record["PendingMessagingEndUserIds"], fx.end_user_ids.join(","));
    }
    app.stop().await;
}

#[tokio::test]
async fn consent_enforcement_may_be_a_json_boolean_or_the_strings_true_and_false() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    for (given, stored) in [(json!(true), true), (json!("true"), true), (json!("False"), false), (json!(false), false)]
    {
        let mut body = input(&fx);
        body["isEnforceMessagingChannelConsent"] = given.clone();
        let (id, _) = client.accept(body).await;
        assert_eq!(client.record(&id).await["ShouldEnforceChannelConsent"], stored, "{given}");
    }
    let mut body = input(&fx);
    body["isEnforceMessagingChannelConsent"] = json!(1);
    let answer = client.invoke(json!({ "inputs": [body] })).await;
    assert_eq!(answer.status, 400);
    let error = &answer.json()[0]["errors"][0];
    assert_eq!(error["statusCode"], "INVALID_TYPE");
    assert_eq!(error["fields"], json!(["isEnforceMessagingChannelConsent"]));
    app.stop().await;
}

#[tokio::test]
async fn a_failed_input_makes_the_whole_call_400_with_every_result_in_order() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let mut missing_parameter = input(&fx);
    missing_parameter["messagingDefinitionInputParameters"] = json!([]);
    let answer = http(&app).invoke(json!({ "inputs": [input(&fx), missing_parameter, input(&fx)] })).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let results = answer.json();
    assert_eq!(results.as_array().unwrap().len(), 3);
    for i in [0, 2] {
        assert_eq!(results[i]["isSuccess"], true, "{i}");
        assert!(results[i]["outputValues"]["requestId"].is_string());
    }
    let failed = &results[1];
    assert_eq!(keys(failed), ["actionName", "errors", "isSuccess", "outputValues"]);
    assert_eq!(failed["actionName"], "sendConversationMessages");
    assert_eq!(failed["isSuccess"], false);
    assert_eq!(failed["outputValues"], Value::Null);
    let error = &failed["errors"][0];
    assert_eq!(keys(error), ["fields", "message", "statusCode"]);
    assert_eq!(error["statusCode"], "REQUIRED_FIELD_MISSING");
    assert_eq!(error["fields"], json!(["messagingDefinitionInputParameters.CustomerName"]));
    assert!(error["message"].as_str().unwrap().contains("CustomerName"));
    app.stop().await;
}

#[tokio::test]
async fn every_problem_of_an_input_is_listed_with_its_own_code_and_field() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let errors_of = |answer: Answer| -> Vec<(String, Value)> {
        assert_eq!(answer.status, 400, "{}", answer.body);
        let errors = answer.json()[0]["errors"].clone();
        errors
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["statusCode"].as_str().unwrap().to_owned(), e["fields"].clone()))
            .collect()
    };
    // Problems the bridge finds reading the input…
    let mut body = input(&fx);
    body["allowedSessionStatus"] = json!("Sometimes");
    body["isEnforceMessagingChannelConsent"] = json!(1);
    assert_eq!(
        errors_of(client.invoke(json!({ "inputs": [body] })).await),
        [
            ("INVALID_INPUT".to_owned(), json!(["allowedSessionStatus"])),
            ("INVALID_TYPE".to_owned(), json!(["isEnforceMessagingChannelConsent"])),
        ]
    );
    // …and those the service finds in what it says.
    let body = json!({ "messageDefinitionName": " ", "messagingEndUserIds": ["nope", fx.end_user_ids[0]] });
    assert_eq!(
        errors_of(client.invoke(json!({ "inputs": [body] })).await),
        [
            ("REQUIRED_FIELD_MISSING".to_owned(), json!(["messageDefinitionName"])),
            ("MALFORMED_ID".to_owned(), json!(["messagingEndUserIds[0]"])),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_input_key_is_invalid_input_naming_it() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let mut body = input(&fx);
    body["recipients"] = json!(["x"]);
    let answer = http(&app).invoke(json!({ "inputs": [body] })).await;
    assert_eq!(answer.status, 400);
    let error = &answer.json()[0]["errors"][0];
    assert_eq!(error["statusCode"], "INVALID_INPUT");
    assert_eq!(error["fields"], json!(["recipients"]));
    assert!(error["message"].as_str().unwrap().contains("recipients"));
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_key_in_a_parameter_object_is_invalid_input_naming_it() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let mut body = input(&fx);
    body["messagingDefinitionInputParameters"] = json!([{"name": "CustomerName", "textValue": "Ada", "colour": "red"}]);
    let answer = http(&app).invoke(json!({ "inputs": [body] })).await;
    assert_eq!(answer.status, 400);
    let error = &answer.json()[0]["errors"][0];
    assert_eq!(error["statusCode"], "INVALID_INPUT");
    assert_eq!(error["fields"], json!(["messagingDefinitionInputParameters[0].colour"]));
    app.stop().await;
}

#[tokio::test]
async fn parameter_values_of_the_wrong_json_type_are_invalid_type() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    for wrong in [json!(5), json!(null), json!({"a": 1}), json!(["Ada"])] {
        let mut body = input(&fx);
        body["messagingDefinitionInputParameters"] = json!([{"name": "CustomerName", "textValue": wrong}]);
        let answer = client.invoke(json!({ "inputs": [body] })).await;
        assert_eq!(answer.status, 400, "{wrong}");
        assert_eq!(answer.json()[0]["errors"][0]["statusCode"], "INVALID_TYPE", "{wrong}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_without_inputs_or_with_an_empty_list_is_400_naming_inputs() {
    let app = spawn_app().await;
    let client = http(&app);
    for body in [json!({}), json!({"inputs": []}), json!({"inputs": null})] {
        let answer = client.invoke(body.clone()).await;
        assert_eq!(answer.status, 400, "{body}");
        assert_eq!(answer.header("content-type"), "application/json;charset=UTF-8");
        let errors = answer.json();
        assert_eq!(errors[0]["errorCode"], "REQUIRED_FIELD_MISSING", "{body}");
        assert_eq!(errors[0]["fields"], json!(["inputs"]));
    }
    let answer = client.invoke(json!({"inputs": [], "input": [{}]})).await;
    assert_eq!(answer.json()[0]["errorCode"], "INVALID_INPUT");
    assert_eq!(answer.json()[0]["fields"], json!(["input"]));
    app.stop().await;
}

#[tokio::test]
async fn more_inputs_than_the_configured_limit_are_refused_and_nothing_is_recorded() {
    let app = spawn_app_with(|c| c.rest.max_inputs_per_call = 2).await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let answer = client.invoke(json!({ "inputs": [input(&fx), input(&fx), input(&fx)] })).await;
    assert_eq!(answer.status, 400);
    let error = &answer.json()[0];
    assert_eq!(error["errorCode"], "INVALID_INPUT");
    assert_eq!(error["fields"], json!(["inputs"]));
    assert!(error["message"].as_str().unwrap().contains("at most 2"), "{error}");
    let (id, _) = client.accept(input(&fx)).await;
    assert_eq!(client.record(&id).await["Name"], "MSJ-00000001");
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let call = || {
        client.send(
            client
                .authed(Method::POST, ACTION)
                .header("Idempotency-Key", "order-42")
                .json(&json!({ "inputs": [input(&fx)] })),
        )
    };
    let first = call().await;
    let second = call().await;
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(first.json(), second.json());
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_with_several_inputs_applies_key_colon_index() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let mut second_input = input(&fx);
    second_input["messagingEndUserIds"] = json!([fx.end_user_ids[1]]);
    let with_key = |key: &str, inputs: Value| {
        client
            .send(client.authed(Method::POST, ACTION).header("Idempotency-Key", key).json(&json!({ "inputs": inputs })))
    };
    let both = with_key("batch-7", json!([input(&fx), second_input.clone()])).await;
    assert_eq!(both.status, 200, "{}", both.body);
    let both = both.json();
    // The second input was recorded under "batch-7:1": the same call alone with that key replays it.
    let alone = with_key("batch-7:1", json!([second_input.clone()])).await.json();
    assert_eq!(alone[0]["outputValues"], both[1]["outputValues"]);
    // "batch-7:0" belongs to the first input; another body under it is a duplicate.
    let clash = with_key("batch-7:0", json!([second_input])).await;
    assert_eq!(clash.status, 400);
    assert_eq!(clash.json()[0]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
    app.stop().await;
}

#[tokio::test]
async fn a_call_through_grpc_and_rest_with_one_idempotency_key_is_one_request() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let mut request = fx.request();
    request.idempotency_key = "same-call".into();
    let over_grpc = app.conv().await.send_conversation_messages(request).await.unwrap().into_inner();
    let client = http(&app);
    let over_rest = client
        .send(
            client
                .authed(Method::POST, ACTION)
                .header("Idempotency-Key", "same-call")
                .json(&json!({ "inputs": [input(&fx)] })),
        )
        .await;
    assert_eq!(over_rest.status, 200, "{}", over_rest.body);
    assert_eq!(over_rest.json()[0]["outputValues"]["requestId"], over_grpc.request_id);
    // And a request accepted over REST is the same record over gRPC.
    let (id, identifiers) = client.accept(input(&fx)).await;
    let record = app
        .conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(record.id, id);
    assert_eq!(record.messages[0].message_identifier, identifiers);
    app.stop().await;
}

#[tokio::test]
async fn every_version_from_59_0_is_served_and_older_or_malformed_versions_are_404() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    for version in ["v59.0", "v60.0", "v67.0", "v99.0"] {
        let path = format!("/services/data/{version}/actions/standard/sendConversationMessages");
        let answer = client.send(client.authed(Method::POST, &path).json(&json!({ "inputs": [input(&fx)] }))).await;
        assert_eq!(answer.status, 200, "{version}: {}", answer.body);
        assert_eq!(client.get(&path).await.status, 200, "{version}");
    }
    for version in ["v58.0", "v20.0", "v59", "59.0", "vABC", "v59.0.1"] {
        let path = format!("/services/data/{version}/actions/standard/sendConversationMessages");
        let answer = client.send(client.authed(Method::POST, &path).json(&json!({ "inputs": [input(&fx)] }))).await;
        assert_eq!((answer.status, answer.body.as_str()), (404, NOT_FOUND), "{version}");
        assert_eq!(client.get(&path).await.body, NOT_FOUND, "{version}");
    }
    app.stop().await;
}

// ---- XML ---------------------------------------------------------------------------

fn xml_input(fx: &Fixture, extra: &str) -> String {
    let ids: String =
        fx.end_user_ids.iter().map(|id| format!("<messagingEndUserIds>{id}</messagingEndUserIds>")).collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Inputs>
  <inputs>
    <messageDefinitionName>{}</messageDefinitionName>
    <requestType>SendNotificationMessages</requestType>
    {ids}
    <messagingDefinitionInputParameters><name>CustomerName</name><textValue>Ada &amp; Bob</textValue></messagingDefinitionInputParameters>
    {extra}
  </inputs>
</Inputs>"#,
        fx.definition.api_name
    )
}

#[tokio::test]
async fn an_xml_invocation_answers_in_xml_with_the_json_answer_s_shape() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let answer = http(&app).invoke_xml(xml_input(&fx, ""), "application/xml").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), "application/xml;charset=UTF-8");
    assert!(answer.body.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
    let root = answer.xml();
    assert_eq!(root.name, "Results");
    let results = root.all("result");
    assert_eq!(results.len(), 1);
    let result = results[0];
    let names: Vec<&str> = result.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["actionName", "errors", "isSuccess", "outputValues"]);
    assert_eq!(result.child("actionName").text, "sendConversationMessages");
    assert!(result.child("errors").nil);
    assert_eq!(result.child("isSuccess").text, "true");
    let identifiers = &result.child("outputValues").child("messageIdentifiers").text;
    assert!(identifiers.split(',').all(is_uuid) && identifiers.split(',').count() == 2, "{identifiers}");
    let request_id = &result.child("outputValues").child("requestId").text;
    let record = http(&app).record(request_id).await;
    assert_eq!(record["MessageDefinitionParameters"], r#"[{"name":"CustomerName","textValue":"Ada & Bob"}]"#);
    assert_eq!(record["PendingMessageIdentifiers"], identifiers.as_str());
    app.stop().await;
}

#[tokio::test]
async fn request_and_response_formats_are_chosen_independently() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    // XML in, JSON out (no Accept).
    let request =
        client.authed(Method::POST, ACTION).header("content-type", "application/xml").body(xml_input(&fx, ""));
    let answer = client.send(request).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()[0]["isSuccess"], true);
    // JSON in, XML out.
    let request = client
        .authed(Method::POST, ACTION)
        .header("accept", "application/xml")
        .json(&json!({ "inputs": [input(&fx)] }));
    let answer = client.send(request).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.xml().child("result").child("isSuccess").text, "true");
    app.stop().await;
}

#[tokio::test]
async fn a_failed_xml_input_lists_its_errors_in_xml_and_the_call_is_400() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let answer = http(&app).invoke_xml(xml_input(&fx, "<colour>red</colour>"), "application/xml").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let result = answer.xml();
    let result = result.child("result");
    assert_eq!(result.child("isSuccess").text, "false");
    assert!(result.child("outputValues").nil);
    let error = result.child("errors");
    assert_eq!(error.child("statusCode").text, "INVALID_INPUT");
    assert_eq!(error.child("fields").text, "colour");
    assert!(error.child("message").text.contains("colour"));
    app.stop().await;
}

#[tokio::test]
async fn xml_and_json_invocations_give_the_same_records() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let parameters_xml = "<messagingDefinitionInputParameters><name>Amount</name><numberValue>12.5</numberValue></messagingDefinitionInputParameters>\
         <messagingDefinitionInputParameters><name>DueDate</name><dateValue>2026-02-01</dateValue></messagingDefinitionInputParameters>\
         <messagingDefinitionInputParameters><name>Tags</name><textValues>a</textValues><textValues>b</textValues></messagingDefinitionInputParameters>\
         <isEnforceMessagingChannelConsent>true</isEnforceMessagingChannelConsent>\
         <allowedSessionStatus>NonActive</allowedSessionStatus>";
    let over_xml = client.invoke_xml(xml_input(&fx, parameters_xml), "application/json").await;
    assert_eq!(over_xml.status, 200, "{}", over_xml.body);
    let mut json_input = input(&fx);
    json_input["requestType"] = json!("SendNotificationMessages");
    json_input["isEnforceMessagingChannelConsent"] = json!(true);
    json_input["allowedSessionStatus"] = json!("NonActive");
    json_input["messagingDefinitionInputParameters"] = json!([
        {"name": "CustomerName", "textValue": "Ada & Bob"},
        {"name": "Amount", "numberValue": 12.5},
        {"name": "DueDate", "dateValue": "2026-02-01"},
        {"name": "Tags", "textValues": ["a", "b"]},
    ]);
    let (json_id, _) = client.accept(json_input).await;
    let xml_record = client.record(over_xml.json()[0]["outputValues"]["requestId"].as_str().unwrap()).await;
    let json_record = client.record(&json_id).await;
    for field in RECORD_FIELDS {
        if matches!(field, "Id" | "Name" | "PendingMessageIdentifiers") {
            continue;
        }
        assert_eq!(xml_record[field], json_record[field], "{field}");
    }
    assert_eq!(xml_record["ShouldEnforceChannelConsent"], true);
    assert_eq!(xml_record["AllowExistingSessionStatus"], "NonActive");
    app.stop().await;
}

#[tokio::test]
async fn the_record_reads_the_same_in_xml_and_json() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let json_record = client.record(&id).await;
    let answer =
        client.send(client.authed(Method::GET, &format!("{RECORD}/{id}")).header("accept", "application/xml")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), "application/xml;charset=UTF-8");
    let root = answer.xml();
    assert_eq!(root.name, "ConvMessageSendRequest");
    assert_eq!(root.attribute("type"), json_record["attributes"]["type"].as_str().unwrap());
    assert_eq!(root.attribute("url"), json_record["attributes"]["url"].as_str().unwrap());
    let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, RECORD_FIELDS);
    for field in &root.children {
        let expected = xml_text(&json_record[&field.name]);
        let got = if field.nil { None } else { Some(field.text.clone()) };
        assert_eq!(got, expected, "{}", field.name);
    }
    app.stop().await;
}

// ---- describe, listings, versions ---------------------------------------------------

#[tokio::test]
async fn the_describe_shows_the_action_with_salesforce_s_parameter_keys() {
    let app = spawn_app().await;
    let answer = http(&app).get(ACTION).await;
    assert_eq!(answer.status, 200);
    let describe = answer.json();
    assert_eq!(
        keys(&describe),
        ["description", "inputs", "label", "name", "outputs", "standard", "targetEntityName", "type"]
    );
    assert_eq!(describe["name"], "sendConversationMessages");
    assert_eq!(describe["label"], "Send Conversation Messages");
    assert_eq!(describe["standard"], true);
    assert_eq!(describe["targetEntityName"], Value::Null);
    let names = |list: &Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(
        names(&describe["inputs"]),
        [
            "allowedSessionStatus",
            "channelConsentType",
            "communicationSubscriptionId",
            "isEnforceMessagingChannelConsent",
            "messageDefinitionName",
            "messagingDefinitionInputParameters",
            "messagingEndUserIds",
            "requestType"
        ]
    );
    assert_eq!(names(&describe["outputs"]), ["messageIdentifiers", "requestId"]);
    let parameter_keys = [
        "byteLength",
        "description",
        "label",
        "maxOccurs",
        "name",
        "picklistValues",
        "required",
        "sobjectType",
        "type",
    ];
    for p in describe["inputs"].as_array().unwrap().iter().chain(describe["outputs"].as_array().unwrap()) {
        assert_eq!(keys(p), parameter_keys, "{p}");
    }
    let allowed = &describe["inputs"][0]["picklistValues"];
    let values: Vec<&str> = allowed.as_array().unwrap().iter().map(|v| v["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["Any", "NonActive", "Closed"]);
    assert_eq!(describe["inputs"][6]["maxOccurs"], 100);
    assert_eq!(describe["inputs"][4]["required"], true);
    assert_eq!(answer.header("last-modified"), "Thu, 01 Jan 2026 00:00:00 GMT");
    // The same describe in XML.
    let answer = http(&app).send(http(&app).authed(Method::GET, ACTION).header("accept", "application/xml")).await;
    let root = answer.xml();
    assert_eq!(root.name, "ActionDescribe");
    assert_eq!(root.all("inputs").len(), 8);
    assert_eq!(root.child("inputs").all("picklistValues").len(), 3);
    assert!(root.child("targetEntityName").nil);
    app.stop().await;
}

#[tokio::test]
async fn head_on_the_describe_returns_the_get_headers_without_a_body() {
    let app = spawn_app().await;
    let client = http(&app);
    let get = client.get(ACTION).await;
    let head = client.send(client.authed(Method::HEAD, ACTION)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    for name in ["content-type", "content-length", "last-modified"] {
        assert_eq!(head.header(name), get.header(name), "{name}");
    }
    assert_eq!(get.header("content-length"), get.body.len().to_string());
    let unauthenticated = client.send(client.request(Method::HEAD, ACTION)).await;
    assert_eq!((unauthenticated.status, unauthenticated.body.as_str()), (401, ""));
    app.stop().await;
}

#[tokio::test]
async fn if_modified_since_the_describe_s_date_answers_304_without_a_body() {
    let app = spawn_app().await;
    let client = http(&app);
    let last_modified = client.get(ACTION).await.header("last-modified").to_owned();
    let since = |value: &str| client.send(client.authed(Method::GET, ACTION).header("if-modified-since", value));
    for unchanged in [last_modified.as_str(), "Fri, 01 Jan 2027 00:00:00 GMT", "Wed, 31 Dec 2025 16:00:00 PST"] {
        let answer = since(unchanged).await;
        assert_eq!((answer.status, answer.body.as_str()), (304, ""), "{unchanged}");
        assert_eq!(answer.header("last-modified"), last_modified);
    }
    for changed in ["Wed, 31 Dec 2025 23:59:59 GMT", "not a date"] {
        assert_eq!(since(changed).await.status, 200, "{changed}");
    }
    let head =
        client.send(client.authed(Method::HEAD, ACTION).header("if-modified-since", last_modified.as_str())).await;
    assert_eq!(head.status, 304);
    app.stop().await;
}

#[tokio::test]
async fn the_action_listings_have_salesforce_s_shape() {
    let app = spawn_app().await;
    let client = http(&app);
    let actions = client.get("/services/data/v66.0/actions").await;
    assert_eq!(actions.status, 200);
    assert_eq!(
        actions.json(),
        json!({"standard": "/services/data/v66.0/actions/standard", "custom": "/services/data/v66.0/actions/custom"})
    );
    let standard = client.get("/services/data/v66.0/actions/standard").await.json();
    assert_eq!(
        standard,
        json!({"actions": [{
            "label": "Send Conversation Messages",
            "name": "sendConversationMessages",
            "type": "SEND_CONVERSATION_MESSAGES",
            "url": "/services/data/v66.0/actions/standard/sendConversationMessages"
        }]})
    );
    assert_eq!(client.get("/services/data/v66.0/actions/custom").await.json(), json!({}));
    assert_eq!(client.get("/services/data/v66.0").await.json(), json!({"actions": "/services/data/v66.0/actions"}));
    let xml = client
        .send(client.authed(Method::GET, "/services/data/v66.0/actions/standard").header("accept", "text/xml"))
        .await;
    assert_eq!(xml.xml().child("actions").child("name").text, "sendConversationMessages");
    assert_eq!(client.send(client.request(Method::GET, "/services/data/v66.0/actions")).await.status, 401);
    app.stop().await;
}

#[tokio::test]
async fn the_version_list_runs_from_59_0_to_67_0_and_needs_no_token() {
    let app = spawn_app().await;
    let client = http(&app);
    let answer = client.send(client.request(Method::GET, "/services/data")).await;
    assert_eq!(answer.status, 200);
    let versions = answer.json();
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 9);
    assert_eq!(versions[0], json!({"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}));
    assert_eq!(versions[8], json!({"label": "Summer '26", "url": "/services/data/v67.0", "version": "67.0"}));
    let xml = client.send(client.request(Method::GET, "/services/data/").header("accept", "application/xml")).await;
    let root = xml.xml();
    assert_eq!(root.name, "Versions");
    assert_eq!(root.all("Version").len(), 9);
    assert_eq!(root.all("Version")[0].child("version").text, "59.0");
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token_and_equals_the_file() {
    let app = spawn_app().await;
    let client = http(&app);
    let answer = client.send(client.request(Method::GET, "/services/data/openapi.json")).await;
    assert_eq!(answer.status, 200);
    assert!(answer.header("content-type").starts_with("application/json"));
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    assert_eq!(answer.body, file);
    let doc = answer.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    app.stop().await;
}

// ---- the record ----------------------------------------------------------------------

fn is_salesforce_datetime(value: &Value) -> bool {
    let Some(s) = value.as_str() else { return false };
    s.len() == 28
        && s.ends_with("+0000")
        && time::PrimitiveDateTime::parse(
            &s[..23],
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]"),
        )
        .is_ok()
}

#[tokio::test]
async fn the_record_shows_every_field_of_the_salesforce_object() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let client = http(&app);
    let (id, identifiers) = client.accept(input(&fx)).await;
    let answer = client.get(&format!("{RECORD}/{id}")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("last-modified"), "Thu, 01 Jan 2026 00:00:00 GMT");
    let record = answer.json();
    let object = record.as_object().unwrap();
    assert_eq!(object.len(), RECORD_FIELDS.len() + 1);
    assert_eq!(
        record["attributes"],
        json!({"type": "ConvMessageSendRequest", "url": format!("/services/data/v65.0/sobjects/ConvMessageSendRequest/{id}")})
    );
    for field in RECORD_FIELDS {
        assert!(object.contains_key(field), "{field} missing");
    }
    let expected = json!({
        "Id": id,
        "IsDeleted": false,
        "Name": "MSJ-00000001",
        "CreatedDate": "2026-01-01T00:00:00.000+0000",
        "CreatedById": null,
        "LastModifiedDate": "2026-01-01T00:00:00.000+0000",
        "LastModifiedById": null,
        "SystemModstamp": "2026-01-01T00:00:00.000+0000",
        "MessageDefinition": fx.definition.api_name,
        "MessageDefinitionParameters": r#"[{"name":"CustomerName","textValue":"Ada"}]"#,
        "RequestType": "SendNotificationMessages",
        "RequestStatus": "Pending",
        "CompletedDate": null,
        "ShouldEnforceChannelConsent": false,
        "AllowExistingSessionStatus": "Any",
        "RequestConsentType": "MessagingEndUser",
        "CommSubscriptionId": null,
        "SessionLongevityPreference": null,
        "TotalMessageCount": 2,
        "PendingMessageCount": 2,
        "InProgressMessageCount": 0,
        "SuccessMessageCount": 0,
        "FailedMessageCount": 0,
        "PendingMessageIdentifiers": identifiers,
        "InProgressMessageIdentifiers": null,
        "SuccessMessageIdentifiers": null,
        "FailedMessageIdentifiers": null,
        "PendingMessagingEndUserIds": fx.end_user_ids.join(","),
        "InProgressMessagingEndUserIds": null,
        "InProgressMessagingSessionIds": null,
        "InProgressMeuPlatformKeys": null,
        "SuccessMeuPlatformKeys": null,
        "FailedMeuPlatformKeys": null,
        "FailedMessageErrorReasons": null,
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&record[field], value, "{field}");
    }
    assert!(is_salesforce_datetime(&record["CreatedDate"]));
    let keys = record["PendingMeuPlatformKeys"].as_str().unwrap();
    assert_eq!(keys.split(',').count(), 2);
    assert!(keys.split(',').all(|k| k.starts_with("+1555")), "{keys}");
    app.stop().await;
}

#[tokio::test]
async fn the_record_is_found_by_its_15_character_id_and_shows_the_18_character_one() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let record = client.record(&id[..15]).await;
    assert_eq!(record["Id"], id);
    assert!(record["attributes"]["url"].as_str().unwrap().ends_with(&id));
    app.stop().await;
}

#[tokio::test]
async fn a_field_selection_returns_those_fields_with_id_and_attributes_and_an_unknown_field_is_invalid_field() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let answer = client.get(&format!("{RECORD}/{id}?fields=RequestStatus,totalmessagecount")).await;
    assert_eq!(answer.status, 200);
    let record = answer.json();
    assert_eq!(keys(&record), ["Id", "RequestStatus", "TotalMessageCount", "attributes"]);
    assert_eq!(record["TotalMessageCount"], 1);
    let answer = client.get(&format!("{RECORD}/{id}?fields=Name,Colour")).await;
    assert_eq!(answer.status, 400);
    let error = &answer.json()[0];
    assert_eq!(error["errorCode"], "INVALID_FIELD");
    assert_eq!(error["fields"], json!(["Colour"]));
    assert!(error["message"].as_str().unwrap().contains("'Colour'"));
    app.stop().await;
}

#[tokio::test]
async fn a_malformed_record_id_is_400_malformed_id() {
    let app = spawn_app().await;
    let client = http(&app);
    for bad in ["nope", "1srM000000000p", "0PARM000000Lc3I", "1srAAAAAAAAAAAAAAA"] {
        let answer = client.get(&format!("{RECORD}/{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}");
        let error = &answer.json()[0];
        assert_eq!(error["errorCode"], "MALFORMED_ID", "{bad}");
        assert_eq!(error["fields"], json!(["Id"]));
    }
    app.stop().await;
}

#[tokio::test]
async fn another_tenant_s_record_and_an_unknown_record_are_404_not_found() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let as_other =
        client.send(client.request(Method::GET, &format!("{RECORD}/{id}")).bearer_auth(&app.other_token)).await;
    assert_eq!((as_other.status, as_other.body.as_str()), (404, NOT_FOUND));
    let unknown = convmsg::domain::RecordId::generate(convmsg::domain::IdKind::SendRequest);
    let answer = client.get(&format!("{RECORD}/{unknown}")).await;
    assert_eq!((answer.status, answer.body.as_str()), (404, NOT_FOUND));
    app.stop().await;
}

#[tokio::test]
async fn a_record_not_modified_since_answers_304() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let path = format!("{RECORD}/{id}");
    let unchanged = client
        .send(client.authed(Method::GET, &path).header("if-modified-since", "Thu, 01 Jan 2026 00:00:00 GMT"))
        .await;
    assert_eq!((unchanged.status, unchanged.body.as_str()), (304, ""));
    let older = client
        .send(client.authed(Method::GET, &path).header("if-modified-since", "Wed, 31 Dec 2025 00:00:00 GMT"))
        .await;
    assert_eq!(older.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn writing_to_the_record_or_the_action_is_405_with_an_allow_header() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let record = format!("{RECORD}/{id}");
    for method in [Method::POST, Method::PATCH, Method::DELETE, Method::PUT] {
        let answer = client.send(client.authed(method.clone(), &record).json(&json!({"Name": "x"}))).await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), "GET, HEAD");
        let error = &answer.json()[0];
        assert_eq!(error["errorCode"], "METHOD_NOT_ALLOWED");
        assert!(error["message"].as_str().unwrap().contains(method.as_str()));
    }
    let answer = client.send(client.authed(Method::DELETE, ACTION)).await;
    assert_eq!((answer.status, answer.header("allow")), (405, "GET, HEAD, POST"));
    let answer = client.send(client.authed(Method::POST, "/services/data/v65.0/actions")).await;
    assert_eq!((answer.status, answer.header("allow")), (405, "GET, HEAD"));
    assert_eq!(client.record(&id).await["TotalMessageCount"], 1);
    app.stop().await;
}

// ---- errors ----------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_or_bad_token_is_401_invalid_session_id_everywhere() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let (id, _) = client.accept(input(&fx)).await;
    let record = format!("{RECORD}/{id}");
    for (method, path) in [(Method::POST, ACTION), (Method::GET, ACTION), (Method::GET, record.as_str())] {
        for auth in [None, Some("Bearer cm_not_a_token"), Some("Basic dXNlcjpwdw=="), Some("Bearer ")] {
            let mut request = client.request(method.clone(), path).json(&json!({ "inputs": [input(&fx)] }));
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let answer = client.send(request).await;
            assert_eq!((answer.status, answer.body.as_str()), (401, INVALID_SESSION), "{method} {path} {auth:?}");
        }
    }
    let xml = client.send(client.request(Method::GET, ACTION).header("accept", "application/xml")).await;
    let root = xml.xml();
    assert_eq!(root.name, "Errors");
    assert_eq!(root.child("Error").child("errorCode").text, "INVALID_SESSION_ID");
    assert_eq!(root.child("Error").child("message").text, "Session expired or invalid");
    app.stop().await;
}

#[tokio::test]
async fn a_token_without_the_needed_scope_is_403_insufficient_access() {
    let send_only = generate_token();
    let hash = hash_token(&send_only);
    let app = spawn_app_with(|c| {
        c.tenants[0].tokens.push(TokenConfig { sha256: hash, scopes: vec!["send".into()], label: "send only".into() })
    })
    .await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let answer = client
        .send(
            client.request(Method::POST, ACTION).bearer_auth(&app.read_token).json(&json!({ "inputs": [input(&fx)] })),
        )
        .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.json()[0]["errorCode"], "INSUFFICIENT_ACCESS");
    let (id, _) = client.accept(input(&fx)).await;
    let answer = client.send(client.request(Method::GET, &format!("{RECORD}/{id}")).bearer_auth(&send_only)).await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.json()[0]["errorCode"], "INSUFFICIENT_ACCESS");
    // Reading the describe needs a valid token, not a particular scope.
    let answer = client.send(client.request(Method::GET, ACTION).bearer_auth(&app.read_token)).await;
    assert_eq!(answer.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_salesforce_404_for_http_callers_and_unimplemented_for_grpc() {
    let app = spawn_app().await;
    let client = http(&app);
    for path in
        ["/nope", "/services/data/v65.0/sobjects/Account/001000000000001", "/services/data/v65.0/query", "/services"]
    {
        let answer = client.get(path).await;
        assert_eq!((answer.status, answer.body.as_str()), (404, NOT_FOUND), "{path}");
        assert_eq!(answer.header("content-type"), "application/json;charset=UTF-8");
    }
    let xml = client.send(client.authed(Method::GET, "/nope").header("accept", "application/xml")).await;
    assert_eq!(xml.status, 404);
    assert_eq!(xml.xml().child("Error").child("errorCode").text, "NOT_FOUND");
    let grpc = client
        .send(client.request(Method::POST, "/convmsg.v1.Nope/Call").header("content-type", "application/grpc"))
        .await;
    assert_eq!(grpc.header("grpc-status"), "12");
    // The gRPC services and probes are still served.
    assert_eq!(client.send(client.request(Method::GET, "/healthz")).await.body, "ok");
    let fx = app.provision(1).await;
    assert!(app.conv().await.send_conversation_messages(fx.request()).await.is_ok());
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_is_json_parser_error_and_malformed_xml_is_xml_parser_error() {
    let app = spawn_app().await;
    let client = http(&app);
    for body in ["{\"inputs\": [", "", "inputs", "{\"inputs\": {}}", "[1]", "{\"inputs\": [7]}"] {
        let request = client.authed(Method::POST, ACTION).header("content-type", "application/json").body(body);
        let answer = client.send(request).await;
        assert_eq!(answer.status, 400, "{body:?}");
        assert_eq!(answer.json()[0]["errorCode"], "JSON_PARSER_ERROR", "{body:?}");
    }
    for body in ["<Inputs><inputs></Inputs>", "", "not xml", "<a/><b/>", "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"] {
        let request = client.authed(Method::POST, ACTION).header("content-type", "application/xml").body(body);
        let answer = client.send(request).await;
        assert_eq!(answer.status, 400, "{body:?}");
        assert_eq!(answer.json()[0]["errorCode"], "XML_PARSER_ERROR", "{body:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn other_media_types_are_415_unsupported_media_type() {
    let app = spawn_app().await;
    let client = http(&app);
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let request = client.authed(Method::POST, ACTION).header("content-type", content_type).body("inputs=1");
        let answer = client.send(request).await;
        assert_eq!(answer.status, 415, "{content_type}");
        assert_eq!(answer.json()[0]["errorCode"], "UNSUPPORTED_MEDIA_TYPE", "{content_type}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_salesforce_json() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let mut big = input(&fx);
    big["messageDefinitionName"] = json!("x".repeat(1_048_576));
    let answer = client.invoke(json!({ "inputs": [big] })).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.json()[0]["errorCode"], "EXCEEDED_MAX_SIZE_REQUEST");
    // A configured limit applies the same way, and a body just under it is read.
    let small = spawn_app_with(|c| c.rest.body_limit_bytes = 2048).await;
    let fx = small.provision(1).await;
    let client = http(&small);
    assert_eq!(client.invoke(json!({ "inputs": [input(&fx)] })).await.status, 200);
    let mut big = input(&fx);
    big["messageDefinitionName"] = json!("x".repeat(4096));
    assert_eq!(client.invoke(json!({ "inputs": [big] })).await.status, 413);
    small.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn hostile_bodies_are_client_errors_never_server_errors() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let deep_json = format!("{{\"inputs\":{}{}", "[".repeat(10_000), "]".repeat(10_000)) + "}";
    let deep_xml = format!("<Inputs>{}", "<inputs>".repeat(10_000));
    let mut bodies: Vec<(&str, String)> = vec![
        ("application/json", deep_json),
        ("application/xml", deep_xml),
        (
            "application/json",
            r#"{"inputs":[{"messagingEndUserIds":[[["x"]]],"messageDefinitionName":{"a":[1]}}]}"#.into(),
        ),
        ("application/json", r#"{"inputs":[{"messagingDefinitionInputParameters":[{"name":1e400}]}]}"#.into()),
        (
            "application/json",
            format!(
                r#"{{"inputs":[{{"messageDefinitionName":"{}","messagingEndUserIds":"{}"}}]}}"#,
                "\\u0000",
                ",".repeat(1000)
            ),
        ),
        (
            "application/xml",
            "<Inputs><inputs><messagingEndUserIds xsi:nil=\"maybe\">\u{1}</messagingEndUserIds></inputs></Inputs>"
                .into(),
        ),
        ("application/xml", "\u{feff}<?xml version=\"1.0\"?><Inputs><inputs/></Inputs>".into()),
    ];
    let mut many = input(&fx);
    many["messagingEndUserIds"] = json!(vec!["0PA000000000000"; 101]);
    bodies.push(("application/json", json!({ "inputs": [many] }).to_string()));
    for (content_type, body) in bodies {
        let request = client
            .authed(Method::POST, ACTION)
            .header("content-type", content_type)
            .header("accept", "application/xml")
            .body(body.clone());
        let answer = client.send(request).await;
        assert!((400..500).contains(&answer.status), "{} for {content_type} {:.80}", answer.status, body);
        let root = answer.xml(); // always a well-formed document
        assert!(root.name == "Errors" || root.name == "Results", "{}", answer.body);
    }
    let weird_header = client
        .authed(Method::POST, ACTION)
        .header("idempotency-key", HeaderValue::from_bytes(b"\xff\xfe").unwrap())
        .json(&json!({ "inputs": [input(&fx)] }));
    assert_eq!(client.send(weird_header).await.status, 400);
    app.stop().await;
}
