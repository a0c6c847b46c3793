//! Provider credentials and the trace exporter through the real binary's variables, as
//! the Kubernetes Secret sets them: each provider's request, seen by a local stand-in
//! for its API, carries exactly the credential the variable gave.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use convmsg::domain::principal::generate_token;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::process::{Running, Serve, write_config};
use super::receiver::{Receiver, Seen};
use crate::helpers::TestDatabase;

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Whether `seen` carries a Standard Webhooks signature made with `secret` (`whsec_…`).
fn signed_with(seen: &Seen, secret: &str) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", header(seen, "webhook-id"), header(seen, "webhook-timestamp")).as_bytes());
    mac.update(&seen.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header(seen, "webhook-signature").split(' ').any(|s| s == expected)
}

/// Starts a server on `dir`'s config file with `variables`, sends `Ping` to every end
/// user and waits until Completed; the database lives as long as the caller keeps it.
async fn send_through(dir: &std::path::Path, token: &str, variables: &[(&str, &str)]) -> (Running, TestDatabase) {
    let db = TestDatabase::create().await;
    let mut serve = Serve::in_dir(dir)
        .env("CONVMSG_DATABASE_URL", &db.url)
        .env("CONVMSG_CONFIG", dir.join("convmsg.toml").to_str().unwrap());
    for (name, value) in variables {
        serve = serve.env(name, value);
    }
    let server = serve.start().await;
    let users = server.end_user_ids(token).await;
    let id = server.send_ping(token, users).await;
    let done = server.completed(token, &id, Duration::from_secs(30)).await;
    assert_eq!(done.failed_message_count, 0, "{done:?}");
    (server, db)
}

#[tokio::test]
async fn the_webhook_secret_variables_sign_every_delivery_and_a_channel_entry_wins() {
    let (receiver, url) = Receiver::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    write_config(dir.path(), 1, Some(&format!("{url}/hook")), &format!("bootstrap_token = \"{token}\""));
    let shared = "whsec_c2hhcmVkLXNlY3JldC1mcm9tLXRoZS1lbnZpcm9ubWVudA==";
    let per_channel = "whsec_Y2hhbm5lbC1zZWNyZXQtZnJvbS10aGUtZW52aXJvbm1lbnQ=";

    // The receiver is plain HTTP on loopback, which webhook deliveries refuse by default.
    let reach = [
        ("CONVMSG_PROVIDERS__WEBHOOK__ALLOW_HTTP", "true"),
        ("CONVMSG_PROVIDERS__WEBHOOK__ALLOWED_NETWORKS", "[\"127.0.0.0/8\"]"),
    ];
    let with = |more: &[(&'static str, &'static str)]| reach.iter().chain(more).copied().collect::<Vec<_>>();

    let (server, _db) =
        send_through(dir.path(), &token, &with(&[("CONVMSG_PROVIDERS__WEBHOOK__SECRET", shared)])).await;
    server.stop().await;
    let first = receiver.seen().remove(0);
    assert!(signed_with(&first, shared), "signed with CONVMSG_PROVIDERS__WEBHOOK__SECRET: {first:?}");

    // The tenant's own default, named as the tenant is (the bootstrap token's tenant is `default`).
    let tenant_default = with(&[("CONVMSG_PROVIDERS__WEBHOOK__TENANTS__default__SECRET", per_channel)]);
    let (server, _db) = send_through(dir.path(), &token, &tenant_default).await;
    server.stop().await;
    let second = receiver.seen().remove(1);
    assert!(signed_with(&second, per_channel), "{second:?}");

    // The channel's own entry (named as written: the channel is `hooks`) wins over the tenant's default.
    let variables = with(&[
        ("CONVMSG_PROVIDERS__WEBHOOK__TENANTS__default__SECRET", shared),
        ("CONVMSG_PROVIDERS__WEBHOOK__TENANTS__default__SECRETS__hooks", per_channel),
    ]);
    let (server, _db) = send_through(dir.path(), &token, &variables).await;
    server.stop().await;
    let third = receiver.seen().remove(2);
    assert!(signed_with(&third, per_channel) && !signed_with(&third, shared), "{third:?}");
}

