//! The `webhook` provider: a JSON POST to the channel's `provider_options.url`, signed
//! per Standard Webhooks (<https://www.standardwebhooks.com/>, spec/standard-webhooks.md
//! in github.com/standard-webhooks/standard-webhooks) so any of its receiver libraries
//! verifies it. For Bring-Your-Own-Channel, Apple Messages for Business and in-app
//! gateways. It must not send unsigned requests, follow redirects, or retry by itself;
//! the message identifier is the `webhook-id`, stable across the dispatcher's retries, so
//! receivers can deduplicate.
//!
//! Answers: 2xx → delivered (the provider id is the JSON `id` of the answer if there is
//! one, else the message identifier); 408, 429, 5xx, timeouts and connection errors →
//! transient (honouring `Retry-After`); 410 Gone → permanent `EndpointGone` (Standard
//! Webhooks lets a receiver answer 410 to ask the sender to stop, so it is kept apart
//! from other refusals for an operator to act on); any other answer → `ProviderRejected`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::config::WebhookProviderConfig;
use super::http::{
    build_client, is_transient_status, read_body, record_request, record_status, retry_after, snippet, transport_error,
};
use super::{Delivered, OutboundMessage, Provider, ProviderError, TemplateMessage, reason, required_option};

const NAME: &str = "webhook";
/// The Standard Webhooks secret prefix.
const SECRET_PREFIX: &str = "whsec_";
/// The `type` of every event this provider sends.
pub const EVENT_TYPE: &str = "conversation.message";

/// Secrets are base64; accept them with or without `=` padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub struct WebhookProvider {
    client: reqwest::Client,
    /// Decoded `providers.webhook.secret`, for channels without their own.
    default_secret: Option<Vec<u8>>,
    /// Decoded `providers.webhook.secrets`, by channel developer name.
    secrets: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for WebhookProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookProvider")
            .field("default_secret", &self.default_secret.as_ref().map(|_| "<redacted>"))
            .field("channels_with_secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WebhookProvider {
    /// Decodes every secret now: a malformed one fails at start, naming its setting.
    pub fn from_config(config: &WebhookProviderConfig) -> anyhow::Result<WebhookProvider> {
        let default_secret =
            config.secret.as_deref().map(|s| decode_secret(s, "providers.webhook.secret")).transpose()?;
        let mut secrets = BTreeMap::new();
        for (channel, secret) in &config.secrets {
            secrets.insert(channel.clone(), decode_secret(secret, &format!("providers.webhook.secrets.{channel}"))?);
        }
        let client = build_client(Duration::from_millis(config.timeout_ms))?;
        Ok(WebhookProvider { client, default_secret, secrets })
    }

    fn secret_for(&self, message: &OutboundMessage) -> Result<&[u8], ProviderError> {
        self.secrets
            .get(&message.channel_developer_name)
            .or(self.default_secret.as_ref())
            .map(Vec::as_slice)
            .ok_or_else(|| {
                ProviderError::permanent(
                    reason::PROVIDER_MISCONFIGURED,
                    format!(
                        "no webhook signing secret for channel {}: set providers.webhook.secrets.{} or \
                         providers.webhook.secret",
                        message.channel_developer_name, message.channel_developer_name
                    ),
                )
            })
    }
}

/// `whsec_<base64>` → the key bytes.
pub fn decode_secret(secret: &str, setting: &str) -> anyhow::Result<Vec<u8>> {
    let Some(encoded) = secret.trim().strip_prefix(SECRET_PREFIX) else {
        anyhow::bail!("{setting} must look like whsec_<base64>");
    };
    let key = LENIENT_BASE64
        .decode(encoded)
        .map_err(|e| anyhow::anyhow!("{setting}: the part after whsec_ is not base64: {e}"))?;
    if key.is_empty() {
        anyhow::bail!("{setting}: the key is empty");
    }
    Ok(key)
}

