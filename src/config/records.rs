//! The records the file declares — `[[tenants]]` with their tokens, `[[channels]]`,
//! `[[definitions]]`, `[[end_users]]` — and `[provisioning]`, what happens to them. As
//! text, as written; `server::provision` turns them into checked domain specs at start.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The records declared in the file (`[[channels]]`, `[[definitions]]`, `[[end_users]]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// At start, delete the records an earlier start declared that the file no longer
    /// lists (end users, then components, then channels). Records made through the API
    /// are never touched; one still needed (pending messages, say) is kept, with a
    /// warning, and tried again at the next start.
    pub prune: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// SHA-256 hex of the token (`convmsg token new` prints it).
    pub sha256: String,
    /// Any of `send`, `read`, `admin`.
    pub scopes: Vec<String>,
    #[serde(default)]
    pub label: String,
    /// When the token stops working, RFC 3339 (`2027-01-01T00:00:00Z`); unset = never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

fn default_tenant() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub developer_name: String,
    #[serde(default)]
    pub master_label: String,
    /// `Text`, `WhatsApp`, `AppleBusinessChat`, `EmbeddedMessaging`, `Custom`, …
    pub message_type: String,
    /// `ImplicitOptIn` (default), `ExplicitOptIn` or `DoubleOptIn`.
    #[serde(default)]
    pub consent_type: Option<String>,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub messaging_platform_key: String,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub rate_limit_per_second: f64,
    #[serde(default)]
    pub provider_options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParameterConfig {
    pub name: String,
    #[serde(default)]
    pub label: String,
    /// `Text`, `Url`, `RecordId`, `ImageId`, `Date`, `DateTime`, `Integer`, `Double`, `Boolean`.
    pub value_type: String,
    #[serde(default)]
    pub is_required: bool,
    #[serde(default)]
    pub is_list: bool,
    #[serde(default)]
    pub max_list_items: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub template_name: String,
    #[serde(default)]
    pub language: String,
    /// `Approved`, `Pending`, `Rejected`, `Paused`, `Disabled`.
    pub status: String,
    #[serde(default)]
    pub account_identifier: String,
    #[serde(default)]
    pub body_parameters: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DefinitionConfig {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub api_name: String,
    #[serde(default)]
    pub master_label: String,
    /// `Notification` (default), `Action`, `AutoResponse`, `Link`.
    #[serde(default)]
    pub definition_type: Option<String>,
    #[serde(default = "yes")]
    pub is_active: bool,
    #[serde(default)]
    pub parameters: Vec<ParameterConfig>,
    #[serde(default)]
    pub text_layout: String,
    #[serde(default)]
    pub external_template: Option<TemplateConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndUserConfig {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Optional fixed id (`0PA…`), so other systems can refer to it.
    #[serde(default)]
    pub id: Option<String>,
    /// The channel's developer name.
    pub channel: String,
    pub messaging_platform_key: String,
    #[serde(default)]
    pub name: String,
    /// `ImplicitlyOptedIn` (default), `ExplicitlyOptedIn`, `DoublyOptedIn`, `OptedOut`.
    #[serde(default)]
    pub consent_status: Option<String>,
}
