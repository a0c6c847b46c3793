//! The accept path over gRPC: validation names fields, accepted requests are recorded
//! whole, idempotency, auth and tenancy.

use convmsg::grpc::pb;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn a_valid_request_is_answered_with_a_request_id_and_one_uuid_per_recipient_in_order() {
    // No dispatcher: the record is read as accepted, before any delivery could start.
    let app = spawn_app_with(|c| c.dispatch.enabled = false).await;
    let fx = app.provision(3).await;
    let reply = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    assert_eq!(reply.request_id.len(), 18);
    assert!(reply.request_id.starts_with("1sr"));
    assert_eq!(reply.message_identifiers.len(), 3);
    for id in &reply.message_identifiers {
        assert!(uuid::Uuid::parse_str(id).is_ok() && *id == id.to_lowercase(), "{id}");
    }

    let record = app
        .conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: reply.request_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(record.id, reply.request_id);
    assert_eq!(record.name, "MSJ-00000001");
    assert_eq!(record.message_definition, fx.definition.api_name);
    assert_eq!(record.request_status, pb::RequestStatus::Pending as i32);
    assert_eq!((record.total_message_count, record.pending_message_count), (3, 3));
    let ids: Vec<&str> = record.messages.iter().map(|m| m.message_identifier.as_str()).collect();
    assert_eq!(ids, reply.message_identifiers.iter().map(String::as_str).collect::<Vec<_>>());
    let users: Vec<&str> = record.messages.iter().map(|m| m.messaging_end_user_id.as_str()).collect();
    assert_eq!(users, fx.end_user_ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!record.should_enforce_channel_consent);
    assert_eq!(record.allow_existing_session_status, pb::AllowedSessionStatus::Any as i32);
    assert_eq!(record.request_consent_type, pb::ChannelConsentType::MessagingEndUser as i32);
    assert_eq!(record.message_definition_parameters, vec![text_param("CustomerName", "Ada")]);
    app.stop().await;
}

#[tokio::test]
async fn a_missing_required_parameter_is_invalid_argument_naming_it_and_records_nothing() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let mut request = fx.request();
    request.messaging_definition_input_parameters.clear();
    let status = app.conv().await.send_conversation_messages(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(error_code(&status), "REQUIRED_FIELD_MISSING");
    assert_eq!(violations(&status)[0].0, "messagingDefinitionInputParameters.CustomerName");
    // Nothing recorded: the next accepted request is still the tenant's first.
    let reply = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    let record = app
        .conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: reply.request_id })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap();
    assert_eq!(record.name, "MSJ-00000001");
}

async fn send_err(app: &TestApp, request: pb::SendConversationMessagesRequest) -> tonic::Status {
    app.conv().await.send_conversation_messages(request).await.expect_err("the request must be refused")
}

/// Asserts INVALID_ARGUMENT with `code`, and a violation on `field`.
fn assert_refused(status: &tonic::Status, code: &str, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(error_code(status), code, "{status:?}");
    let fields: Vec<String> = violations(status).into_iter().map(|(f, _)| f).collect();
    assert!(fields.iter().any(|f| f == field), "expected a violation on {field}, got {fields:?}");
}

