//! The `whatsapp` provider: Meta WhatsApp Cloud API template messages,
//! `POST {base_url}/{api_version}/{phone_number_id}/messages` with a Bearer token
//! (<https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages>).
//! Business-initiated WhatsApp messages must use an approved template, so a message
//! without one fails `ApprovedExternalTemplateRequired` before any call. It must not send
//! free-form text, and must not retry by itself. The message identifier travels as
//! `biz_opaque_callback_data`, which Meta echoes in its status webhooks.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::config::WhatsAppProviderConfig;
use super::http::{
    build_client, parse_base_url, read_body, record_request, record_status, retry_after, snippet, transport_error,
    url_with_segments,
};
use super::{
    Classification, Delivered, OutboundMessage, Provider, ProviderError, ProviderName, Unconfigured, required_option,
};
use crate::domain::reason::FailureReason;

const NAME: ProviderName = ProviderName::WhatsApp;

/// The registered provider: the real one, or [`Unconfigured`] when there is no token.
pub fn from_config(config: &WhatsAppProviderConfig) -> anyhow::Result<Arc<dyn Provider>> {
    let base_url = parse_base_url("providers.whatsapp.base_url", &config.base_url)?;
    if config.api_version.trim().is_empty() || config.api_version.contains('/') {
        anyhow::bail!("providers.whatsapp.api_version = {:?} must be one path segment like v21.0", config.api_version);
    }
    match config.access_token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => Ok(Arc::new(WhatsAppProvider {
            client: build_client(Duration::from_millis(config.timeout_ms))?,
            base_url,
            api_version: config.api_version.trim().to_string(),
            access_token: token.to_string(),
        })),
        _ => Ok(Arc::new(Unconfigured::new(NAME, vec!["providers.whatsapp.access_token"]))),
    }
}

pub struct WhatsAppProvider {
    client: reqwest::Client,
    base_url: reqwest::Url,
    api_version: String,
    access_token: String,
}

impl std::fmt::Debug for WhatsAppProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhatsAppProvider")
            .field("base_url", &self.base_url.as_str())
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SendTemplate<'a> {
    messaging_product: &'static str,
    recipient_type: &'static str,
    to: String,
    #[serde(rename = "type")]
    kind: &'static str,
    template: Template<'a>,
    biz_opaque_callback_data: &'a str,
}

#[derive(Serialize)]
struct Template<'a> {
    name: &'a str,
    language: Language<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<Component<'a>>,
}

#[derive(Serialize)]
struct Language<'a> {
    code: &'a str,
}

#[derive(Serialize)]
struct Component<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    parameters: Vec<TextParameter<'a>>,
}

#[derive(Serialize)]
struct TextParameter<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

/// A Graph API error answer: `{"error": {"message", "type", "code", "error_data": {"details"}, …}}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: String,
}

/// What a Graph API error code means for this message. `None` = not a code we know:
/// the HTTP status decides.
///
/// Codes and their meanings are Meta's "Error codes" page for the Cloud API
/// (<https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes>):
/// - 131047 "Re-engagement message" (more than 24 h since the user last replied) →
///   `OutsideMessagingWindow`.
/// - Throttling: 4 "API Too Many Calls", 80007 "Rate limit issues", 130429 "Rate limit
///   hit", 131048 "Spam rate limit hit", 131056 "(Business Account, Consumer Account)
///   pair rate limit hit" → transient.
/// - 1 "API Unknown", 2 "API Service" (temporary downtime or overload), 131000 "Something
///   went wrong", 131016 "Service unavailable", 133004 "Server temporarily unavailable" →
///   transient.
/// - 131026 "Message undeliverable" (not a WhatsApp user, or cannot receive), 131030
///   "Recipient phone number not in allowed list", 131021 "Recipient cannot be sender" →
///   `InvalidRecipient`.
/// - 131050 "User has stopped marketing messages" → `EndUserIsNotOptedIn`.
/// - 132001 "Template does not exist" (name or language), 132015 "Template is paused",
///   132016 "Template is disabled" → `ApprovedExternalTemplateRequired`: there is no
///   approved template to send.
/// - 132000 "Template param count mismatch", 132005 "Template hydrated text too long",
///   132007 "Template format character policy violated", 132012 "Template parameter
///   format mismatch" → `TemplateRejected`: the template exists, this rendering does not fit.
/// - 0 "AuthException", 190 "Access token has expired", 3 "API Method", 10 "Permission
///   denied", 200–299 "API Permission" → `ProviderAuthFailed`.
pub fn classify_code(code: i64) -> Option<Classification> {
    use Classification::*;
    Some(match code {
        131047 => Permanent(FailureReason::OutsideMessagingWindow),
        4 | 80007 | 130429 | 131048 | 131056 => Transient,
        1 | 2 | 131000 | 131016 | 133004 => Transient,
        131026 | 131030 | 131021 => Permanent(FailureReason::InvalidRecipient),
        131050 => Permanent(FailureReason::EndUserIsNotOptedIn),
        132001 | 132015 | 132016 => Permanent(FailureReason::ApprovedExternalTemplateRequired),
        132000 | 132005 | 132007 | 132012 => Permanent(FailureReason::TemplateRejected),
        0 | 3 | 10 | 190 | 200..=299 => Permanent(FailureReason::ProviderAuthFailed),
        _ => return None,
    })
}

