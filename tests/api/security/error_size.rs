//! 16.7 — an error answer does not grow with the input: at most 20 violations are
//! listed (fewer when their text would make the answer too large for gRPC clients'
//! metadata limits), echoed values are cut and say how long they were, and the answer
//! says how many problems there were in all.

use convmsg::grpc::pb;
use tonic::Code;
use tonic_types::StatusExt;

use crate::helpers::*;

/// What grpc-core (the Python, C++, Ruby… clients) accepts by default in a response's
/// metadata, and the answers stay well under it.
const CLIENT_METADATA_LIMIT: usize = 8 * 1024;

#[tokio::test]
async fn a_send_with_100_four_kilobyte_bad_ids_gets_a_small_error_listing_20_and_counting_100() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let request = pb::SendConversationMessagesRequest {
        messaging_end_user_ids: (0..100).map(|i| format!("{i}{}", "x".repeat(4_000))).collect(),
        ..fx.request()
    };

    let status = app.conv().await.send_conversation_messages(request).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    let metadata = status.message().len() + status.details().len() * 4 / 3;
    assert!(metadata < CLIENT_METADATA_LIMIT * 3 / 4, "{metadata} bytes of error metadata");
    let details = status.get_error_details();
    let listed = &details.bad_request().expect("field violations").field_violations;
    assert!(listed.len() <= 21, "{} violations listed", listed.len());
    assert_eq!(listed[0].field, "messagingEndUserIds[0]");
    assert!(listed[0].description.contains("… (4001 characters)"), "{}", listed[0].description);
    assert!(listed.last().unwrap().description.contains("100 problems in all"), "{:?}", listed.last());
    assert_eq!(details.error_info().unwrap().metadata["violations"], "100");
    assert!(status.message().contains("and 99 more problems"), "{}", status.message());
}

#[tokio::test]
async fn a_one_megabyte_rest_body_full_of_unknown_keys_gets_a_small_answer() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let mut input = serde_json::Map::new();
    input.insert("messageDefinitionName".into(), fx.definition.api_name.clone().into());
    input.insert("messagingEndUserIds".into(), fx.end_user_ids.join(",").into());
    for i in 0..10_000 {
        input.insert(format!("unknownKey{i:05}{}", "k".repeat(80)), serde_json::Value::Null);
    }
    let body = serde_json::to_vec(&serde_json::json!({ "inputs": [input] })).unwrap();
    assert!(body.len() > 900_000 && body.len() < 1_048_576, "{}", body.len());

    let response = reqwest::Client::new()
        .post(format!("{}/services/data/v65.0/actions/standard/sendConversationMessages", app.url()))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    let answer = response.bytes().await.unwrap();
    assert!(answer.len() < 16 * 1024, "a {} byte answer", answer.len());
    let results: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let errors = results[0]["errors"].as_array().expect("errors");
    assert!(errors.len() <= 21, "{} entries", errors.len());
    let note = errors.last().unwrap()["message"].as_str().unwrap();
    assert!(note.contains("10000 problems in all"), "{note}");
}