#[tokio::test]
async fn every_validation_rule_is_refused_with_a_field_named_violation() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let other = app.provision_as(&app.other_token.clone(), 1).await;
    let mut admin = app.admin().await;
    use pb::message_definition_input_parameter::Value;

    // Unknown, inactive and non-Notification components.
    let mut r = fx.request();
    r.message_definition_name = "NoSuchComponent".into();
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "messageDefinitionName");
    let mut inactive = notice_definition("Inactive");
    inactive.is_active = false;
    admin
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest { message_definition: Some(inactive) })
        .await
        .unwrap();
    let mut r = fx.request();
    r.message_definition_name = "Inactive".into();
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "messageDefinitionName");
    let mut action = notice_definition("AnAction");
    action.r#type = pb::DefinitionType::Action as i32;
    admin
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest { message_definition: Some(action) })
        .await
        .unwrap();
    let mut r = fx.request();
    r.message_definition_name = "AnAction".into();
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "messageDefinitionName");
    let mut r = fx.request();
    r.message_definition_name = String::new();
    assert_refused(&send_err(&app, r).await, "REQUIRED_FIELD_MISSING", "messageDefinitionName");

    // Parameters: wrong type, unknown, no value, bad date, list vs scalar.
    let mut r = fx.request();
    r.messaging_definition_input_parameters[0].value = Some(Value::NumberValue(5.0));
    assert_refused(&send_err(&app, r).await, "INVALID_TYPE", "messagingDefinitionInputParameters[0].CustomerName");
    let mut r = fx.request();
    r.messaging_definition_input_parameters.push(text_param("Nickname", "x"));
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "messagingDefinitionInputParameters[1].Nickname");
    let mut r = fx.request();
    r.messaging_definition_input_parameters[0].value = None;
    assert_refused(
        &send_err(&app, r).await,
        "REQUIRED_FIELD_MISSING",
        "messagingDefinitionInputParameters[0].CustomerName",
    );
    let mut r = fx.request();
    r.messaging_definition_input_parameters.push(pb::MessageDefinitionInputParameter {
        name: "DueDate".into(),
        value: Some(Value::DateValue("2026-02-30".into())),
    });
    assert_refused(&send_err(&app, r).await, "INVALID_TYPE", "messagingDefinitionInputParameters[1].DueDate");
    let mut r = fx.request();
    r.messaging_definition_input_parameters.push(text_param("Tags", "one"));
    assert_refused(&send_err(&app, r).await, "INVALID_TYPE", "messagingDefinitionInputParameters[1].Tags");

    // Recipients: none, 101, duplicate (15 vs 18 characters), malformed, unknown, another tenant's.
    let mut r = fx.request();
    r.messaging_end_user_ids.clear();
    assert_refused(&send_err(&app, r).await, "REQUIRED_FIELD_MISSING", "messagingEndUserIds");
    let mut r = fx.request();
    r.messaging_end_user_ids = vec![fx.end_user_ids[0].clone(); 101];
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "messagingEndUserIds");
    let mut r = fx.request();
    r.messaging_end_user_ids = vec![fx.end_user_ids[0].clone(), fx.end_user_ids[0][..15].to_owned()];
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "messagingEndUserIds[1]");
    let mut r = fx.request();
    r.messaging_end_user_ids.push("0PAnot-an-id".into());
    assert_refused(&send_err(&app, r).await, "MALFORMED_ID", "messagingEndUserIds[2]");
    let mut r = fx.request();
    let mut wrong_checksum = fx.end_user_ids[0].clone();
    wrong_checksum.replace_range(15.., if wrong_checksum.ends_with("AAA") { "AAB" } else { "AAA" });
    r.messaging_end_user_ids = vec![wrong_checksum];
    assert_refused(&send_err(&app, r).await, "MALFORMED_ID", "messagingEndUserIds[0]");
    let mut r = fx.request();
    r.messaging_end_user_ids.push(other.end_user_ids[0].clone());
    assert_refused(&send_err(&app, r).await, "INVALID_ID_FIELD", "messagingEndUserIds[2]");

    // Enums and consent.
    let mut r = fx.request();
    r.request_type = 7;
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "requestType");
    let mut r = fx.request();
    r.allowed_session_status = 42;
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "allowedSessionStatus");
    let mut r = fx.request();
    r.channel_consent_type = pb::ChannelConsentType::CommunicationSubscription as i32;
    assert_refused(&send_err(&app, r).await, "REQUIRED_FIELD_MISSING", "communicationSubscriptionId");
    let mut r = fx.request();
    r.channel_consent_type = pb::ChannelConsentType::CommunicationSubscription as i32;
    r.communication_subscription_id = "0CsAAAAAAAAAAAA".into();
    assert_refused(&send_err(&app, r).await, "INVALID_ID_FIELD", "communicationSubscriptionId");
    let mut r = fx.request();
    r.channel_consent_type = pb::ChannelConsentType::Custom as i32;
    r.is_enforce_messaging_channel_consent = Some(true);
    assert_refused(&send_err(&app, r).await, "INVALID_INPUT", "channelConsentType");

    // None of the above recorded anything.
    let reply = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    let record = get_record(&app, &reply.request_id).await;
    assert_eq!(record.name, "MSJ-00000001");
}

