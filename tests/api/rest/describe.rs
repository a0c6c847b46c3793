//! The describe (GET, HEAD, If-Modified-Since), the action listings, the version list
//! and the OpenAPI document.

use super::*;

#[tokio::test]
async fn the_describe_shows_the_action_with_salesforce_s_parameter_keys() {
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    assert_eq!(
        client.get("/services/data/v66.0").await.json(),
        json!({"actions": "/services/data/v66.0/actions", "query": "/services/data/v66.0/query",
               "queryAll": "/services/data/v66.0/queryAll", "sobjects": "/services/data/v66.0/sobjects"})
    );
    let xml = client
        .send(client.authed(Method::GET, "/services/data/v66.0/actions/standard").header("accept", "text/xml"))
        .await;
    assert_eq!(xml.xml().child("actions").child("name").text, "sendConversationMessages");
    assert_eq!(client.send(client.request(Method::GET, "/services/data/v66.0/actions")).await.status, 401);
    // Salesforce's older `OAuth` scheme works as well as `Bearer`.
    let oauth = client
        .send(
            client
                .request(Method::GET, "/services/data/v66.0/actions")
                .header("authorization", format!("OAuth {}", app.token)),
        )
        .await;
    assert_eq!(oauth.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn the_version_list_runs_from_59_0_to_67_0_and_needs_no_token() {
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
