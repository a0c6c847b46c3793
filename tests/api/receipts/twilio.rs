//! Twilio status callbacks: form-encoded, signed in `X-Twilio-Signature` with the
//! account's auth token over the URL Twilio called and the sorted parameters.

use base64::Engine;
use hmac_sha1::{KeyInit, Mac};

use super::*;

const TOKEN: &str = "twilio-auth-token";

/// What Twilio sends: base64(HMAC-SHA1(token, url + each name and value, sorted by name)).
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = hmac_sha1::Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Posts a status callback for `sid` as Twilio would, signed for `signed_url` with
/// `token` (or unsigned); the HTTP status.
async fn callback(
    app: &TestApp,
    channel_id: &str,
    params: &[(&str, &str)],
    signing: Option<(&str, &str)>,
) -> reqwest::StatusCode {
    let path = format!("/receipts/twilio/{channel_id}");
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", app.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some((token, signed_url)) = signing {
        request = request.header("X-Twilio-Signature", twilio_signature(token, signed_url, params));
    }
    request.send().await.unwrap().status()
}

fn own_url(app: &TestApp, channel_id: &str) -> String {
    format!("{}/receipts/twilio/{channel_id}", app.url())
}

fn status<'a>(sid: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("AccountSid", "AC123"), ("MessageSid", sid), ("MessageStatus", status), ("To", "+15550100")]
}

#[tokio::test]
async fn twilio_callbacks_move_a_message_to_delivered_then_read_and_late_or_repeated_ones_change_nothing() {
    let (app, _fake) = spawn("twilio", |c| c.providers.twilio.auth_token = Some(TOKEN.into())).await;
    let (fx, request_id) = sent(&app, "twilio", 1).await;
    let before = messages(&app, &request_id).await.remove(0);
    assert_eq!(state(&before), pb::DeliveryState::Sent, "a Success message starts Sent");
    assert!(before.sent_date.is_some());
    let sid = before.provider_message_id.clone();
    let url = own_url(&app, &fx.channel.id);

    assert_eq!(callback(&app, &fx.channel.id, &status(&sid, "delivered"), Some((TOKEN, &url))).await, 204);
    let m = messages(&app, &request_id).await.remove(0);
    assert_eq!(state(&m), pb::DeliveryState::Delivered);
    assert_eq!(millis(&m.delivered_date), Some(app.clock.now_ms()));

    app.clock.advance_ms(5_000);
    assert_eq!(callback(&app, &fx.channel.id, &status(&sid, "read"), Some((TOKEN, &url))).await, 204);
    for late in ["sent", "delivered", "read", "queued"] {
        assert_eq!(callback(&app, &fx.channel.id, &status(&sid, late), Some((TOKEN, &url))).await, 204, "{late}");
    }
    let m = messages(&app, &request_id).await.remove(0);
    assert_eq!(state(&m), pb::DeliveryState::Read, "read never goes back");
    assert_eq!(millis(&m.read_date), Some(app.clock.now_ms()));
    assert_eq!(millis(&m.delivered_date), Some(app.clock.now_ms() - 5_000), "the first delivered time stays");
    assert_eq!(m.status, pb::MessageState::Success as i32, "Salesforce's status keeps its meaning");

    let rest = rest_record(&app, &request_id).await;
    assert_eq!(rest["ReadMessageIdentifiers"], m.message_identifier.as_str());
    assert_eq!(rest["SuccessMessageCount"], 1);
    assert_eq!(rest["DeliveredMessageIdentifiers"], serde_json::Value::Null);
    assert_eq!(receipts_counted(&app, "twilio", "applied").await, 2);
    assert_eq!(receipts_counted(&app, "twilio", "unchanged").await, 3, "queued reports nothing and is not counted");
    app.stop().await;
}

