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
/// `provider_options.url`. Signing secrets belong to a tenant: a channel is signed with
/// its tenant's entry for that channel, else its tenant's default, else not at all
/// (the message fails `ProviderMisconfigured`). No secret ever serves another tenant.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookProviderConfig {
    /// Shorthand for `tenants.default.secret`: tenant `default` only (the tenant of the
    /// bootstrap token), so a single-tenant deployment needs one line. Setting both is
    /// an error at start.
    pub secret: Option<String>,
    /// The old per-channel table, matched by developer name alone across tenants (so any
    /// tenant could name a channel like another's and receive payloads signed with its
    /// secret). Refused at start, naming the entry to write under `tenants` instead.
    pub secrets: BTreeMap<String, String>,
    /// Signing secrets by tenant name.
    pub tenants: BTreeMap<String, WebhookTenantSecrets>,
    /// Also deliver to `http://` URLs (off: `https://` only).
    pub allow_http: bool,
    /// Networks (CIDR) webhook URLs may reach although they are not public — loopback,
    /// private, link-local, … — such as an in-cluster gateway's Service range. Empty:
    /// public addresses only.
    pub allowed_networks: Vec<String>,
    /// Longest one delivery may take, connecting included; past it the attempt is a
    /// transient failure.
    pub timeout_ms: u64,
}

/// `[providers.webhook.tenants.<tenant>]`: one tenant's signing secrets.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookTenantSecrets {
    /// Signs every webhook channel of this tenant that has no entry in `secrets`.
    pub secret: Option<String>,
    /// By channel developer name (of this tenant); these win over `secret`.
    pub secrets: BTreeMap<String, String>,
}

impl WebhookProviderConfig {
    /// The tenant whose secret the top-level `secret` is.
    pub const SHORTHAND_TENANT: &'static str = "default";

    /// The setting that signs `tenant`'s channel `channel`, if one does.
    pub fn secret_setting_for(&self, tenant: &str, channel: &str) -> Option<String> {
        if let Some(own) = self.tenants.get(tenant) {
            if own.secrets.contains_key(channel) {
                return Some(format!("providers.webhook.tenants.{tenant}.secrets.{channel}"));
            }
            if own.secret.is_some() {
                return Some(format!("providers.webhook.tenants.{tenant}.secret"));
            }
        }
        (tenant == Self::SHORTHAND_TENANT && self.secret.is_some()).then(|| "providers.webhook.secret".to_owned())
    }
}

impl Default for WebhookProviderConfig {
    fn default() -> Self {
        WebhookProviderConfig {
            secret: None,
            secrets: BTreeMap::new(),
            tenants: BTreeMap::new(),
            allow_http: false,
            allowed_networks: Vec::new(),
            timeout_ms: 10_000,
        }
    }
}

fn redacted_keys(secrets: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    secrets.keys().map(|k| (k.as_str(), REDACTED)).collect()
}

impl fmt::Debug for WebhookProviderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookProviderConfig")
            .field("secret", &redact(&self.secret))
            .field("secrets", &redacted_keys(&self.secrets))
            .field("tenants", &self.tenants)
            .field("allow_http", &self.allow_http)
            .field("allowed_networks", &self.allowed_networks)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl fmt::Debug for WebhookTenantSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookTenantSecrets")
            .field("secret", &redact(&self.secret))
            .field("secrets", &redacted_keys(&self.secrets))
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
        let acme = c.webhook.tenants.entry("acme".into()).or_default();
        acme.secret = Some("whsec_YWNtZS1kZWZhdWx0".into());
        acme.secrets.insert("acme_gw".into(), "whsec_YWNtZS1ndw==".into());
        c.whatsapp.access_token = Some("EAAGtoken".into());
        c.twilio.account_sid = Some("AC123".into());
        c.twilio.auth_token = Some("twilio-token".into());
        let shown = format!("{c:?}");
        for secret in
            ["c2VjcmV0LWRlZmF1bHQ", "c2VjcmV0LWJ5b2M", "YWNtZS1kZWZhdWx0", "YWNtZS1ndw", "EAAGtoken", "twilio-token"]
        {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("byoc") && shown.contains("acme_gw") && shown.contains("AC123"), "{shown}");
    }

    #[test]
    fn a_channel_is_signed_by_its_tenants_entry_then_its_tenants_default_and_never_another_tenants() {
        let mut w = WebhookProviderConfig { secret: Some("whsec_ZGVm".into()), ..Default::default() };
        let acme = w.tenants.entry("acme".into()).or_default();
        acme.secrets.insert("gw".into(), "whsec_Z3c=".into());
        assert_eq!(w.secret_setting_for("acme", "gw").as_deref(), Some("providers.webhook.tenants.acme.secrets.gw"));
        assert_eq!(w.secret_setting_for("acme", "other"), None, "acme has no default of its own");
        assert_eq!(w.secret_setting_for("default", "gw").as_deref(), Some("providers.webhook.secret"));
        assert_eq!(w.secret_setting_for("globex", "gw"), None, "the shorthand serves tenant default only");
        w.tenants.entry("acme".into()).or_default().secret = Some("whsec_YWNtZQ==".into());
        assert_eq!(w.secret_setting_for("acme", "other").as_deref(), Some("providers.webhook.tenants.acme.secret"));
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
