//! The `[providers]` section of the configuration: per-provider endpoints, credentials
//! and timeouts. Channel-specific, non-secret settings (webhook URL, WhatsApp phone
//! number id, Twilio messaging service) live on the channel's `provider_options` instead.
//! This module only describes settings; it must not open files or sockets, and its
//! `Debug` output must never show a secret.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Shown instead of a secret in `Debug` output.
const REDACTED: &str = "<redacted>";

fn redact(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| REDACTED)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub log: LogProviderConfig,
    pub webhook: WebhookProviderConfig,
    pub whatsapp: WhatsAppProviderConfig,
    pub twilio: TwilioProviderConfig,
}

/// The `log` provider: one JSON line per message, the embedded default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogProviderConfig {
    /// File the lines are appended to (created if missing). Unset = standard output.
    pub path: Option<String>,
    /// Also write the rendered text. Off by default: message bodies are personal data,
    /// and the log provider otherwise records only their length.
    pub include_body: bool,
}

/// The `webhook` provider: a JSON POST signed per Standard Webhooks to the channel's
/// `provider_options.url`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookProviderConfig {
    /// Signing secret (`whsec_` + base64) for channels without their own entry in `secrets`.
    pub secret: Option<String>,
    /// Signing secrets by channel developer name; these win over `secret`.
    pub secrets: BTreeMap<String, String>,
    /// Longest one delivery may take, connecting included; past it the attempt is a
    /// transient failure.
    pub timeout_ms: u64,
}

impl Default for WebhookProviderConfig {
    fn default() -> Self {
        WebhookProviderConfig { secret: None, secrets: BTreeMap::new(), timeout_ms: 10_000 }
    }
}

impl fmt::Debug for WebhookProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secrets: BTreeMap<&str, &str> = self.secrets.keys().map(|k| (k.as_str(), REDACTED)).collect();
        f.debug_struct("WebhookProviderConfig")
            .field("secret", &redact(&self.secret))
            .field("secrets", &secrets)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The `whatsapp` provider: Meta WhatsApp Cloud API template messages. The sending
/// number is the channel's `provider_options.phone_number_id`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WhatsAppProviderConfig {
    /// Graph API root; tests point it at a local fake.
    pub base_url: String,
    /// Graph API version in the path, e.g. `v21.0`.
    pub api_version: String,
    /// A system-user access token with `whatsapp_business_messaging`. Unset = the provider
    /// answers every message with `ProviderMisconfigured`.
    pub access_token: Option<String>,
    /// Longest one API call may take before it counts as a transient failure.
    pub timeout_ms: u64,
}

impl Default for WhatsAppProviderConfig {
    fn default() -> Self {
        WhatsAppProviderConfig {
            base_url: "https://graph.facebook.com".into(),
            api_version: "v21.0".into(),
            access_token: None,
            timeout_ms: 10_000,
        }
    }
}

impl fmt::Debug for WhatsAppProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhatsAppProviderConfig")
            .field("base_url", &self.base_url)
            .field("api_version", &self.api_version)
            .field("access_token", &redact(&self.access_token))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The `twilio` provider: Twilio Messages API. The sender is the channel's
/// `messaging_platform_key` (`From`) or its `provider_options.messaging_service_sid`.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TwilioProviderConfig {
    /// API root; tests point it at a local fake.
    pub base_url: String,
    /// `AC…`; with `auth_token`, the HTTP basic credentials. Either unset = the provider
    /// answers every message with `ProviderMisconfigured`.
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    /// Longest one API call may take before it counts as a transient failure.
    pub timeout_ms: u64,
}

impl Default for TwilioProviderConfig {
    fn default() -> Self {
        TwilioProviderConfig {
            base_url: "https://api.twilio.com".into(),
            account_sid: None,
            auth_token: None,
            timeout_ms: 10_000,
        }
    }
}

impl fmt::Debug for TwilioProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioProviderConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &redact(&self.auth_token))
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut c = ProvidersConfig::default();
        c.webhook.secret = Some("whsec_c2VjcmV0LWRlZmF1bHQ=".into());
        c.webhook.secrets.insert("byoc".into(), "whsec_c2VjcmV0LWJ5b2M=".into());
        c.whatsapp.access_token = Some("EAAGtoken".into());
        c.twilio.account_sid = Some("AC123".into());
        c.twilio.auth_token = Some("twilio-token".into());
        let shown = format!("{c:?}");
        for secret in ["c2VjcmV0LWRlZmF1bHQ", "c2VjcmV0LWJ5b2M", "EAAGtoken", "twilio-token"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("byoc") && shown.contains("AC123"), "{shown}");
    }

    #[test]
    fn the_defaults_point_at_the_real_apis() {
        let c = ProvidersConfig::default();
        assert_eq!(c.whatsapp.base_url, "https://graph.facebook.com");
        assert_eq!(c.whatsapp.api_version, "v21.0");
        assert_eq!(c.twilio.base_url, "https://api.twilio.com");
        assert_eq!(c.log.path, None);
        assert!(!c.log.include_body);
    }
}
