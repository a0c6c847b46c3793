//! The webhook provider against a receiver that verifies Standard Webhooks signatures.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use convmsg::providers::FailureReason;
use convmsg::providers::config::ProvidersConfig;
use convmsg::providers::{Provider, ProviderError, TemplateMessage};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::fake::{
    Captured, FakeServer, Reply, TIMEOUT_MS, assert_permanent, assert_transient, message, provider, refused_base_url,
    send,
};

/// The default signing secret: `whsec_` + base64 of "default-signing-key-for-tests".
const SECRET: &str = "whsec_ZGVmYXVsdC1zaWduaW5nLWtleS1mb3ItdGVzdHM=";
/// A channel's own secret: `whsec_` + base64 of "the-byoc-channel-own-key".
const CHANNEL_SECRET: &str = "whsec_dGhlLWJ5b2MtY2hhbm5lbC1vd24ta2V5";

/// Verifies per the Standard Webhooks spec, independently of the provider's code: the
/// signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is the base64
/// after `whsec_`, and the header holds space-separated `v1,<base64 HMAC-SHA256>` entries.
fn signature_is_valid(secret: &str, request: &Captured) -> bool {
    let (Some(id), Some(timestamp), Some(signatures)) =
        (request.header("webhook-id"), request.header("webhook-timestamp"), request.header("webhook-signature"))
    else {
        return false;
    };
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).expect("test secret is base64");
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(&signed);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    signatures.split(' ').any(|entry| entry.strip_prefix("v1,") == Some(expected.as_str()))
}

/// A receiver at `/hooks/convmsg` that, like a Standard Webhooks library, answers 401 to
/// a bad signature and otherwise what `reply` says.
async fn receiver(secret: &'static str, reply: impl Fn(&Captured) -> Reply + Send + Sync + 'static) -> FakeServer {
    FakeServer::start(move |request| {
        if request.path != "/hooks/convmsg" {
            return Reply::text(404, "no such hook");
        }
        if !signature_is_valid(secret, request) {
            return Reply::text(401, "bad signature");
        }
        reply(request)
    })
    .await
}

/// Webhook settings that reach the fakes on loopback over plain HTTP.
fn loopback_config() -> ProvidersConfig {
    let mut config = ProvidersConfig::default();
    config.webhook.allow_http = true;
    config.webhook.allowed_networks = vec!["127.0.0.0/8".into()];
    config
}

