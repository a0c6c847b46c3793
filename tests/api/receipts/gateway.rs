//! A webhook gateway's acknowledgements and delivery failures, Salesforce-shaped and
//! signed per Standard Webhooks with the channel's webhook secret.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;

/// `whsec_` + base64 of the key bytes `gateway-key`.
const SECRET: &str = "whsec_Z2F0ZXdheS1rZXk=";
const KEY: &[u8] = b"gateway-key";

fn configured(c: &mut convmsg::config::Config) {
    c.providers.webhook.tenants.entry("default".into()).or_default().secret = Some(SECRET.into());
}

/// Posts `body` to `…/v1/{what}` as a Standard Webhooks sender: `webhook-signature` =
/// `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
async fn post(app: &TestApp, channel_id: &str, what: &str, body: &Value, key: &[u8], timestamp_s: i64) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).unwrap();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp_s}.").as_bytes());
    mac.update(&bytes);
    let signature = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    let answer = reqwest::Client::new()
        .post(format!("{}/receipts/webhook/{channel_id}/v1/{what}", app.url()))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp_s.to_string())
        .header("webhook-signature", signature)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

fn ack(identifier: &str, kind: &str, at_ms: i64) -> Value {
    json!({"acknowledgedConversationEntryIdentifier": identifier, "acknowledgementType": kind,
           "acknowledgementTimestamp": at_ms})
}

#[tokio::test]
async fn acknowledgements_are_matched_by_message_identifier_or_gateway_id_with_a_result_per_item() {
    let (app, fake) = spawn("webhook", configured).await;
    let (fx, request_id) = sent(&app, "webhook", 3).await;
    let m = messages(&app, &request_id).await;
    assert!(fake.sent().len() >= 3);
    let now = app.clock.now_ms();
    let body = json!({"acknowledgements": [
        ack(&m[0].message_identifier, "Delivered", now + 1_000),
        ack(&m[1].provider_message_id, "Read", now + 2_000),
        ack("4d7a1b2c-0000-4000-8000-000000000000", "Read", now),
        ack(&m[2].message_identifier, "Opened", now),
        ack(&m[0].message_identifier, "Delivered", now + 3_000),
    ]});
    let (status, answer) = post(&app, &fx.channel.id, "acknowledgement", &body, KEY, now / 1000).await;
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let summary: Vec<(bool, Value)> =
        results.iter().map(|r| (r["success"].as_bool().unwrap(), r["status"].clone())).collect();
    assert_eq!(
        summary,
        vec![
            (true, json!("Applied")),
            (true, json!("Applied")),
            (true, json!("Unknown")),
            (false, Value::Null),
            (true, json!("Unchanged")),
        ]
    );
    assert_eq!(results[3]["errorCode"], "INVALID_INPUT");
    assert!(results[3]["message"].as_str().unwrap().contains("acknowledgements[3].acknowledgementType"));
    let m = messages(&app, &request_id).await;
    assert_eq!((state(&m[0]), millis(&m[0].delivered_date)), (pb::DeliveryState::Delivered, Some(now + 1_000)));
    assert_eq!(state(&m[1]), pb::DeliveryState::Read);
    assert_eq!(state(&m[2]), pb::DeliveryState::Sent, "the invalid item wrote nothing");
    assert_eq!(receipts_counted(&app, "webhook", "unknown").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_failed_report_marks_the_message_undelivered_with_the_gateway_s_code() {
    let (app, _fake) = spawn("webhook", configured).await;
    let (fx, request_id) = sent(&app, "webhook", 1).await;
    let identifier = messages(&app, &request_id).await[0].message_identifier.clone();
    let body = json!({"failures": [{"conversationEntryIdentifier": identifier, "errorCode": "RecipientBlocked",
                                    "errorMessage": "blocked by the recipient", "failureTimestamp": app.clock.now_ms()}]});
    let (status, answer) = post(&app, &fx.channel.id, "delivery-failed", &body, KEY, app.clock.now_ms() / 1000).await;
    assert_eq!((status, answer["results"][0]["status"].clone()), (200, json!("Applied")));
    let m = messages(&app, &request_id).await.remove(0);
    assert_eq!((state(&m), m.delivery_error_code.as_str()), (pb::DeliveryState::Undelivered, "RecipientBlocked"));
    // A later delivered acknowledgement does not resurrect it.
    let late = json!({"acknowledgements": [ack(&identifier, "Delivered", app.clock.now_ms())]});
    let (_, answer) = post(&app, &fx.channel.id, "acknowledgement", &late, KEY, app.clock.now_ms() / 1000).await;
    assert_eq!(answer["results"][0]["status"], "Unchanged");
    app.stop().await;
}

#[tokio::test]
async fn gateway_calls_with_a_wrong_key_a_stale_timestamp_or_too_many_items_are_refused_and_write_nothing() {
    let (app, _fake) = spawn("webhook", configured).await;
    let (fx, request_id) = sent(&app, "webhook", 1).await;
    let identifier = messages(&app, &request_id).await[0].message_identifier.clone();
    let now_s = app.clock.now_ms() / 1000;
    let body = json!({"acknowledgements": [ack(&identifier, "Read", app.clock.now_ms())]});
    assert_eq!(post(&app, &fx.channel.id, "acknowledgement", &body, b"another key", now_s).await.0, 403);
    assert_eq!(post(&app, &fx.channel.id, "acknowledgement", &body, KEY, now_s - 301).await.0, 403, "a replay");
    let unsigned = reqwest::Client::new()
        .post(format!("{}/receipts/webhook/{}/v1/acknowledgement", app.url(), fx.channel.id))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let many: Vec<Value> = (0..26).map(|_| ack(&identifier, "Read", 0)).collect();
    let (status, _) =
        post(&app, &fx.channel.id, "acknowledgement", &json!({"acknowledgements": many}), KEY, now_s).await;
    assert_eq!(status, 400, "at most 25 per call");
    assert_eq!(state(&messages(&app, &request_id).await[0]), pb::DeliveryState::Sent, "nothing written");
    // Tenant other's channel is checked with tenant other's secret, which it has not.
    let theirs = app.provision_custom(&app.other_token.clone(), 1, |c| c.provider = "webhook".into()).await;
    assert_eq!(post(&app, &theirs.channel.id, "acknowledgement", &body, KEY, now_s).await.0, 403);
    app.stop().await;
}
