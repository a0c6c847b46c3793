//! The WhatsApp provider against a fake Graph API (Cloud API `messages` endpoint).

use std::sync::Arc;
use std::time::Duration;

use convmsg::providers::FailureReason;
use convmsg::providers::config::ProvidersConfig;
use convmsg::providers::{OutboundMessage, Provider, TemplateMessage};
use serde_json::json;

use crate::fake::{
    Captured, FakeServer, Reply, TIMEOUT_MS, assert_permanent, assert_transient, message, provider, refused_base_url,
    send,
};

const TOKEN: &str = "EAAG-test-token";
const PHONE_NUMBER_ID: &str = "106540352242922";
const WAMID: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA";

/// A Graph API error answer, shaped as the Cloud API sends them.
fn graph_error(status: u16, code: i64, message: &str, details: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AbCdEf123"
        }}),
    )
}

/// The Cloud API as far as sending goes: `POST /v21.0/{phone_number_id}/messages` with a
/// Bearer token. Wrong path → Graph's "unknown path" error; wrong token → code 190;
/// otherwise whatever `reply` says (the success answer by default, see [`accepted`]).
async fn graph_api(reply: impl Fn(&Captured) -> Reply + Send + Sync + 'static) -> FakeServer {
    FakeServer::start(move |request| {
        let expected_path = format!("/v21.0/{PHONE_NUMBER_ID}/messages");
        if request.method != "POST" || request.path != expected_path {
            return graph_error(400, 100, "Unsupported post request.", "unknown path");
        }
        if request.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
            return graph_error(401, 190, "Invalid OAuth access token - Cannot parse access token", "");
        }
        reply(request)
    })
    .await
}

/// The Cloud API's answer to an accepted message.
fn accepted(request: &Captured) -> Reply {
    let to = request.json()["to"].as_str().unwrap_or_default().to_string();
    Reply::json(
        200,
        json!({
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": WAMID, "message_status": "accepted"}]
        }),
    )
}

fn whatsapp_at(base_url: &str, token: &str) -> (Arc<dyn Provider>, OutboundMessage) {
    let mut config = ProvidersConfig::default();
    config.whatsapp.base_url = base_url.into();
    config.whatsapp.access_token = Some(token.into());
    config.whatsapp.timeout_ms = TIMEOUT_MS;
    let mut message = message();
    message.recipient = "+1 (555) 010-0123".into();
    message.channel_options.insert("phone_number_id".into(), PHONE_NUMBER_ID.into());
    message.template = Some(TemplateMessage {
        name: "order_shipped".into(),
        language: "en_US".into(),
        body_parameters: vec!["Ada".into(), "42".into(), "2026-11-24".into()],
    });
    (provider(&config, "whatsapp"), message)
}

#[tokio::test]
async fn a_whatsapp_message_is_a_template_posted_with_the_bearer_token_and_its_body_parameters() {
    let server = graph_api(accepted).await;
    let (whatsapp, mut message) = whatsapp_at(&server.base_url, TOKEN);
    message.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());

    let delivered = send(&*whatsapp, &message).await.expect("delivered");

    assert_eq!(delivered.provider_message_id.as_deref(), Some(WAMID));
    let request = server.only_request();
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/v21.0/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(request.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("traceparent"), message.traceparent.as_deref());
    assert_eq!(
        request.json(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "15550100123",
            "type": "template",
            "template": {
                "name": "order_shipped",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "text": "Ada"},
                    {"type": "text", "text": "42"},
                    {"type": "text", "text": "2026-11-24"}
                ]}]
            },
            "biz_opaque_callback_data": message.message_identifier
        })
    );
}

#[tokio::test]
async fn a_template_without_parameters_is_sent_without_components() {
    let server = graph_api(accepted).await;
    let (whatsapp, mut message) = whatsapp_at(&server.base_url, TOKEN);
    if let Some(template) = &mut message.template {
        template.body_parameters.clear();
    }

    send(&*whatsapp, &message).await.expect("delivered");

    let body = server.only_request().json();
    assert_eq!(body["template"], json!({"name": "order_shipped", "language": {"code": "en_US"}}));
}

