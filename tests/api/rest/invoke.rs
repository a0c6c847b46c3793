//! Invoking the action: the documented sample, inputs in JSON and XML, per-input
//! results and errors, limits, idempotency, versions.

use super::*;

#[tokio::test]
async fn the_documented_sample_input_returns_the_documented_sample_shape() {
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
