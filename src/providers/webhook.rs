//! The `webhook` provider: a JSON POST to the channel's `provider_options.url`, signed
//! per Standard Webhooks (<https://www.standardwebhooks.com/>, spec/standard-webhooks.md
//! in github.com/standard-webhooks/standard-webhooks) so any of its receiver libraries
//! verifies it. For Bring-Your-Own-Channel, Apple Messages for Business and in-app
//! gateways. It must not send unsigned requests, follow redirects, or retry by itself;
//! the message identifier is the `webhook-id`, stable across the dispatcher's retries, so
//! receivers can deduplicate.
//!
//! Secrets are the tenant's: a channel is signed with its tenant's secret for that
//! channel, else its tenant's default secret; a tenant with neither gets
//! `ProviderMisconfigured`, never another tenant's key. The payload names its tenant
//! (`data.tenant`), inside what is signed, so a receiver shared by several tenants can
//! tell whose message it holds.
//!
//! Answers: 2xx → delivered (the provider id is the JSON `id` of the answer if there is
//! one, else the message identifier); 408, 429, 5xx, timeouts and connection errors →
//! transient (honouring `Retry-After`); 410 Gone → permanent `EndpointGone` (Standard
//! Webhooks lets a receiver answer 410 to ask the sender to stop, so it is kept apart
//! from other refusals for an operator to act on); any other answer → `ProviderRejected`.

use std::collections::BTreeMap;
use std::sync::Arc;
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
use super::guard::{Destinations, refusal_in};
use super::http::{
    build_guarded_client, is_transient_status, read_body, record_request, record_status, retry_after, snippet,
    transport_error,
};
use super::{Delivered, OutboundMessage, Provider, ProviderError, ProviderName, TemplateMessage, required_option};
use crate::domain::reason::FailureReason;

const NAME: ProviderName = ProviderName::Webhook;
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
    /// Resolves through the SSRF guard (`guard`), no proxy.
    client: reqwest::Client,
    /// Where URLs may point (scheme, addresses).
    destinations: Arc<Destinations>,
    keys: SigningKeys,
}

/// Every tenant's decoded signing keys: what signs a channel's deliveries also checks
/// its gateway's acknowledgements (`receipts::gateway`).
#[derive(Default)]
pub struct SigningKeys {
    tenants: BTreeMap<String, TenantKeys>,
}

/// One tenant's decoded signing keys.
#[derive(Default)]
struct TenantKeys {
    /// For the tenant's channels without their own.
    default: Option<Vec<u8>>,
    /// By channel developer name.
    channels: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for WebhookProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tenants: BTreeMap<&str, Vec<&String>> =
            self.keys.tenants.iter().map(|(t, keys)| (t.as_str(), keys.channels.keys().collect())).collect();
        f.debug_struct("WebhookProvider").field("channels_with_secrets", &tenants).finish_non_exhaustive()
    }
}

impl SigningKeys {
    /// Decodes every secret now: a malformed one fails at start, naming its setting, and
    /// so does the old tenant-blind `providers.webhook.secrets` table.
    pub fn from_config(config: &WebhookProviderConfig) -> anyhow::Result<SigningKeys> {
        if let Some(channel) = config.secrets.keys().next() {
            anyhow::bail!(
                "providers.webhook.secrets.{channel} is no longer read: it matched channels by developer name across \
                 tenants, so any tenant could name a channel {channel} and receive payloads signed with its secret. \
                 Put it under the tenant that owns the channel: [providers.webhook.tenants.<tenant>.secrets] \
                 {channel} = \"whsec_…\" (env: CONVMSG_PROVIDERS__WEBHOOK__TENANTS__<tenant>__SECRETS__<channel>)"
            );
        }
        let shorthand = WebhookProviderConfig::SHORTHAND_TENANT;
        if config.secret.is_some() && config.tenants.get(shorthand).is_some_and(|t| t.secret.is_some()) {
            anyhow::bail!(
                "providers.webhook.secret and providers.webhook.tenants.{shorthand}.secret are both set; the first is \
                 shorthand for the second: keep one"
            );
        }
        let mut tenants: BTreeMap<String, TenantKeys> = BTreeMap::new();
        if let Some(secret) = &config.secret {
            tenants.entry(shorthand.to_owned()).or_default().default =
                Some(decode_secret(secret, "providers.webhook.secret")?);
        }
        for (tenant, secrets) in &config.tenants {
            let keys = tenants.entry(tenant.clone()).or_default();
            if let Some(secret) = &secrets.secret {
                keys.default = Some(decode_secret(secret, &format!("providers.webhook.tenants.{tenant}.secret"))?);
            }
            for (channel, secret) in &secrets.secrets {
                let setting = format!("providers.webhook.tenants.{tenant}.secrets.{channel}");
                keys.channels.insert(channel.clone(), decode_secret(secret, &setting)?);
            }
        }
        Ok(SigningKeys { tenants })
    }

    /// The key of `tenant`'s channel `channel` (its own, else the tenant's default);
    /// never another tenant's.
    pub fn key_for(&self, tenant: &str, channel: &str) -> Option<&[u8]> {
        self.tenants
            .get(tenant)
            .and_then(|keys| keys.channels.get(channel).or(keys.default.as_ref()))
            .map(Vec::as_slice)
    }
}