async fn get_record(app: &TestApp, id: &str) -> pb::ConvMessageSendRequest {
    app.conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

#[tokio::test]
async fn every_typed_parameter_value_is_accepted_and_recorded() {
    use pb::message_definition_input_parameter::Value;
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let mut r = fx.request();
    r.messaging_definition_input_parameters.extend([
        pb::MessageDefinitionInputParameter { name: "Amount".into(), value: Some(Value::NumberValue(12.5)) },
        pb::MessageDefinitionInputParameter {
            name: "DueDate".into(),
            value: Some(Value::DateValue("2026-02-28".into())),
        },
        pb::MessageDefinitionInputParameter {
            name: "Tags".into(),
            value: Some(Value::TextValues(pb::TextValues { values: vec!["a".into(), "b".into()] })),
        },
    ]);
    let reply = app.conv().await.send_conversation_messages(r).await.unwrap().into_inner();
    let record = get_record(&app, &reply.request_id).await;
    let names: Vec<&str> = record.message_definition_parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Amount", "CustomerName", "DueDate", "Tags"]);
    assert_eq!(record.message_definition_parameters[0].value, Some(Value::NumberValue(12.5)));
    assert_eq!(
        record.message_definition_parameters[3].value,
        Some(Value::TextValues(pb::TextValues { values: vec!["a".into(), "b".into()] }))
    );
}

#[tokio::test]
async fn a_communication_subscription_request_is_accepted_when_the_subscription_exists() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let sub = app
        .admin()
        .await
        .upsert_communication_subscription(pb::UpsertCommunicationSubscriptionRequest {
            communication_subscription: Some(pb::CommunicationSubscription {
                developer_name: "Promotions".into(),
                messaging_channel_id: fx.channel.id.clone(),
                is_active: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .communication_subscription
        .unwrap();
    assert!(sub.id.starts_with("0Cs"));
    let mut r = fx.request();
    r.channel_consent_type = pb::ChannelConsentType::CommunicationSubscription as i32;
    r.communication_subscription_id = sub.id[..15].to_owned();
    r.is_enforce_messaging_channel_consent = Some(true);
    let reply = app.conv().await.send_conversation_messages(r).await.unwrap().into_inner();
    let record = get_record(&app, &reply.request_id).await;
    assert_eq!(record.comm_subscription_id, sub.id);
    assert!(record.should_enforce_channel_consent);
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_returns_the_first_answer_and_records_nothing_new() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let mut r = fx.request();
    r.idempotency_key = "order-42".into();
    let first = app.conv().await.send_conversation_messages(r.clone()).await.unwrap().into_inner();
    // The same request with its parameters given as 15-character ids is the same request.
    let mut again = r.clone();
    again.messaging_end_user_ids = fx.end_user_ids.iter().map(|id| id[..15].to_owned()).collect();
    let second = app.conv().await.send_conversation_messages(again).await.unwrap().into_inner();
    assert_eq!(first, second);

    let mut different = r.clone();
    different.messaging_definition_input_parameters = vec![text_param("CustomerName", "Bob")];
    let status = send_err(&app, different).await;
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(error_code(&status), "DUPLICATE_VALUE");
    assert_eq!(violations(&status)[0].0, "idempotencyKey");
    assert!(status.message().contains("order-42"), "{}", status.message());

    // Nothing new was recorded: the next request is the tenant's second.
    let next = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    assert_eq!(get_record(&app, &next.request_id).await.name, "MSJ-00000002");

    // Keys are per tenant.
    let other = app.provision_as(&app.other_token.clone(), 1).await;
    let mut theirs = other.request();
    theirs.idempotency_key = "order-42".into();
    let reply = app.conv_as(Some(&app.other_token)).await.send_conversation_messages(theirs).await.unwrap();
    assert_ne!(reply.into_inner().request_id, first.request_id);
}

#[tokio::test]
async fn concurrent_accepts_share_commits_and_each_gets_its_own_name_and_messages() {
    let app = spawn_app().await;
    let fx = app.provision(3).await;
    let client = app.conv().await;
    let calls = (0..60).map(|_| {
        let mut client = client.clone();
        let r = fx.request();
        tokio::spawn(async move { client.send_conversation_messages(r).await.map(|r| r.into_inner()) })
    });
    let mut names = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        let reply = call.await.unwrap().expect("accepted");
        let record = get_record(&app, &reply.request_id).await;
        assert_eq!(record.total_message_count, 3);
        names.push(record.name);
    }
    names.sort();
    let expected: Vec<String> = (1..=60).map(|n| format!("MSJ-{n:08}")).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn cancelled_calls_leave_no_request_half_written() {
    let app = spawn_app().await;
    let fx = app.provision(50).await;
    let client = app.conv().await;
    let mut calls = Vec::new();
    for i in 0..40 {
        let mut client = client.clone();
        let mut r = fx.request();
        r.idempotency_key = format!("cancel-{i}");
        calls.push(tokio::spawn(async move { client.send_conversation_messages(r).await }));
    }
    // Cancel every call at whatever point it has reached.
    for (i, call) in calls.iter().enumerate() {
        if i % 2 == 0 {
            call.abort();
        }
    }
    for call in calls {
        let _ = call.await;
    }
    // Every recorded request is whole: 50 messages, and an idempotency entry.
    let rows = app
        .db
        .fetch_triples(
            "SELECT r.id, (SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id), \
             (SELECT COUNT(*) FROM idempotency_keys k WHERE k.request_id = r.id) FROM send_requests r",
        )
        .await;
    assert!(!rows.is_empty());
    for (id, messages, keys) in rows {
        assert_eq!((messages, keys), (50, 1), "request {id} is not whole");
    }
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated_and_missing_scopes_are_denied() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let no_token = app.conv_as(None).await.send_conversation_messages(fx.request()).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);
    let bad = app.conv_as(Some("cm_not-a-token")).await.send_conversation_messages(fx.request()).await.unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated);
    assert_eq!(error_code(&bad), "INVALID_SESSION_ID");

    let denied = app.conv_as(Some(&app.read_token)).await.send_conversation_messages(fx.request()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(error_code(&denied), "INSUFFICIENT_ACCESS");
    let denied =
        app.admin_as(Some(&app.read_token)).await.list_channels(pb::ListChannelsRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // The read scope reads.
    let reply = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    let read = app
        .conv_as(Some(&app.read_token))
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: reply.request_id.clone() })
        .await;
    assert!(read.is_ok());
}

#[tokio::test]
async fn another_tenants_request_is_not_found_like_an_unknown_one() {
    let app = spawn_app().await;
    let fx = app.provision(1).await;
    let reply = app.conv().await.send_conversation_messages(fx.request()).await.unwrap().into_inner();
    let theirs = app
        .conv_as(Some(&app.other_token))
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: reply.request_id.clone() })
        .await
        .unwrap_err();
    assert_eq!(theirs.code(), Code::NotFound);
    let unknown = app
        .conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: "1srAAAAAAAAAAAA".into() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // The same answer as for an id that does not exist: nothing tells the record is there.
    assert!(
        theirs.message().starts_with("no ConvMessageSendRequest")
            && unknown.message().starts_with("no ConvMessageSendRequest")
    );
    let malformed = app
        .conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!((malformed.code(), error_code(&malformed).as_str()), (Code::InvalidArgument, "MALFORMED_ID"));
}