/// The `webhook-signature` value: `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[derive(Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    data: EventData<'a>,
}

#[derive(Serialize)]
struct EventData<'a> {
    message_identifier: &'a str,
    request_id: &'a str,
    end_user_id: &'a str,
    recipient: &'a str,
    channel: &'a str,
    definition: &'a str,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<EventTemplate<'a>>,
}

#[derive(Serialize)]
struct EventTemplate<'a> {
    name: &'a str,
    language: &'a str,
    body_parameters: &'a [String],
}

impl<'a> From<&'a TemplateMessage> for EventTemplate<'a> {
    fn from(t: &'a TemplateMessage) -> Self {
        EventTemplate { name: &t.name, language: &t.language, body_parameters: &t.body_parameters }
    }
}

#[async_trait]
impl Provider for WebhookProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let url = required_option(NAME, message, "url")?;
        let url =
            reqwest::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https")).ok_or_else(|| {
                ProviderError::permanent(
                    reason::PROVIDER_MISCONFIGURED,
                    format!(
                        "channel {}: provider_options.url = {url:?} is not an http(s) URL",
                        message.channel_developer_name
                    ),
                )
            })?;
        let key = self.secret_for(message)?;

        let now = OffsetDateTime::now_utc();
        let timestamp = now.unix_timestamp();
        let event = Event {
            kind: EVENT_TYPE,
            timestamp: now.format(&Rfc3339).unwrap_or_default(),
            data: EventData {
                message_identifier: &message.message_identifier,
                request_id: &message.request_id,
                end_user_id: &message.end_user_id,
                recipient: &message.recipient,
                channel: &message.channel_developer_name,
                definition: &message.definition_api_name,
                text: &message.text,
                template: message.template.as_ref().map(EventTemplate::from),
            },
        };
        // Signed bytes and sent bytes are the same buffer.
        let body = serde_json::to_vec(&event)
            .map_err(|e| ProviderError::transient(format!("webhook: cannot encode the event: {e}"), None))?;
        let signature = sign(key, &message.message_identifier, timestamp, &body);

        record_request(&http::Method::POST, &url, false);
        let mut request = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &message.message_identifier)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        if let Some(traceparent) = &message.traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.body(body).send().await.map_err(|e| transport_error(NAME, &e))?;

        let status = response.status();
        record_status(status);
        let wait = retry_after(response.headers(), SystemTime::now());
        let answer = read_body(NAME, response).await?;
        if status.is_success() {
            let id = serde_json::from_slice::<serde_json::Value>(&answer).ok().and_then(|v| match v.get("id") {
                Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            });
            return Ok(Delivered {
                provider_message_id: Some(id.unwrap_or_else(|| message.message_identifier.clone())),
            });
        }
        let detail = format!("webhook: HTTP {status}: {}", snippet(&answer));
        if is_transient_status(status) {
            return Err(ProviderError::transient(detail, wait));
        }
        if status == reqwest::StatusCode::GONE {
            return Err(ProviderError::permanent(reason::ENDPOINT_GONE, detail));
        }
        Err(ProviderError::permanent(reason::PROVIDER_REJECTED, detail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_standard_webhooks_test_vector() {
        // The vector every Standard Webhooks reference library tests against.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "test").unwrap();
        let signature = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_secret_without_the_whsec_prefix_or_not_base64_is_refused_naming_the_setting() {
        let err = decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "providers.webhook.secret").unwrap_err();
        assert!(err.to_string().contains("providers.webhook.secret"), "{err}");
        assert!(decode_secret("whsec_not*base64", "x").is_err());
        assert!(decode_secret("whsec_", "x").is_err());
    }

    #[test]
    fn a_malformed_secret_in_config_fails_at_start() {
        let mut config = WebhookProviderConfig::default();
        config.secrets.insert("byoc".into(), "plain-text".into());
        let err = WebhookProvider::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("providers.webhook.secrets.byoc"), "{err}");
    }
}