impl WebhookProvider {
    pub fn from_config(config: &WebhookProviderConfig) -> anyhow::Result<WebhookProvider> {
        let keys = SigningKeys::from_config(config)?;
        let destinations = Arc::new(Destinations::new(config.allow_http, &config.allowed_networks)?);
        let client = build_guarded_client(Duration::from_millis(config.timeout_ms), destinations.clone())?;
        Ok(WebhookProvider { client, destinations, keys })
    }

    /// The key for the message's tenant and channel; never another tenant's.
    fn secret_for(&self, message: &OutboundMessage) -> Result<&[u8], ProviderError> {
        let (tenant, channel) = (&message.tenant, &message.channel_developer_name);
        self.keys.key_for(tenant, channel).ok_or_else(|| {
                ProviderError::permanent(
                    FailureReason::ProviderMisconfigured,
                    format!(
                        "no webhook signing secret for channel {channel} of tenant {tenant}: set \
                         providers.webhook.tenants.{tenant}.secrets.{channel} or providers.webhook.tenants.{tenant}.secret"
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
    format!("v1,{}", STANDARD.encode(signed_content_mac(key, id, timestamp, body).finalize().into_bytes()))
}

/// Whether a `webhook-signature` header (space-separated `v1,<base64>` entries, so a
/// sender can sign with an old and a new key while rotating) holds a signature of
/// `id`, `timestamp` and `body` with `key`. Compared in constant time.
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|signature| signed_content_mac(key, id, timestamp, body).verify_slice(&signature).is_ok())
}

/// HMAC-SHA256 over Standard Webhooks' signed content, `{id}.{timestamp}.{body}`.
fn signed_content_mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
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
    /// The tenant the message is for (signed with the rest).
    tenant: &'a str,
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
    fn name(&self) -> ProviderName {
        NAME
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let url = required_option(NAME, message, "url")?;
        let url = reqwest::Url::parse(url).map_err(|e| {
            ProviderError::permanent(
                FailureReason::ProviderMisconfigured,
                format!("channel {}: provider_options.url is not a URL: {e}", message.channel_developer_name),
            )
        })?;
        self.destinations.check_url(&url).map_err(|refused| refusal(message, &refused.0))?;
        let key = self.secret_for(message)?;

        let now = OffsetDateTime::now_utc();
        let timestamp = now.unix_timestamp();
        let event = Event {
            kind: EVENT_TYPE,
            timestamp: now.format(&Rfc3339).unwrap_or_default(),
            data: EventData {
                tenant: &message.tenant,
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
        let response = request.body(body).send().await.map_err(|e| match refusal_in(&e) {
            Some(refused) => refusal(message, &refused.0),
            None => transport_error(NAME, &e),
        })?;

        let status = response.status();
        record_status(status);
        let wait = retry_after(response.headers(), SystemTime::now());
        let answer = read_body(NAME, response).await?;
        if status.is_success() {
            // The receiver's id is shown to the tenant: only a short, printable one is kept.
            let id = serde_json::from_slice::<serde_json::Value>(&answer).ok().and_then(|v| match v.get("id") {
                Some(serde_json::Value::String(s)) if is_receiver_id(s) => Some(s.clone()),
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
            return Err(ProviderError::permanent(FailureReason::EndpointGone, detail));
        }
        Err(ProviderError::permanent(FailureReason::ProviderRejected, detail))
    }
}

/// Longest receiver id kept as the provider message id.
const MAX_RECEIVER_ID: usize = 255;

fn is_receiver_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_RECEIVER_ID && !id.chars().any(char::is_control)
}

/// A destination the guard refused: permanent, naming the channel.
fn refusal(message: &OutboundMessage, why: &str) -> ProviderError {
    ProviderError::permanent(
        FailureReason::DestinationNotAllowed,
        format!("channel {}: provider_options.url: {why}", message.channel_developer_name),
    )
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
    fn verification_accepts_the_published_vector_among_others_and_refuses_any_change() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "test").unwrap();
        let (id, ts, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert!(verify(&key, id, ts, body, good));
        assert!(verify(&key, id, ts, body, &format!("v1,bm90IGl0 {good}")), "any entry may match");
        assert!(!verify(&key, id, ts + 1, body, good));
        assert!(!verify(&key, "msg_other", ts, body, good));
        assert!(!verify(&key, id, ts, br#"{"test": 2432232315}"#, good));
        assert!(!verify(&key, id, ts, body, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
        assert!(!verify(b"another key", id, ts, body, good));
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
        config.tenants.entry("acme".into()).or_default().secrets.insert("byoc".into(), "plain-text".into());
        let err = WebhookProvider::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("providers.webhook.tenants.acme.secrets.byoc"), "{err}");
    }

    #[test]
    fn the_tenant_blind_secrets_table_is_refused_naming_what_to_write_instead() {
        let mut config = WebhookProviderConfig::default();
        config.secrets.insert("byoc".into(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
        let err = WebhookProvider::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("providers.webhook.secrets.byoc"), "{err}");
        assert!(err.contains("[providers.webhook.tenants.<tenant>.secrets]"), "{err}");
    }

    #[test]
    fn the_shorthand_and_the_default_tenants_own_secret_together_are_ambiguous() {
        let mut config = WebhookProviderConfig { secret: Some("whsec_YQ==".into()), ..Default::default() };
        config.tenants.entry("default".into()).or_default().secret = Some("whsec_Yg==".into());
        let err = WebhookProvider::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("providers.webhook.secret") && err.contains("tenants.default.secret"), "{err}");
    }
}
