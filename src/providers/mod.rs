//! Channel providers behind one trait: `log` (JSON lines; the embedded default),
//! `webhook` (Standard Webhooks–signed JSON POST), `whatsapp` (Meta WhatsApp Cloud API
//! template messages) and `twilio` (Twilio Messages API). A provider sends one rendered
//! message and classifies failure as transient (retry) or permanent (a reason code).
//! Providers hold no database state and never retry by themselves: the dispatcher
//! owns retries, backoff and rate limits.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

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
    Permanent { reason: String, detail: String },
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// `log`, `webhook`, `whatsapp` or `twilio`.
    fn name(&self) -> &'static str;
    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError>;
}

/// The providers this process can send through, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: std::collections::HashMap<String, std::sync::Arc<dyn Provider>>,
}

impl Providers {
    /// Adds (or replaces) a provider under its name.
    pub fn with(mut self, provider: std::sync::Arc<dyn Provider>) -> Self {
        self.by_name.insert(provider.name().to_owned(), provider);
        self
    }

    pub fn get(&self, name: &str) -> Option<std::sync::Arc<dyn Provider>> {
        self.by_name.get(name).cloned()
    }
}
