//! Channel providers behind one trait: `log` (JSON lines; the embedded default),
//! `webhook` (Standard Webhooks–signed JSON POST), `whatsapp` (Meta WhatsApp Cloud API
//! template messages) and `twilio` (Twilio Messages API). A provider sends one rendered
//! message and classifies failure as transient (retry) or permanent (a reason code).
//! Providers hold no database state and never retry by themselves: the dispatcher
//! owns retries, backoff and rate limits.
//!
//! `Providers` is the registry the dispatcher looks a channel's provider up in, built once
//! from `[providers]`. A provider whose credentials are missing is still registered and
//! fails every message with `ProviderMisconfigured`, so a channel bound to it fails
//! loudly rather than silently.

pub mod config;
pub mod guard;
pub(crate) mod http;
pub mod log;
pub mod twilio;
pub mod webhook;
pub mod whatsapp;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use config::ProvidersConfig;

/// One message ready to go out.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// The message identifier (lowercase UUID): the idempotency / dedup key every
    /// provider passes on (webhook-id, Twilio/WhatsApp idempotency headers where they exist).
    pub message_identifier: String,
    pub request_id: String,
    pub tenant: String,
    pub end_user_id: String,
    /// The recipient's platform key (phone number, page id, …).
    pub recipient: String,
    /// The channel's developer name and its own platform key (sender identity).
    pub channel_developer_name: String,
    pub channel_platform_key: String,
    /// The channel's non-secret provider settings (`provider_options`).
    pub channel_options: BTreeMap<String, String>,
    pub definition_api_name: String,
    /// The text layout with every `{!Param}` filled.
    pub text: String,
    /// Set when the messaging component maps to an approved external template.
    pub template: Option<TemplateMessage>,
    /// The caller's W3C trace context, forwarded as `traceparent`.
    pub traceparent: Option<String>,
}

/// An approved external template and its rendered body parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateMessage {
    pub name: String,
    pub language: String,
    pub body_parameters: Vec<String>,
}

/// A message the provider took.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivered {
    /// The provider's id for the message (WhatsApp `wamid…`, Twilio `SM…`), if any.
    pub provider_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: timeouts, connection errors, 429, 5xx.
    #[error("transient: {detail}")]
    Transient {
        detail: String,
        /// The provider's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying will not help; `reason` is the record's failure reason code
    /// (e.g. `ProviderRejected`, `InvalidRecipient`, `EndUserIsNotOptedIn`,
    /// `OutsideMessagingWindow`, `ProviderAuthFailed`, `ProviderMisconfigured`).
    #[error("{reason}: {detail}")]
    Permanent { reason: FailureReason, detail: String },
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `log`, `webhook`, `whatsapp` or `twilio`.
    fn name(&self) -> ProviderName;
    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError>;
}

/// The names providers are registered and bound to channels by.
pub use crate::domain::model::ProviderName;
/// The permanent failure reasons providers give: the record's reason codes.
pub use crate::domain::reason::FailureReason;

impl ProviderError {
    pub fn permanent(reason: FailureReason, detail: impl Into<String>) -> Self {
        ProviderError::Permanent { reason, detail: detail.into() }
    }

    pub fn transient(detail: impl Into<String>, retry_after: Option<Duration>) -> Self {
        ProviderError::Transient { detail: detail.into(), retry_after }
    }
}

/// What a provider's answer means for the dispatcher, before the detail is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    Transient,
    /// Carries the failure reason code.
    Permanent(FailureReason),
}

impl Classification {
    /// For answers no provider error code explains: 408, 429 and 5xx are transient,
    /// 401 is `ProviderAuthFailed`, anything else `ProviderRejected`.
    pub fn from_status(status: u16) -> Classification {
        match status {
            408 | 429 | 500..=599 => Classification::Transient,
            401 => Classification::Permanent(FailureReason::ProviderAuthFailed),
            _ => Classification::Permanent(FailureReason::ProviderRejected),
        }
    }

    pub fn into_error(self, detail: String, retry_after: Option<Duration>) -> ProviderError {
        match self {
            Classification::Transient => ProviderError::transient(detail, retry_after),
            Classification::Permanent(reason) => ProviderError::permanent(reason, detail),
        }
    }
}