#[tokio::test]
async fn one_idempotency_key_sent_many_times_at_once_records_one_request() {
    let app = spawn_accept_only().await;
    let fx = app.provision(2).await;
    let client = app.conv().await;
    let mut same = fx.request();
    same.idempotency_key = "burst-1".into();
    let mut other = fx.request();
    other.idempotency_key = "burst-1".into();
    other.messaging_definition_input_parameters = vec![text_param("CustomerName", "Bob")];
    // Sent together, most of them share one group commit.
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let mut client = client.clone();
            let request = if i % 3 == 2 { other.clone() } else { same.clone() };
            tokio::spawn(async move { (i % 3 == 2, client.send_conversation_messages(request).await) })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    // The first request to commit wins the key; every same request gets its answer, every other one a conflict.
    let winner_is_other = answers.iter().all(|(is_other, r)| r.is_ok() == *is_other);
    let accepted: Vec<_> = answers.iter().filter_map(|(_, r)| r.as_ref().ok().map(|r| r.get_ref().clone())).collect();
    assert!(accepted.windows(2).all(|w| w[0] == w[1]), "every accepted call got the same answer");
    for (is_other, r) in &answers {
        if *is_other != winner_is_other {
            assert_eq!(r.as_ref().unwrap_err().code(), Code::AlreadyExists);
        }
    }
    let rows = app.db.fetch_triples("SELECT id, CAST(0 AS BIGINT), CAST(0 AS BIGINT) FROM send_requests").await;
    assert_eq!(rows.len(), 1, "one request recorded");
    assert_eq!(rows[0].0, accepted[0].request_id);
}
