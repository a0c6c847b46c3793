//! The ConvMessageSendRequest record in sObject shape: every field, 15/18-character ids,
//! field selection, tenancy, conditional GET, and that it cannot be written.

use super::*;

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
    let app = spawn_accept_only().await;
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
        "DeliveredMessageIdentifiers": null,
        "ReadMessageIdentifiers": null,
        "UndeliveredMessageIdentifiers": null,
        "UndeliveredMessageErrorCodes": null,
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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
    let app = spawn_accept_only().await;
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

#[tokio::test]
async fn a_custom_consent_request_shows_no_request_consent_type() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let client = http(&app);
    let mut body = input(&fx);
    body["channelConsentType"] = json!("Custom");
    body["isEnforceMessagingChannelConsent"] = json!(false);
    let (id, _) = client.accept(body).await;
    let record = client.record(&id).await;
    assert_eq!(record["RequestConsentType"], Value::Null);
    assert_eq!(record["ShouldEnforceChannelConsent"], false);
    app.stop().await;
}

#[tokio::test]
async fn a_delivered_record_lists_each_state_with_failure_reasons_in_identifier_order() {
    use convmsg::grpc::pb;
    use tokio_stream::StreamExt;
    let app = spawn_app().await;
    let fx = app.provision(3).await;
    // The second recipient opts out after being provisioned; consent is enforced at send time.
    let opted_out_key = app.end_user(&fx.end_user_ids[1]).await.messaging_platform_key;
    app.set_consent(&fx.end_user_ids[1], pb::ConsentStatus::OptedOut).await;
    let client = http(&app);
    let mut enforced = input(&fx);
    enforced["isEnforceMessagingChannelConsent"] = json!(true);
    let (id, identifiers) = client.accept(enforced).await;
    let identifiers: Vec<&str> = identifiers.split(',').collect();
    let mut stream = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest { request_id: id.clone(), follow_receipts: false })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(std::time::Duration::from_secs(30), async { while stream.next().await.is_some() {} })
        .await
        .expect("delivered");

    let record = client.record(&id).await;
    assert_eq!(record["RequestStatus"], "Completed");
    assert!(is_salesforce_datetime(&record["CompletedDate"]), "{}", record["CompletedDate"]);
    assert_eq!((record["SuccessMessageCount"].clone(), record["FailedMessageCount"].clone()), (json!(2), json!(1)));
    assert_eq!(record["PendingMessageCount"], 0);
    assert_eq!(record["SuccessMessageIdentifiers"], format!("{},{}", identifiers[0], identifiers[2]));
    assert_eq!(record["FailedMessageIdentifiers"], identifiers[1]);
    assert_eq!(record["FailedMessageErrorReasons"], "EndUserIsNotOptedIn");
    assert_eq!(record["FailedMeuPlatformKeys"], opted_out_key);
    assert_eq!(record["PendingMessageIdentifiers"], Value::Null);
    assert_eq!(record["InProgressMessageIdentifiers"], Value::Null);
}
