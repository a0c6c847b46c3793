//! The `twilio` provider: Twilio Messages API (SMS, and WhatsApp via Twilio),
//! `POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json` with a form body and
//! HTTP basic auth (<https://www.twilio.com/docs/messaging/api/message-resource>). The
//! sender is the channel's `provider_options.messaging_service_sid` when set, else its
//! platform key as `From`. It sends the rendered text as `Body`; it must not retry by
//! itself. The message identifier travels as `I-Twilio-Idempotency-Token`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;

use super::config::TwilioProviderConfig;
use super::http::{
    build_client, parse_base_url, read_body, record_request, record_status, retry_after, snippet, transport_error,
    url_with_segments,
};
use super::{Classification, Delivered, OutboundMessage, Provider, ProviderError, ProviderName, Unconfigured};
use crate::domain::reason::FailureReason;

const NAME: ProviderName = ProviderName::Twilio;

/// The registered provider: the real one, or [`Unconfigured`] naming whichever
/// credentials are missing.
pub fn from_config(config: &TwilioProviderConfig) -> anyhow::Result<Arc<dyn Provider>> {
    let base_url = parse_base_url("providers.twilio.base_url", &config.base_url)?;
    let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    match (present(&config.account_sid), present(&config.auth_token)) {
        (Some(account_sid), Some(auth_token)) => Ok(Arc::new(TwilioProvider {
            client: build_client(Duration::from_millis(config.timeout_ms))?,
            base_url,
            account_sid,
            auth_token,
        })),
        (sid, token) => {
            let mut missing = Vec::new();
            if sid.is_none() {
                missing.push("providers.twilio.account_sid");
            }
            if token.is_none() {
                missing.push("providers.twilio.auth_token");
            }
            Ok(Arc::new(Unconfigured::new(NAME, missing)))
        }
    }
}

pub struct TwilioProvider {
    client: reqwest::Client,
    base_url: reqwest::Url,
    account_sid: String,
    auth_token: String,
}

impl std::fmt::Debug for TwilioProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioProvider")
            .field("base_url", &self.base_url.as_str())
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Created {
    #[serde(default)]
    sid: Option<String>,
}

/// Twilio's error answer: `{"code": 21610, "message": "…", "more_info": "…", "status": 400}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

/// What a Twilio error code means for this message. `None` = not a code we know: the HTTP
/// status decides. Codes are Twilio's error dictionary,
/// <https://www.twilio.com/docs/api/errors/{code}>:
/// - 21610 "Attempt to send to unsubscribed recipient" (the recipient replied STOP) →
///   `EndUserIsNotOptedIn`.
/// - 21211 "Invalid 'To' Phone Number", 21614 "'To' number is not a valid mobile number",
///   21612 "The 'To' phone number is not currently reachable via SMS", 21635 "'To' number
///   cannot be a landline" → `InvalidRecipient`.
/// - 21212 "Invalid 'From' Phone Number", 21606 "The 'From' phone number provided is not a
///   valid message-capable Twilio phone number for this destination" →
///   `ProviderMisconfigured`: the channel's sender is wrong, not the recipient.
/// - 20003 "Authentication Error" (also answered with HTTP 401) → `ProviderAuthFailed`.
/// - 20429 "Too Many Requests" → transient.
pub fn classify_code(code: i64) -> Option<Classification> {
    use Classification::*;
    Some(match code {
        21610 => Permanent(FailureReason::EndUserIsNotOptedIn),
        21211 | 21614 | 21612 | 21635 => Permanent(FailureReason::InvalidRecipient),
        21212 | 21606 => Permanent(FailureReason::ProviderMisconfigured),
        20003 => Permanent(FailureReason::ProviderAuthFailed),
        20429 => Transient,
        _ => return None,
    })
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> ProviderName {
        NAME
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let service = message.channel_options.get("messaging_service_sid").map(|s| s.trim()).filter(|s| !s.is_empty());
        let from = message.channel_platform_key.trim();
        let sender = match service {
            Some(sid) => ("MessagingServiceSid", sid),
            None if !from.is_empty() => ("From", from),
            None => {
                return Err(ProviderError::permanent(
                    FailureReason::ProviderMisconfigured,
                    format!(
                        "channel {} (provider twilio) has neither a messaging_platform_key (From) nor \
                         provider_options.messaging_service_sid",
                        message.channel_developer_name
                    ),
                ));
            }
        };
        let form = [("To", message.recipient.as_str()), sender, ("Body", message.text.as_str())];
        let url = url_with_segments(&self.base_url, &["2010-04-01", "Accounts", &self.account_sid, "Messages.json"])?;

        record_request(&http::Method::POST, &url, true);
        let mut request = self
            .client
            .post(url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .header("I-Twilio-Idempotency-Token", &message.message_identifier)
            .form(&form);
        if let Some(traceparent) = &message.traceparent {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.map_err(|e| transport_error(NAME, &e))?;

        let status = response.status();
        record_status(status);
        let wait = retry_after(response.headers(), SystemTime::now());
        let answer = read_body(NAME, response).await?;
        if status.is_success() {
            let sid = serde_json::from_slice::<Created>(&answer).ok().and_then(|c| c.sid).filter(|s| !s.is_empty());
            return Ok(Delivered { provider_message_id: sid });
        }

        let error = serde_json::from_slice::<ErrorAnswer>(&answer).ok();
        let code = error.as_ref().and_then(|e| e.code);
        let detail = match (&error, code) {
            (Some(e), Some(code)) => format!("twilio: HTTP {status}, error {code}: {}", e.message),
            _ => format!("twilio: HTTP {status}: {}", snippet(&answer)),
        };
        let classification = code.and_then(classify_code).unwrap_or(Classification::from_status(status.as_u16()));
        Err(classification.into_error(detail, wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_credentials_are_all_named() {
        let provider = from_config(&TwilioProviderConfig::default()).unwrap();
        let err = provider.send(&crate::providers::tests::message()).await.unwrap_err();
        let ProviderError::Permanent { reason: r, detail } = err else { panic!("{err:?}") };
        assert_eq!(r, FailureReason::ProviderMisconfigured);
        assert!(detail.contains("providers.twilio.account_sid") && detail.contains("providers.twilio.auth_token"));
    }

    #[test]
    fn unknown_codes_are_left_to_the_http_status() {
        assert_eq!(classify_code(21610), Some(Classification::Permanent(FailureReason::EndUserIsNotOptedIn)));
        assert_eq!(classify_code(30007), None);
    }
}