fn webhook_at(base_url: &str) -> (std::sync::Arc<dyn Provider>, convmsg::providers::OutboundMessage) {
    let mut config = loopback_config();
    config.webhook.secret = Some(SECRET.into());
    config.webhook.timeout_ms = TIMEOUT_MS;
    let mut message = message();
    message.channel_options.insert("url".into(), format!("{base_url}/hooks/convmsg"));
    (provider(&config, "webhook"), message)
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn a_webhook_delivery_is_a_signed_standard_webhooks_post_of_the_message() {
    let server = receiver(SECRET, |_| Reply::text(204, "")).await;
    let (webhook, mut message) = webhook_at(&server.base_url);
    message.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    let before = now_secs();

    let delivered = send(&*webhook, &message).await.expect("delivered");

    assert_eq!(delivered.provider_message_id.as_deref(), Some(message.message_identifier.as_str()));
    let request = server.only_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/convmsg");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("webhook-id"), Some(message.message_identifier.as_str()));
    let timestamp: i64 = request.header("webhook-timestamp").expect("a timestamp").parse().expect("unix seconds");
    assert!((before..=now_secs()).contains(&timestamp), "timestamp {timestamp} is now");
    assert!(request.header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));
    assert!(signature_is_valid(SECRET, &request), "the signature verifies per the spec");
    assert_eq!(request.header("traceparent"), message.traceparent.as_deref());

    let event = request.json();
    assert_eq!(event["type"], "conversation.message");
    let at = time::OffsetDateTime::parse(
        event["timestamp"].as_str().expect("a timestamp"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339");
    assert_eq!(at.unix_timestamp(), timestamp, "the payload and header timestamps agree");
    assert_eq!(
        event["data"],
        serde_json::json!({
            "tenant": "default",
            "message_identifier": message.message_identifier,
            "request_id": "1srxx0000000001AAA",
            "end_user_id": "0PAxx0000000001AAA",
            "recipient": "+15550123",
            "channel": "chan",
            "definition": "OrderShipped",
            "text": message.text,
        })
    );
}

#[tokio::test]
async fn a_template_travels_in_the_webhook_payload_when_the_message_has_one() {
    let server = receiver(SECRET, |_| Reply::text(200, "ok")).await;
    let (webhook, mut message) = webhook_at(&server.base_url);
    message.template = Some(TemplateMessage {
        name: "order_shipped".into(),
        language: "en_US".into(),
        body_parameters: vec!["Ada".into(), "42".into()],
    });

    send(&*webhook, &message).await.expect("delivered");

    assert_eq!(
        server.only_request().json()["data"]["template"],
        serde_json::json!({"name": "order_shipped", "language": "en_US", "body_parameters": ["Ada", "42"]})
    );
}

#[tokio::test]
async fn a_channel_own_secret_wins_over_the_default_secret() {
    let server = receiver(CHANNEL_SECRET, |_| Reply::text(200, "")).await;
    let mut config = loopback_config();
    config.webhook.secret = Some(SECRET.into());
    config.webhook.tenants.entry("default".into()).or_default().secrets.insert("byoc".into(), CHANNEL_SECRET.into());
    config.webhook.timeout_ms = TIMEOUT_MS;
    let webhook = provider(&config, "webhook");
    let mut message = message();
    message.channel_developer_name = "byoc".into();
    message.channel_options.insert("url".into(), format!("{}/hooks/convmsg", server.base_url));

    send(&*webhook, &message).await.expect("signed with the channel's secret");

    let request = server.only_request();
    assert!(signature_is_valid(CHANNEL_SECRET, &request));
    assert!(!signature_is_valid(SECRET, &request));
}

#[tokio::test]
async fn the_receivers_json_id_becomes_the_provider_message_id() {
    let server = receiver(SECRET, |_| Reply::json(202, serde_json::json!({"id": "evt_123"}))).await;
    let (webhook, message) = webhook_at(&server.base_url);

    let delivered = send(&*webhook, &message).await.expect("delivered");

    assert_eq!(delivered.provider_message_id.as_deref(), Some("evt_123"));
}

#[tokio::test]
async fn a_webhook_answering_429_with_retry_after_is_transient_for_that_long() {
    let server = receiver(SECRET, |_| Reply::text(429, "slow down").with_header("retry-after", "7")).await;
    let (webhook, message) = webhook_at(&server.base_url);

    let wait = assert_transient(send(&*webhook, &message).await);

    assert_eq!(wait, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn a_retry_after_http_date_is_honoured_as_the_time_until_then() {
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let server = receiver(SECRET, move |_| Reply::text(503, "maintenance").with_header("retry-after", &at)).await;
    let (webhook, message) = webhook_at(&server.base_url);

    let wait = assert_transient(send(&*webhook, &message).await).expect("a retry-after");

    assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120), "{wait:?}");
}

#[tokio::test]
async fn webhook_timeouts_and_server_errors_are_transient() {
    for status in [408, 500, 502, 503] {
        let server = receiver(SECRET, move |_| Reply::text(status, "try later")).await;
        let (webhook, message) = webhook_at(&server.base_url);
        assert_eq!(assert_transient(send(&*webhook, &message).await), None, "HTTP {status}");
    }
}

#[tokio::test]
async fn a_webhook_answering_410_fails_permanently_as_endpoint_gone() {
    let server = receiver(SECRET, |_| Reply::text(410, "gone")).await;
    let (webhook, message) = webhook_at(&server.base_url);

    assert_permanent(send(&*webhook, &message).await, FailureReason::EndpointGone);
}

#[tokio::test]
async fn other_webhook_refusals_fail_permanently_as_provider_rejected() {
    for status in [400, 401, 404, 422] {
        let server = receiver(SECRET, move |_| Reply::text(status, "no")).await;
        let (webhook, message) = webhook_at(&server.base_url);
        let detail = assert_permanent(send(&*webhook, &message).await, FailureReason::ProviderRejected);
        assert!(detail.contains(&status.to_string()), "{detail}");
    }
}

#[tokio::test]
async fn a_webhook_redirect_is_not_followed() {
    let server =
        receiver(SECRET, |_| Reply::text(307, "").with_header("location", "http://127.0.0.1:9/elsewhere")).await;
    let (webhook, message) = webhook_at(&server.base_url);

    assert_permanent(send(&*webhook, &message).await, FailureReason::ProviderRejected);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_webhook_that_never_answers_is_transient_after_the_configured_timeout() {
    let server = receiver(SECRET, |_| Reply::Hang).await;
    let (webhook, message) = webhook_at(&server.base_url);
    let started = std::time::Instant::now();

    assert_transient(send(&*webhook, &message).await);

    let took = started.elapsed();
    assert!(took >= Duration::from_millis(TIMEOUT_MS) && took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_refused_webhook_connection_is_transient() {
    let (webhook, message) = webhook_at(&refused_base_url());

    assert_transient(send(&*webhook, &message).await);
}

#[tokio::test]
async fn an_https_endpoint_whose_tls_handshake_fails_is_transient() {
    // The fake speaks plain HTTP, so the rustls (ring) handshake fails: this exercises the
    // TLS client path without any network.
    let server = receiver(SECRET, |_| Reply::text(200, "")).await;
    let (webhook, message) = webhook_at(&server.base_url.replace("http://", "https://"));

    match send(&*webhook, &message).await {
        Err(ProviderError::Transient { detail, .. }) => assert!(detail.contains("could not connect"), "{detail}"),
        other => panic!("expected a transient connect failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_channel_without_a_url_or_a_secret_is_misconfigured_and_nothing_is_sent() {
    let server = receiver(SECRET, |_| Reply::text(200, "")).await;
    let (webhook, mut message) = webhook_at(&server.base_url);
    message.channel_options.clear();
    let detail = assert_permanent(send(&*webhook, &message).await, FailureReason::ProviderMisconfigured);
    assert!(detail.contains("provider_options.url"), "{detail}");

    let mut config = loopback_config();
    config.webhook.timeout_ms = TIMEOUT_MS;
    let unsigned = provider(&config, "webhook");
    let (_, message) = webhook_at(&server.base_url);
    let detail = assert_permanent(send(&*unsigned, &message).await, FailureReason::ProviderMisconfigured);
    assert!(detail.contains("providers.webhook.tenants.default.secret"), "{detail}");

    assert!(server.requests().is_empty());
}
