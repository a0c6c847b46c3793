//! The accept path over gRPC: validation names fields, accepted requests are recorded
//! whole, idempotency, auth and tenancy.

use convmsg::grpc::pb;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn a_valid_request_is_answered_with_a_request_id_and_one_uuid_per_recipient_in_order() {
    let app = spawn_app().await;
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
