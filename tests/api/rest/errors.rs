//! Salesforce-shaped errors for every mistake a client can make: tokens, scopes, unknown
//! paths, malformed and oversized bodies, other media types, hostile input.

use super::*;

#[tokio::test]
async fn a_missing_or_bad_token_is_401_invalid_session_id_everywhere() {
    let app = spawn_accept_only().await;
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
        c.dispatch.enabled = false;
        c.tenants[0].tokens.push(TokenConfig {
            sha256: hash,
            scopes: vec!["send".into()],
            label: "send only".into(),
            expires_at: None,
        })
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
    let app = spawn_accept_only().await;
    let client = http(&app);
    for path in
        ["/nope", "/services/data/v65.0/sobjects/Account/001000000000001", "/services/data/v65.0/search", "/services"]
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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

#[tokio::test]
async fn a_call_past_the_servers_time_limit_is_503_server_unavailable_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.admission.request_timeout_ms = 300;
        c.database.acquire_timeout_ms = 20_000;
    })
    .await;
    let fx = app.provision(1).await;
    // Accepts wait inside the server while the database is locked from outside.
    let blocker = app.db.block_accepts().await;
    let answer = http(&app).invoke(json!({ "inputs": [input(&fx)] })).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()[0]["errorCode"], "SERVER_UNAVAILABLE");
    assert!(answer.json()[0]["message"].as_str().unwrap().contains("took longer than the server allows"));
    assert_eq!(answer.header("retry-after"), "1");
    // The refusal is written as the caller asked, like every other error of the bridge.
    let client = http(&app);
    let request = client
        .authed(Method::POST, ACTION)
        .header("accept", "application/xml")
        .json(&json!({ "inputs": [input(&fx)] }));
    let answer = client.send(request).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let root = answer.xml();
    assert_eq!(root.name, "Errors", "{}", answer.body);
    assert!(answer.body.contains("<errorCode>SERVER_UNAVAILABLE</errorCode>"), "{}", answer.body);
    assert_eq!(answer.header("retry-after"), "1");
    blocker.release().await;
    app.stop().await;
}