/// The digits of a phone number: `+1 (555) 010-0123` → `15550100123`.
fn digits(recipient: &str) -> String {
    recipient.chars().filter(char::is_ascii_digit).collect()
}

#[async_trait]
impl Provider for WhatsAppProvider {
    fn name(&self) -> ProviderName {
        NAME
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let Some(template) = &message.template else {
            return Err(ProviderError::permanent(
                FailureReason::ApprovedExternalTemplateRequired,
                format!(
                    "whatsapp: definition {} has no approved external template; WhatsApp accepts only \
                     template messages outside a customer-service window",
                    message.definition_api_name
                ),
            ));
        };
        let phone_number_id = required_option(NAME, message, "phone_number_id")?;
        let to = digits(&message.recipient);
        if to.is_empty() {
            return Err(ProviderError::permanent(
                FailureReason::InvalidRecipient,
                format!("whatsapp: recipient {} has no digits", crate::telemetry::mask(&message.recipient)),
            ));
        }
        let components = if template.body_parameters.is_empty() {
            Vec::new()
        } else {
            vec![Component {
                kind: "body",
                parameters: template.body_parameters.iter().map(|text| TextParameter { kind: "text", text }).collect(),
            }]
        };
        let body = SendTemplate {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to,
            kind: "template",
            template: Template { name: &template.name, language: Language { code: &template.language }, components },
            biz_opaque_callback_data: &message.message_identifier,
        };
        let url = url_with_segments(&self.base_url, &[&self.api_version, phone_number_id, "messages"])?;

        record_request(&http::Method::POST, &url, true);
        let mut request = self.client.post(url).bearer_auth(&self.access_token).json(&body);
        if let Some(traceparent) = &message.traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.map_err(|e| transport_error(NAME, &e))?;

        let status = response.status();
        record_status(status);
        let wait = retry_after(response.headers(), SystemTime::now());
        let answer = read_body(NAME, response).await?;
        if status.is_success() {
            let id = serde_json::from_slice::<SendAnswer>(&answer)
                .ok()
                .and_then(|a| a.messages.into_iter().next())
                .map(|m| m.id)
                .filter(|id| !id.is_empty());
            return Ok(Delivered { provider_message_id: id });
        }

        let error = serde_json::from_slice::<ErrorAnswer>(&answer).ok().map(|a| a.error);
        let code = error.as_ref().and_then(|e| e.code);
        let detail = match &error {
            Some(e) => {
                let details = e.error_data.as_ref().map(|d| d.details.as_str()).unwrap_or_default();
                let code = code.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
                format!("whatsapp: HTTP {status}, error {code}: {} {details}", e.message).trim_end().to_string()
            }
            None => format!("whatsapp: HTTP {status}: {}", snippet(&answer)),
        };
        let classification = code.and_then(classify_code).unwrap_or(Classification::from_status(status.as_u16()));
        Err(classification.into_error(detail, wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_number_is_sent_as_digits_only() {
        assert_eq!(digits("+1 (555) 010-0123"), "15550100123");
        assert_eq!(digits("whatsapp:+447700900123"), "447700900123");
    }

    #[test]
    fn unknown_codes_are_left_to_the_http_status() {
        assert_eq!(classify_code(100), None);
        assert_eq!(classify_code(131047), Some(Classification::Permanent(FailureReason::OutsideMessagingWindow)));
        assert_eq!(classify_code(250), Some(Classification::Permanent(FailureReason::ProviderAuthFailed)));
    }

    #[tokio::test]
    async fn a_blank_token_counts_as_missing() {
        let config = WhatsAppProviderConfig { access_token: Some("  ".into()), ..Default::default() };
        let provider = from_config(&config).unwrap();
        let mut message = crate::providers::tests::message();
        message.channel_options.insert("phone_number_id".into(), "1234".into());
        let err = provider.send(&message).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Permanent { reason, detail }
            if *reason == FailureReason::ProviderMisconfigured && detail.contains("providers.whatsapp.access_token")),
            "{err:?}"
        );
    }
}