#[tokio::test]
async fn the_whatsapp_access_token_variable_is_the_bearer_token_of_every_call() {
    let (receiver, url) = Receiver::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    let config = format!(
        r#"bootstrap_token = "{token}"
[[channels]]
developer_name = "wa"
message_type = "WhatsApp"
provider = "whatsapp"
messaging_platform_key = "+15550100"
provider_options = {{ phone_number_id = "106540352242922" }}
[[definitions]]
api_name = "Ping"
text_layout = "ping"
[definitions.external_template]
template_name = "ping"
language = "en_US"
status = "Approved"
[[end_users]]
channel = "wa"
messaging_platform_key = "+15550123"
consent_status = "ExplicitlyOptedIn"
"#
    );
    std::fs::write(dir.path().join("convmsg.toml"), config).unwrap();
    let variables = [
        ("CONVMSG_PROVIDERS__WHATSAPP__BASE_URL", url.as_str()),
        ("CONVMSG_PROVIDERS__WHATSAPP__ACCESS_TOKEN", "EAAGfromTheEnvironment"),
    ];
    let (server, _db) = send_through(dir.path(), &token, &variables).await;
    server.stop().await;
    let call = receiver.seen().remove(0);
    assert_eq!(call.path, "/v21.0/106540352242922/messages");
    assert_eq!(header(&call, "authorization"), "Bearer EAAGfromTheEnvironment");
}

#[tokio::test]
async fn the_twilio_account_sid_and_auth_token_variables_authenticate_every_call() {
    let (receiver, url) = Receiver::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    let config = format!(
        r#"bootstrap_token = "{token}"
[[channels]]
developer_name = "sms_twilio"
message_type = "Text"
provider = "twilio"
messaging_platform_key = "+15550100"
[[definitions]]
api_name = "Ping"
text_layout = "ping"
[[end_users]]
channel = "sms_twilio"
messaging_platform_key = "+15550123"
consent_status = "ExplicitlyOptedIn"
"#
    );
    std::fs::write(dir.path().join("convmsg.toml"), config).unwrap();
    let variables = [
        ("CONVMSG_PROVIDERS__TWILIO__BASE_URL", url.as_str()),
        ("CONVMSG_PROVIDERS__TWILIO__ACCOUNT_SID", "ACfromTheEnvironment"),
        ("CONVMSG_PROVIDERS__TWILIO__AUTH_TOKEN", "0123456789"),
    ];
    let (server, _db) = send_through(dir.path(), &token, &variables).await;
    server.stop().await;
    let call = receiver.seen().remove(0);
    assert_eq!(call.path, "/2010-04-01/Accounts/ACfromTheEnvironment/Messages.json");
    let basic = format!("Basic {}", STANDARD.encode("ACfromTheEnvironment:0123456789"));
    assert_eq!(header(&call, "authorization"), basic, "the auth token of digits stays a string");
}

#[tokio::test]
async fn the_otlp_endpoint_variable_turns_trace_export_on() {
    let (collector, collector_url) = crate::telemetry::start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let token = generate_token();
    write_config(dir.path(), 1, None, &format!("bootstrap_token = \"{token}\""));
    let variables = [
        ("CONVMSG_TELEMETRY__OTLP_ENDPOINT", collector_url.as_str()),
        ("CONVMSG_TELEMETRY__EXPORT_INTERVAL_MS", "100"),
    ];
    let (server, _db) = send_through(dir.path(), &token, &variables).await;
    let exported = tokio::time::timeout(Duration::from_secs(20), async {
        while !collector.span_names().iter().any(|n| n == "dispatch.process") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(exported.is_ok(), "spans reached the collector: {:?}", collector.span_names());
    server.stop().await;
}
