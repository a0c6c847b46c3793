//! The Twilio provider against a fake Messages API.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use convmsg::providers::FailureReason;
use convmsg::providers::config::ProvidersConfig;
use convmsg::providers::{OutboundMessage, Provider};
use serde_json::json;

use crate::fake::{
    Captured, FakeServer, Reply, TIMEOUT_MS, assert_permanent, assert_transient, message, provider, refused_base_url,
    send,
};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "twilio-test-token";
const MESSAGE_SID: &str = "SM0123456789abcdef0123456789abcdef";

/// A Twilio REST error answer.
fn twilio_error(status: u16, code: i64, message: &str) -> Reply {
    Reply::json(
        status,
        json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status
        }),
    )
}

/// The Messages API as far as sending goes: `POST /2010-04-01/Accounts/{sid}/Messages.json`
/// with basic auth. Wrong path → 20404; wrong credentials → 401 with 20003; otherwise
/// whatever `reply` says (see [`queued`] for the success answer).
async fn messages_api(reply: impl Fn(&Captured) -> Reply + Send + Sync + 'static) -> FakeServer {
    FakeServer::start(move |request| {
        let expected_path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
        if request.method != "POST" || request.path != expected_path {
            return twilio_error(404, 20404, "The requested resource was not found");
        }
        let expected_auth = format!("Basic {}", STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}")));
        if request.header("authorization") != Some(expected_auth.as_str()) {
            return twilio_error(401, 20003, "Authenticate");
        }
        reply(request)
    })
    .await
}

/// Twilio's 201 answer for a queued message.
fn queued(request: &Captured) -> Reply {
    let form = request.form();
    Reply::json(
        201,
        json!({
            "sid": MESSAGE_SID,
            "account_sid": ACCOUNT_SID,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "error_code": null
        }),
    )
}

fn twilio_at(base_url: &str, token: &str) -> (Arc<dyn Provider>, OutboundMessage) {
    let mut config = ProvidersConfig::default();
    config.twilio.base_url = base_url.into();
    config.twilio.account_sid = Some(ACCOUNT_SID.into());
    config.twilio.auth_token = Some(token.into());
    config.twilio.timeout_ms = TIMEOUT_MS;
    (provider(&config, "twilio"), message())
}

#[tokio::test]
async fn a_twilio_message_is_a_form_post_with_basic_auth_and_the_idempotency_token() {
    let server = messages_api(queued).await;
    let (twilio, mut message) = twilio_at(&server.base_url, AUTH_TOKEN);
    message.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());

    let delivered = send(&*twilio, &message).await.expect("delivered");

    assert_eq!(delivered.provider_message_id.as_deref(), Some(MESSAGE_SID));
    let request = server.only_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"));
    assert_eq!(request.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(request.header("i-twilio-idempotency-token"), Some(message.message_identifier.as_str()));
    assert_eq!(request.header("traceparent"), message.traceparent.as_deref());
    let form = request.form();
    assert_eq!(
        form.into_iter().collect::<Vec<_>>(),
        vec![
            ("Body".to_string(), message.text.clone()),
            ("From".to_string(), "+15550100".to_string()),
            ("To".to_string(), "+15550123".to_string()),
        ]
    );
}

#[tokio::test]
async fn a_messaging_service_sid_on_the_channel_replaces_from() {
    let server = messages_api(queued).await;
    let (twilio, mut message) = twilio_at(&server.base_url, AUTH_TOKEN);
    message.channel_options.insert("messaging_service_sid".into(), "MG0123456789abcdef0123456789abcdef".into());

    send(&*twilio, &message).await.expect("delivered");

    let form = server.only_request().form();
    assert_eq!(form.get("MessagingServiceSid").map(String::as_str), Some("MG0123456789abcdef0123456789abcdef"));
    assert!(!form.contains_key("From"), "{form:?}");
}

#[tokio::test]
async fn a_twilio_channel_without_a_sender_is_misconfigured_and_nothing_is_sent() {
    let server = messages_api(queued).await;
    let (twilio, mut message) = twilio_at(&server.base_url, AUTH_TOKEN);
    message.channel_platform_key = String::new();

    let detail = assert_permanent(send(&*twilio, &message).await, FailureReason::ProviderMisconfigured);
    assert!(detail.contains("messaging_service_sid"), "{detail}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_twilio_unsubscribed_recipient_fails_permanently_as_not_opted_in() {
    let server = messages_api(|_| twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")).await;
    let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);

    let detail = assert_permanent(send(&*twilio, &message).await, FailureReason::EndUserIsNotOptedIn);
    assert!(detail.contains("21610"), "{detail}");
}

#[tokio::test]
async fn an_invalid_twilio_number_fails_permanently_as_invalid_recipient() {
    for code in [21211, 21614, 21612, 21635] {
        let server = messages_api(move |_| twilio_error(400, code, "The 'To' number is not valid")).await;
        let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);
        assert_permanent(send(&*twilio, &message).await, FailureReason::InvalidRecipient);
    }
}

#[tokio::test]
async fn a_wrong_twilio_sender_fails_permanently_as_misconfigured() {
    for code in [21212, 21606] {
        let server = messages_api(move |_| twilio_error(400, code, "The 'From' number is not valid")).await;
        let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);
        assert_permanent(send(&*twilio, &message).await, FailureReason::ProviderMisconfigured);
    }
}

#[tokio::test]
async fn wrong_twilio_credentials_fail_permanently_as_provider_auth_failed() {
    let server = messages_api(queued).await;
    let (twilio, message) = twilio_at(&server.base_url, "not-the-token");

    let detail = assert_permanent(send(&*twilio, &message).await, FailureReason::ProviderAuthFailed);
    assert!(detail.contains("20003"), "{detail}");
}

#[tokio::test]
async fn a_twilio_429_with_retry_after_is_transient_for_that_long() {
    let server = messages_api(|_| twilio_error(429, 20429, "Too Many Requests").with_header("retry-after", "3")).await;
    let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);

    assert_eq!(assert_transient(send(&*twilio, &message).await), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn twilio_server_errors_are_transient() {
    for status in [500, 503] {
        let server = messages_api(move |_| Reply::text(status, "upstream trouble")).await;
        let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);
        assert_eq!(assert_transient(send(&*twilio, &message).await), None, "HTTP {status}");
    }
}

#[tokio::test]
async fn any_other_twilio_refusal_fails_permanently_as_provider_rejected() {
    let server =
        messages_api(|_| twilio_error(400, 21617, "The concatenated message body exceeds the 1600 character limit"))
            .await;
    let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);

    let detail = assert_permanent(send(&*twilio, &message).await, FailureReason::ProviderRejected);
    assert!(detail.contains("21617"), "{detail}");
}

#[tokio::test]
async fn a_twilio_api_that_never_answers_is_transient_after_the_configured_timeout() {
    let server = messages_api(|_| Reply::Hang).await;
    let (twilio, message) = twilio_at(&server.base_url, AUTH_TOKEN);
    let started = std::time::Instant::now();

    assert_transient(send(&*twilio, &message).await);

    let took = started.elapsed();
    assert!(took >= Duration::from_millis(TIMEOUT_MS) && took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_refused_twilio_connection_is_transient() {
    let (twilio, message) = twilio_at(&refused_base_url(), AUTH_TOKEN);

    assert_transient(send(&*twilio, &message).await);
}
