//! The delivery-control headers of the REST bridge (Salesforce's action has no such
//! inputs): `X-Convmsg-Priority` and `X-Convmsg-Send-At`, applied to every input of the call.

use super::*;

async fn grpc_record(app: &TestApp, id: &str) -> pb::ConvMessageSendRequest {
    app.conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .request
        .unwrap()
}

async fn invoke_with(app: &TestApp, fx: &Fixture, header: &str, value: &str) -> Answer {
    let client = http(app);
    client.send(client.authed(Method::POST, ACTION).header(header, value).json(&json!({ "inputs": [input(fx)] }))).await
}

#[tokio::test]
async fn the_priority_header_puts_every_input_in_its_lane_and_a_bad_value_is_a_400_naming_the_header() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let answer = invoke_with(&app, &fx, "X-Convmsg-Priority", "BULK").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.json()[0]["outputValues"]["requestId"].as_str().unwrap().to_owned();
    assert_eq!(grpc_record(&app, &id).await.priority, pb::Priority::Bulk as i32);
    // Without the header: transactional.
    let (id, _) = http(&app).accept(input(&fx)).await;
    assert_eq!(grpc_record(&app, &id).await.priority, pb::Priority::Transactional as i32);

    let answer = invoke_with(&app, &fx, "X-Convmsg-Priority", "urgent").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()[0]["errorCode"], "INVALID_INPUT", "{}", answer.body);
    assert!(answer.body.contains("X-Convmsg-Priority"), "{}", answer.body);
    app.stop().await;
}

#[tokio::test]
async fn the_send_at_header_schedules_the_request_and_a_bad_or_out_of_range_time_is_a_400_naming_it() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    // The test clock stands at 2026-01-01T00:00:00Z.
    let answer = invoke_with(&app, &fx, "X-Convmsg-Send-At", "2026-01-01T09:30:00Z").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.json()[0]["outputValues"]["requestId"].as_str().unwrap().to_owned();
    let r = grpc_record(&app, &id).await;
    assert_eq!(r.send_at.map(|t| t.seconds), Some(1_767_225_600 + 9 * 3600 + 1800));
    assert_eq!(r.request_status, pb::RequestStatus::Pending as i32);

    let answer = invoke_with(&app, &fx, "X-Convmsg-Send-At", "tomorrow").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(answer.body.contains("X-Convmsg-Send-At"), "{}", answer.body);

    // Parsed, but 36 days ahead: the input's error names sendAt.
    let answer = invoke_with(&app, &fx, "X-Convmsg-Send-At", "2026-02-06T00:00:00Z").await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let error = &answer.json()[0]["errors"][0];
    assert_eq!(error["fields"], json!(["sendAt"]), "{}", answer.body);
    assert_eq!(error["statusCode"], "INVALID_INPUT");
    app.stop().await;
}