#[tokio::test]
async fn a_whatsapp_message_without_an_approved_template_fails_without_calling_meta() {
    let server = graph_api(accepted).await;
    let (whatsapp, mut message) = whatsapp_at(&server.base_url, TOKEN);
    message.template = None;

    assert_permanent(send(&*whatsapp, &message).await, FailureReason::ApprovedExternalTemplateRequired);
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_whatsapp_channel_without_a_phone_number_id_is_misconfigured() {
    let server = graph_api(accepted).await;
    let (whatsapp, mut message) = whatsapp_at(&server.base_url, TOKEN);
    message.channel_options.clear();

    let detail = assert_permanent(send(&*whatsapp, &message).await, FailureReason::ProviderMisconfigured);
    assert!(detail.contains("phone_number_id"), "{detail}");
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn a_whatsapp_message_outside_the_24_hour_window_fails_permanently_as_outside_messaging_window() {
    let server = graph_api(|_| {
        graph_error(
            400,
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed",
        )
    })
    .await;
    let (whatsapp, message) = whatsapp_at(&server.base_url, TOKEN);

    let detail = assert_permanent(send(&*whatsapp, &message).await, FailureReason::OutsideMessagingWindow);
    assert!(detail.contains("131047"), "{detail}");
}

#[tokio::test]
async fn a_rejected_whatsapp_token_fails_permanently_as_provider_auth_failed() {
    let server = graph_api(accepted).await;
    let (whatsapp, message) = whatsapp_at(&server.base_url, "EAAG-revoked");

    assert_permanent(send(&*whatsapp, &message).await, FailureReason::ProviderAuthFailed);
}

#[tokio::test]
async fn every_mapped_graph_error_code_gets_its_reason_or_is_transient() {
    // (code, HTTP status Meta answers with, expected reason; None = transient)
    let table: &[(i64, u16, Option<FailureReason>)] = &[
        (131047, 400, Some(FailureReason::OutsideMessagingWindow)),
        (130429, 400, None),
        (131056, 400, None),
        (131048, 400, None),
        (80007, 400, None),
        (4, 400, None),
        (1, 500, None),
        (2, 503, None),
        (131000, 500, None),
        (131016, 503, None),
        (133004, 503, None),
        (131026, 400, Some(FailureReason::InvalidRecipient)),
        (131030, 400, Some(FailureReason::InvalidRecipient)),
        (131021, 400, Some(FailureReason::InvalidRecipient)),
        (131050, 400, Some(FailureReason::EndUserIsNotOptedIn)),
        (132001, 404, Some(FailureReason::ApprovedExternalTemplateRequired)),
        (132015, 400, Some(FailureReason::ApprovedExternalTemplateRequired)),
        (132016, 400, Some(FailureReason::ApprovedExternalTemplateRequired)),
        (132000, 400, Some(FailureReason::TemplateRejected)),
        (132005, 400, Some(FailureReason::TemplateRejected)),
        (132007, 400, Some(FailureReason::TemplateRejected)),
        (132012, 400, Some(FailureReason::TemplateRejected)),
        (190, 401, Some(FailureReason::ProviderAuthFailed)),
        (0, 401, Some(FailureReason::ProviderAuthFailed)),
        (10, 403, Some(FailureReason::ProviderAuthFailed)),
        (200, 403, Some(FailureReason::ProviderAuthFailed)),
        // Not mapped: the HTTP status decides.
        (100, 400, Some(FailureReason::ProviderRejected)),
        (131049, 400, Some(FailureReason::ProviderRejected)),
        (999_999, 503, None),
    ];
    for &(code, status, expected) in table {
        let server = graph_api(move |_| graph_error(status, code, "error", "details")).await;
        let (whatsapp, message) = whatsapp_at(&server.base_url, TOKEN);
        let result = send(&*whatsapp, &message).await;
        match expected {
            Some(reason) => {
                let detail = assert_permanent(result, reason);
                assert!(detail.contains(&code.to_string()), "code {code}: {detail}");
            }
            None => {
                assert_transient(result);
            }
        }
    }
}

#[tokio::test]
async fn a_whatsapp_429_with_retry_after_is_transient_for_that_long() {
    let server = graph_api(|_| graph_error(429, 130429, "Rate limit hit", "").with_header("retry-after", "30")).await;
    let (whatsapp, message) = whatsapp_at(&server.base_url, TOKEN);

    assert_eq!(assert_transient(send(&*whatsapp, &message).await), Some(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_whatsapp_server_error_without_a_graph_body_is_transient() {
    let server = graph_api(|_| Reply::text(502, "<html>Bad Gateway</html>")).await;
    let (whatsapp, message) = whatsapp_at(&server.base_url, TOKEN);

    assert_transient(send(&*whatsapp, &message).await);
}

#[tokio::test]
async fn a_graph_api_that_never_answers_is_transient_after_the_configured_timeout() {
    let server = graph_api(|_| Reply::Hang).await;
    let (whatsapp, message) = whatsapp_at(&server.base_url, TOKEN);
    let started = std::time::Instant::now();

    assert_transient(send(&*whatsapp, &message).await);

    let took = started.elapsed();
    assert!(took >= Duration::from_millis(TIMEOUT_MS) && took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_refused_graph_api_connection_is_transient() {
    let (whatsapp, message) = whatsapp_at(&refused_base_url(), TOKEN);

    assert_transient(send(&*whatsapp, &message).await);
}
