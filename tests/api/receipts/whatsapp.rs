//! WhatsApp Cloud API webhooks: the verification handshake, and notifications signed in
//! `X-Hub-Signature-256` with the app secret over the raw body.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::*;

const APP_SECRET: &str = "meta-app-secret";
const VERIFY_TOKEN: &str = "meta-verify-token";

fn configured(c: &mut convmsg::config::Config) {
    let tenant = c.receipts.tenants.entry("default".into()).or_default();
    tenant.whatsapp_app_secret = Some(APP_SECRET.into());
    tenant.whatsapp_verify_token = Some(VERIFY_TOKEN.into());
}

/// Posts `body` as Meta does: `sha256=` + hex HMAC-SHA256(app secret, the raw bytes).
async fn notify(
    app: &TestApp,
    channel_id: &str,
    body: &serde_json::Value,
    secret: Option<&str>,
) -> reqwest::StatusCode {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut request = reqwest::Client::new()
        .post(format!("{}/receipts/whatsapp/{channel_id}", app.url()))
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&bytes);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        request = request.header("X-Hub-Signature-256", format!("sha256={hex}"));
    }
    request.body(bytes).send().await.unwrap().status()
}

/// A notification as the Cloud API sends it, with these `statuses`.
fn statuses(statuses: serde_json::Value) -> serde_json::Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                  "statuses": statuses}}]}]})
}

#[tokio::test]
async fn the_verification_handshake_answers_the_challenge_only_for_the_right_verify_token() {
    let (app, _fake) = spawn("whatsapp", configured).await;
    let fx = app.provision_custom(&app.token.clone(), 1, |c| c.provider = "whatsapp".into()).await;
    let url = format!("{}/receipts/whatsapp/{}", app.url(), fx.channel.id);
    let get = |token: &str| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("hub.mode", "subscribe"), ("hub.verify_token", token), ("hub.challenge", "1158201444")])
            .finish();
        reqwest::Client::new().get(format!("{url}?{query}")).send()
    };
    let answer = get(VERIFY_TOKEN).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "1158201444");
    assert_eq!(get("wrong").await.unwrap().status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_statuses_out_of_order_end_read_and_a_failure_is_undelivered_with_its_code() {
    let (app, _fake) = spawn("whatsapp", configured).await;
    let (fx, request_id) = sent(&app, "whatsapp", 2).await;
    let ids: Vec<String> = messages(&app, &request_id).await.into_iter().map(|m| m.provider_message_id).collect();
    let t = app.clock.now_ms() / 1000;
    // Read arrives before delivered (Meta does not promise order), in one notification,
    // and the second message fails.
    let body = statuses(json!([
        {"id": ids[0], "status": "read", "timestamp": (t + 20).to_string(), "recipient_id": "15551234567"},
        {"id": ids[0], "status": "delivered", "timestamp": (t + 10).to_string(), "recipient_id": "15551234567"},
        {"id": ids[1], "status": "failed", "timestamp": (t + 5).to_string(), "recipient_id": "15551234568",
         "errors": [{"code": 131026, "title": "Message undeliverable"}]},
        {"id": "wamid.unknown", "status": "delivered", "timestamp": t.to_string()},
    ]));
    assert_eq!(notify(&app, &fx.channel.id, &body, Some(APP_SECRET)).await, 200);
    // Meta retries notifications: the same one again changes nothing.
    assert_eq!(notify(&app, &fx.channel.id, &body, Some(APP_SECRET)).await, 200);
    let m = messages(&app, &request_id).await;
    assert_eq!(state(&m[0]), pb::DeliveryState::Read);
    assert_eq!(millis(&m[0].read_date), Some((t + 20) * 1000), "the provider's time");
    assert_eq!(millis(&m[0].delivered_date), Some((t + 10) * 1000));
    assert_eq!((state(&m[1]), m[1].delivery_error_code.as_str()), (pb::DeliveryState::Undelivered, "131026"));
    assert_eq!(receipts_counted(&app, "whatsapp", "applied").await, 3);
    assert_eq!(receipts_counted(&app, "whatsapp", "unchanged").await, 3);
    assert_eq!(receipts_counted(&app, "whatsapp", "unknown").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn a_whatsapp_notification_unsigned_or_signed_with_another_secret_is_refused_and_writes_nothing() {
    let (app, _fake) = spawn("whatsapp", configured).await;
    let (fx, request_id) = sent(&app, "whatsapp", 1).await;
    let id = messages(&app, &request_id).await[0].provider_message_id.clone();
    let body = statuses(json!([{"id": id, "status": "delivered", "timestamp": "1767225601"}]));
    assert_eq!(notify(&app, &fx.channel.id, &body, None).await, 401);
    assert_eq!(notify(&app, &fx.channel.id, &body, Some("another-secret")).await, 403);
    assert_eq!(state(&messages(&app, &request_id).await[0]), pb::DeliveryState::Sent);
    // Another tenant's channel: its own secret is needed (it has none), and even signed
    // right, a receipt never reaches a message of another channel.
    let theirs = app.provision_custom(&app.other_token.clone(), 1, |c| c.provider = "whatsapp".into()).await;
    assert_eq!(notify(&app, &theirs.channel.id, &body, Some(APP_SECRET)).await, 403);
    let other_channel = app.provision_custom(&app.token.clone(), 1, |c| c.provider = "whatsapp".into()).await;
    assert_eq!(notify(&app, &other_channel.channel.id, &body, Some(APP_SECRET)).await, 200);
    assert_eq!(state(&messages(&app, &request_id).await[0]), pb::DeliveryState::Sent);
    assert_eq!(receipts_counted(&app, "whatsapp", "unknown").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_status_stream_following_receipts_shows_them_and_ends_when_no_receipt_can_change_the_record() {
    use tokio_stream::StreamExt;
    let (app, _fake) = spawn("whatsapp", configured).await;
    let (fx, request_id) = sent(&app, "whatsapp", 1).await;
    let id = messages(&app, &request_id).await[0].provider_message_id.clone();
    let mut stream = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest { request_id: request_id.clone(), follow_receipts: true })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap().request.unwrap();
    assert_eq!(state(&first.messages[0]), pb::DeliveryState::Sent, "completed, but the stream goes on");
    for (status, expected) in [("delivered", pb::DeliveryState::Delivered), ("read", pb::DeliveryState::Read)] {
        let body = statuses(json!([{"id": id, "status": status, "timestamp": "1767225601"}]));
        assert_eq!(notify(&app, &fx.channel.id, &body, Some(APP_SECRET)).await, 200);
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .expect("a change within 10 s")
            .unwrap()
            .unwrap()
            .request
            .unwrap();
        assert_eq!(state(&next.messages[0]), expected);
    }
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next()).await.expect("the stream ends");
    assert!(end.is_none(), "read is final: the stream ends");
    // Without follow_receipts, a completed request's stream ends at once.
    let mut plain = app
        .conv()
        .await
        .watch_request_status(pb::WatchRequestStatusRequest { request_id, follow_receipts: false })
        .await
        .unwrap()
        .into_inner();
    assert!(plain.next().await.unwrap().is_ok());
    assert!(plain.next().await.is_none());
    app.stop().await;
}
