//! The receipt settings through the real binary's variables: the public base URL a
//! Twilio signature is checked against, and the per-tenant and per-channel secrets the
//! providers' callbacks are checked with.

use base64::Engine;
use convmsg::domain::principal::generate_token;
use convmsg::grpc::pb;
use hmac::{Hmac, Mac};
use hmac_sha1::KeyInit;
use sha2::Sha256;

use super::process::{Serve, http, write_config};
use crate::helpers::TestDatabase;

fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let data: String = std::iter::once(url.to_owned()).chain(sorted.iter().map(|(k, v)| format!("{k}{v}"))).collect();
    let mut mac = <hmac_sha1::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes()).unwrap();
    hmac_sha1::Mac::update(&mut mac, data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac_sha1::Mac::finalize(mac).into_bytes())
}

fn hub_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[tokio::test]
async fn the_receipt_variables_set_the_public_url_and_the_secrets_callbacks_are_checked_with() {
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    let config = write_config(dir.path(), 0, None, &format!("bootstrap_token = \"{token}\""));
    let channels: String = [
        ("sms_tw", "twilio", "Text"),
        ("wa", "whatsapp", "WhatsApp"),
        ("wa_eu", "whatsapp", "WhatsApp"),
    ]
    .iter()
    .map(|(name, provider, kind)| {
        format!("\n[[channels]]\ndeveloper_name = \"{name}\"\nmessage_type = \"{kind}\"\nprovider = \"{provider}\"\n")
    })
    .collect();
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + &channels).unwrap();
    let db = TestDatabase::create().await;
    let server = Serve::in_dir(dir.path())
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", config.to_str().unwrap())
        .env("CONVMSG_RECEIPTS__PUBLIC_BASE_URL", "https://public.example.com/cm")
        .env("CONVMSG_RECEIPTS__TENANTS__default__TWILIO_AUTH_TOKEN", "twilio-from-env")
        .env("CONVMSG_RECEIPTS__TENANTS__default__WHATSAPP_APP_SECRET", "app-secret-from-env")
        .env("CONVMSG_RECEIPTS__TENANTS__default__WHATSAPP_VERIFY_TOKEN", "verify-from-env")
        .env("CONVMSG_RECEIPTS__TENANTS__default__CHANNELS__wa_eu__WHATSAPP_APP_SECRET", "eu-secret-from-env")
        .start()
        .await;
    let listed = server.admin(&token).await.list_channels(pb::ListChannelsRequest::default()).await.unwrap();
    let id_of =
        |name: &str| listed.get_ref().channels.iter().find(|c| c.developer_name == name).map(|c| c.id.clone()).unwrap();

    // Twilio signs the public URL, not the listener's.
    let path = format!("/receipts/twilio/{}", id_of("sms_tw"));
    let params = [("MessageSid", "SMunknown"), ("MessageStatus", "delivered")];
    let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params.iter()).finish();
    let post = |signed_url: String| {
        http()
            .post(format!("{}{path}", server.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", twilio_signature("twilio-from-env", &signed_url, &params))
            .body(body.clone())
            .send()
    };
    assert_eq!(post(format!("https://public.example.com/cm{path}")).await.unwrap().status(), 204);
    assert_eq!(post(format!("{}{path}", server.url())).await.unwrap().status(), 403);

    // WhatsApp: the tenant's verify token and app secret, and the channel's own secret.
    let challenge = http()
        .get(format!(
            "{}/receipts/whatsapp/{}?hub.mode=subscribe&hub.verify_token=verify-from-env&hub.challenge=42",
            server.url(),
            id_of("wa")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 200);
    assert_eq!(challenge.text().await.unwrap(), "42");
    let notification = br#"{"object":"whatsapp_business_account","entry":[]}"#;
    let notify = |channel: String, secret: &str| {
        http()
            .post(format!("{}/receipts/whatsapp/{channel}", server.url()))
            .header("X-Hub-Signature-256", hub_signature(secret, notification))
            .body(notification.to_vec())
            .send()
    };
    assert_eq!(notify(id_of("wa"), "app-secret-from-env").await.unwrap().status(), 200);
    assert_eq!(notify(id_of("wa_eu"), "app-secret-from-env").await.unwrap().status(), 403, "its own secret wins");
    assert_eq!(notify(id_of("wa_eu"), "eu-secret-from-env").await.unwrap().status(), 200);
    server.stop().await;
}
