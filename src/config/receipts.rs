//! `[receipts]`: how providers' delivery receipts reach convmsg — the public URL they
//! call, and the secrets each provider signs its callbacks with, per tenant and channel
//! (the shape of `[providers.webhook.tenants]`). The webhook gateway's acknowledgements
//! are checked with the channel's webhook signing secret, so they need nothing here.
//! Describes settings only; its `Debug` output never shows a secret.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// The scheme, host and any path prefix the providers call, as they see it
    /// (`https://convmsg.example.com`): Twilio signs the full URL it calls, so behind a
    /// proxy or an ingress the URL must be the public one, not the listener's. Unset: the
    /// request's `Host` header, over `https` when the listener has TLS, else `http`.
    pub public_base_url: Option<String>,
    /// How far a Standard Webhooks `webhook-timestamp` may be from convmsg's clock
    /// (either way) before the acknowledgement is refused as a replay.
    pub webhook_tolerance_ms: u64,
    /// Secrets by tenant name.
    pub tenants: BTreeMap<String, ReceiptTenantSecrets>,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig { public_base_url: None, webhook_tolerance_ms: 300_000, tenants: BTreeMap::new() }
    }
}

/// `[receipts.tenants.<tenant>]`: the tenant's defaults, and `channels.<developer name>`
/// entries that win over them.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptTenantSecrets {
    /// For the tenant's Twilio channels without their own (see `ReceiptSecrets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_auth_token: Option<String>,
    /// For the tenant's WhatsApp channels without their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_app_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_verify_token: Option<String>,
    /// By channel developer name (of this tenant); these win over the tenant's.
    pub channels: BTreeMap<String, ReceiptSecrets>,
}

impl ReceiptTenantSecrets {
    fn defaults(&self) -> ReceiptSecrets {
        ReceiptSecrets {
            twilio_auth_token: self.twilio_auth_token.clone(),
            whatsapp_app_secret: self.whatsapp_app_secret.clone(),
            whatsapp_verify_token: self.whatsapp_verify_token.clone(),
        }
    }
}

/// The secrets one channel's (or one tenant's) callbacks are checked with.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptSecrets {
    /// The auth token of the Twilio account that sends for the channel (it signs
    /// `X-Twilio-Signature`). Unset everywhere: `providers.twilio.auth_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_auth_token: Option<String>,
    /// The Meta app secret (it signs `X-Hub-Signature-256`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_app_secret: Option<String>,
    /// The verify token entered in the Meta app's webhook settings (the `GET` handshake).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whatsapp_verify_token: Option<String>,
}

/// Which secret of `ReceiptSecrets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptSecret {
    TwilioAuthToken,
    WhatsAppAppSecret,
    WhatsAppVerifyToken,
}

impl ReceiptSecrets {
    fn get(&self, which: ReceiptSecret) -> Option<String> {
        let value = match which {
            ReceiptSecret::TwilioAuthToken => &self.twilio_auth_token,
            ReceiptSecret::WhatsAppAppSecret => &self.whatsapp_app_secret,
            ReceiptSecret::WhatsAppVerifyToken => &self.whatsapp_verify_token,
        };
        value.clone().filter(|v| !v.trim().is_empty())
    }
}

impl ReceiptsConfig {
    /// The secret for `tenant`'s channel `channel`: the channel's entry, else the
    /// tenant's; never another tenant's.
    pub fn secret(&self, tenant: &str, channel: &str, which: ReceiptSecret) -> Option<String> {
        let own = self.tenants.get(tenant)?;
        own.channels.get(channel).and_then(|c| c.get(which)).or_else(|| own.defaults().get(which))
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for ReceiptSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| REDACTED);
        f.debug_struct("ReceiptSecrets")
            .field("twilio_auth_token", &shown(&self.twilio_auth_token))
            .field("whatsapp_app_secret", &shown(&self.whatsapp_app_secret))
            .field("whatsapp_verify_token", &shown(&self.whatsapp_verify_token))
            .finish()
    }
}

impl fmt::Debug for ReceiptTenantSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiptTenantSecrets")
            .field("defaults", &self.defaults())
            .field("channels", &self.channels)
            .finish()
    }
}

impl fmt::Debug for ReceiptsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiptsConfig")
            .field("public_base_url", &self.public_base_url)
            .field("webhook_tolerance_ms", &self.webhook_tolerance_ms)
            .field("tenants", &self.tenants)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_entry_wins_over_its_tenants_default_and_no_tenant_sees_another_s() {
        let mut c = ReceiptsConfig::default();
        let acme = c.tenants.entry("acme".into()).or_default();
        acme.whatsapp_app_secret = Some("tenant-secret".into());
        acme.channels.entry("wa_eu".into()).or_default().whatsapp_app_secret = Some("channel-secret".into());
        use ReceiptSecret::*;
        assert_eq!(c.secret("acme", "wa_eu", WhatsAppAppSecret).as_deref(), Some("channel-secret"));
        assert_eq!(c.secret("acme", "wa_us", WhatsAppAppSecret).as_deref(), Some("tenant-secret"));
        assert_eq!(c.secret("acme", "wa_eu", TwilioAuthToken), None);
        assert_eq!(c.secret("globex", "wa_eu", WhatsAppAppSecret), None);
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let mut c = ReceiptsConfig::default();
        let acme = c.tenants.entry("acme".into()).or_default();
        acme.twilio_auth_token = Some("twilio-SECRET".into());
        acme.channels.entry("wa".into()).or_default().whatsapp_verify_token = Some("verify-SECRET".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET") && shown.contains("acme") && shown.contains("wa"), "{shown}");
    }
}