#[tokio::test]
async fn a_twilio_callback_unsigned_or_wrongly_signed_is_refused_and_writes_nothing() {
    let (app, _fake) = spawn("twilio", |c| c.providers.twilio.auth_token = Some(TOKEN.into())).await;
    let (fx, request_id) = sent(&app, "twilio", 1).await;
    let sid = messages(&app, &request_id).await[0].provider_message_id.clone();
    let url = own_url(&app, &fx.channel.id);
    let params = status(&sid, "delivered");
    assert_eq!(callback(&app, &fx.channel.id, &params, None).await, 401);
    assert_eq!(callback(&app, &fx.channel.id, &params, Some(("another-token", &url))).await, 403);
    let https = url.replacen("http://", "https://", 1);
    assert_eq!(callback(&app, &fx.channel.id, &params, Some((TOKEN, &https))).await, 403, "another URL was signed");
    // The signature covers every parameter: one changed after signing fails.
    let signature = twilio_signature(TOKEN, &url, &status(&sid, "read"));
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
    let answer = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    assert_eq!(state(&messages(&app, &request_id).await[0]), pb::DeliveryState::Sent, "nothing written");
    // A channel that is not Twilio's has no Twilio callback URL.
    let other = app.provision(1).await;
    assert_eq!(callback(&app, &other.channel.id, &params, Some((TOKEN, &own_url(&app, &other.channel.id)))).await, 404);
    app.stop().await;
}

#[tokio::test]
async fn an_undelivered_callback_records_twilio_s_error_code_and_an_unknown_sid_is_acknowledged_and_counted() {
    let (app, _fake) = spawn("twilio", |c| {
        let tenant = c.receipts.tenants.entry("default".into()).or_default();
        tenant.twilio_auth_token = Some("tenant-token".into());
    })
    .await;
    let (fx, request_id) = sent(&app, "twilio", 2).await;
    let sids: Vec<String> = messages(&app, &request_id).await.into_iter().map(|m| m.provider_message_id).collect();
    let url = own_url(&app, &fx.channel.id);
    let mut failed = status(&sids[0], "undelivered");
    failed.push(("ErrorCode", "30003"));
    assert_eq!(callback(&app, &fx.channel.id, &failed, Some(("tenant-token", &url))).await, 204);
    assert_eq!(
        callback(&app, &fx.channel.id, &status("SMunknown", "delivered"), Some(("tenant-token", &url))).await,
        204
    );
    let m = messages(&app, &request_id).await;
    assert_eq!((state(&m[0]), m[0].delivery_error_code.as_str()), (pb::DeliveryState::Undelivered, "30003"));
    assert!(m[0].undelivered_date.is_some());
    assert_eq!(state(&m[1]), pb::DeliveryState::Sent);
    let rest = rest_record(&app, &request_id).await;
    assert_eq!(rest["UndeliveredMessageIdentifiers"], m[0].message_identifier.as_str());
    assert_eq!(rest["UndeliveredMessageErrorCodes"], "30003");
    assert_eq!(receipts_counted(&app, "twilio", "unknown").await, 1);
    // Tenant other has no token of its own and there is no account-wide one: its
    // channel's callbacks cannot be checked, so they are refused.
    let theirs = app.provision_custom(&app.other_token.clone(), 1, |c| c.provider = "twilio".into()).await;
    let their_url = own_url(&app, &theirs.channel.id);
    let theirs_signed = Some(("tenant-token", their_url.as_str()));
    assert_eq!(callback(&app, &theirs.channel.id, &status(&sids[1], "read"), theirs_signed).await, 403);
    assert_eq!(state(&messages(&app, &request_id).await[1]), pb::DeliveryState::Sent);
    app.stop().await;
}

#[tokio::test]
async fn behind_a_proxy_the_public_base_url_is_the_url_twilio_signed() {
    let (app, _fake) = spawn("twilio", |c| {
        c.providers.twilio.auth_token = Some(TOKEN.into());
        c.receipts.public_base_url = Some("https://convmsg.example.com/messaging/".into());
    })
    .await;
    let (fx, request_id) = sent(&app, "twilio", 1).await;
    let sid = messages(&app, &request_id).await[0].provider_message_id.clone();
    let public = format!("https://convmsg.example.com/messaging/receipts/twilio/{}", fx.channel.id);
    let params = status(&sid, "delivered");
    assert_eq!(callback(&app, &fx.channel.id, &params, Some((TOKEN, &own_url(&app, &fx.channel.id)))).await, 403);
    assert_eq!(callback(&app, &fx.channel.id, &params, Some((TOKEN, &public))).await, 204);
    assert_eq!(state(&messages(&app, &request_id).await[0]), pb::DeliveryState::Delivered);
    app.stop().await;
}