/// Every provider by name; cheap to clone and share.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<&'static str, Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Providers {
    /// All four providers from `[providers]`. Fails only on settings that can never work
    /// (an unparseable URL or webhook secret, a log file that cannot be opened); missing
    /// credentials register a provider that answers `ProviderMisconfigured`.
    pub fn from_config(config: &ProvidersConfig) -> anyhow::Result<Providers> {
        let mut providers = Providers::default();
        providers.insert(Arc::new(log::LogProvider::from_config(&config.log)?));
        providers.insert(Arc::new(webhook::WebhookProvider::from_config(&config.webhook)?));
        providers.insert(whatsapp::from_config(&config.whatsapp)?);
        providers.insert(twilio::from_config(&config.twilio)?);
        Ok(providers)
    }

    /// Adds (or replaces) a provider under its `name()`; tests register fakes this way.
    pub fn insert(&mut self, provider: Arc<dyn Provider>) {
        self.by_name.insert(provider.name().as_str(), provider);
    }

    pub fn get(&self, name: ProviderName) -> Option<Arc<dyn Provider>> {
        self.by_name.get(name.as_str()).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

/// Stands in for a provider whose credentials are not configured: every message fails
/// permanently, naming the missing settings.
#[derive(Debug, Clone)]
pub struct Unconfigured {
    name: ProviderName,
    missing: Vec<&'static str>,
}

impl Unconfigured {
    pub fn new(name: ProviderName, missing: Vec<&'static str>) -> Self {
        Unconfigured { name, missing }
    }
}

#[async_trait]
impl Provider for Unconfigured {
    fn name(&self) -> ProviderName {
        self.name
    }

    async fn send(&self, _message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let missing = self.missing.join(", ");
        Err(ProviderError::permanent(
            FailureReason::ProviderMisconfigured,
            format!("the {} provider is not configured: set {missing}", self.name),
        ))
    }
}

/// A channel option the provider cannot do without, or a `ProviderMisconfigured` naming it.
pub(crate) fn required_option<'m>(
    provider: ProviderName,
    message: &'m OutboundMessage,
    key: &str,
) -> Result<&'m str, ProviderError> {
    match message.channel_options.get(key).map(|v| v.trim()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ProviderError::permanent(
            FailureReason::ProviderMisconfigured,
            format!("channel {} (provider {provider}) has no provider_options.{key}", message.channel_developer_name),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn message() -> OutboundMessage {
        OutboundMessage {
            message_identifier: "0b6c2f0e-6a43-4a8e-9a55-1f0e7d9c3b21".into(),
            request_id: "1srxx0000000001AAA".into(),
            tenant: "default".into(),
            end_user_id: "0PAxx0000000001AAA".into(),
            recipient: "+15550123".into(),
            channel_developer_name: "sms_us".into(),
            channel_platform_key: "+15550100".into(),
            channel_options: BTreeMap::new(),
            definition_api_name: "OrderShipped".into(),
            text: "Hi Ada".into(),
            template: None,
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn the_registry_built_from_defaults_has_all_four_providers() {
        let providers = Providers::from_config(&ProvidersConfig::default()).unwrap();
        assert_eq!(providers.names().collect::<Vec<_>>(), ["log", "twilio", "webhook", "whatsapp"]);
        assert!(ProviderName::ALL.iter().all(|name| providers.get(*name).is_some()));
    }

    #[tokio::test]
    async fn a_provider_without_credentials_fails_every_message_naming_the_missing_setting() {
        let providers = Providers::from_config(&ProvidersConfig::default()).unwrap();
        for (name, setting) in [
            (ProviderName::WhatsApp, "providers.whatsapp.access_token"),
            (ProviderName::Twilio, "providers.twilio.auth_token"),
        ] {
            let err = providers.get(name).unwrap().send(&message()).await.unwrap_err();
            match err {
                ProviderError::Permanent { reason, detail } => {
                    assert_eq!(reason, FailureReason::ProviderMisconfigured);
                    assert!(detail.contains(setting), "{detail}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_missing_channel_option_names_the_channel_and_the_key() {
        let err = required_option(ProviderName::Webhook, &message(), "url").unwrap_err();
        assert_eq!(
            err,
            ProviderError::permanent(
                FailureReason::ProviderMisconfigured,
                "channel sms_us (provider webhook) has no provider_options.url"
            )
        );
    }
}
