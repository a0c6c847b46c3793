//! Delivery receipts through the real server: fakes of Twilio, the WhatsApp Cloud API
//! and a webhook gateway call the receipt URLs signing exactly as the real services
//! document it (the signatures are written here from the documentation, not with
//! convmsg's code), and the record, the REST record, the status stream and the metrics
//! show the result. Messages are sent by an in-process provider standing in for the
//! channel's, so each test knows the provider message id a receipt names.

mod gateway;
mod twilio;
mod whatsapp;

use std::sync::Arc;

use convmsg::clock::Clock;
use convmsg::grpc::pb;

use crate::fake_provider::FakeProvider;
use crate::helpers::*;

/// A server whose `provider` is a fake, with the dispatcher driven by the test.
async fn spawn(provider: &'static str, adjust: impl FnOnce(&mut convmsg::config::Config)) -> (TestApp, FakeProvider) {
    let fake = FakeProvider::named(provider, convmsg::clock::ManualClock::new(0));
    let shared: Arc<dyn convmsg::providers::Provider> = Arc::new(fake.clone());
    let app = spawn_app_with_providers(
        |c| {
            c.dispatch.enabled = false;
            adjust(c);
        },
        vec![shared],
    )
    .await;
    fake.use_clock(app.clock.clone());
    (app, fake)
}

/// A request to `n` end users of a fresh `provider` channel, sent (the dispatcher run
/// until it completed); the fixture and the request id.
async fn sent(app: &TestApp, provider: &str, n: usize) -> (Fixture, String) {
    let fx = app.provision_custom(&app.token.clone(), n, |c| c.provider = provider.into()).await;
    let request_id =
        app.conv().await.send_conversation_messages(fx.request()).await.expect("accepted").into_inner().request_id;
    for _ in 0..10 {
        app.dispatcher.run_once().await.expect("dispatch");
        if record(app, &request_id).await.request_status == pb::RequestStatus::Completed as i32 {
            return (fx, request_id);
        }
    }
    panic!("request {request_id} did not complete");
}

async fn record(app: &TestApp, request_id: &str) -> pb::ConvMessageSendRequest {
    app.conv()
        .await
        .get_request_status(pb::GetRequestStatusRequest { request_id: request_id.into() })
        .await
        .expect("status")
        .into_inner()
        .request
        .expect("a record")
}

/// The request's messages, in recipient order.
async fn messages(app: &TestApp, request_id: &str) -> Vec<pb::MessageStatus> {
    record(app, request_id).await.messages
}

fn state(m: &pb::MessageStatus) -> pb::DeliveryState {
    pb::DeliveryState::try_from(m.delivery_state).expect("a known state")
}

fn millis(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

/// The value of `convmsg_receipts{provider,outcome}` on `/metrics` (0 when absent).
async fn receipts_counted(app: &TestApp, provider: &str, outcome: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", app.url())).await.unwrap().text().await.unwrap();
    let wanted = format!("convmsg_receipts_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&wanted)).map(|v| v.trim().parse().unwrap()).unwrap_or(0)
}

/// The REST record as JSON.
async fn rest_record(app: &TestApp, request_id: &str) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .get(format!("{}/services/data/v65.0/sobjects/ConvMessageSendRequest/{request_id}", app.url()))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json().await.unwrap()
}
