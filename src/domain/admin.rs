//! Provisioning inputs — channels, messaging components, end users, subscriptions —
//! as either door or the config file gives them, and their checks. No I/O here.

use std::collections::{BTreeMap, HashSet};

use super::Checked;
use super::ids::{IdKind, RecordId};
use super::model::*;
use super::params::MAX_LIST_ITEMS;
use super::send::refuse_control_characters;
use super::violation::{ErrorKind, Violation, Violations, echo, quoted};

/// API names: a letter, then letters, digits and underscores, at most 80 characters.
fn check_api_name(field: &str, name: &str, v: &mut Violations) {
    if name.is_empty() {
        v.push(Violation::missing(field));
    } else if name.len() > 80
        || !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        v.push(Violation::new(
            field,
            ErrorKind::InvalidInput,
            format!(
                "{} must start with a letter and use only letters, digits and underscores (at most 80)",
                quoted(name)
            ),
        ));
    }
}

fn check_optional_id(field: &str, raw: &Option<String>, kind: IdKind, v: &mut Violations) -> Option<RecordId> {
    let raw = raw.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
    match RecordId::parse(raw, kind) {
        Ok(id) => Some(id),
        Err(e) => {
            v.push(Violation::new(field, ErrorKind::MalformedId, format!("{} is not a valid id: {e}", quoted(raw))));
            None
        }
    }
}

/// A webhook URL as text: absolute `https://` or `http://` with a host. Where it may
/// point (https only, public addresses) is the provider's check at send time, against
/// the operator's rules and the addresses the name resolves to then.
fn check_webhook_url(url: &str, v: &mut Violations) {
    let url = url.trim();
    let lower = url.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or_default());
    if !host.is_some_and(|h| !h.is_empty() && !h.starts_with(':') && !h.contains('@')) {
        v.push(Violation::new(
            "channel.provider_options.url",
            ErrorKind::InvalidInput,
            format!("{} is not a webhook URL: give an absolute https:// URL with a host and no user info", quoted(url)),
        ));
    }
}

/// A channel to create or update.
#[derive(Debug, Clone, Default)]
pub struct ChannelSpec {
    pub id: Option<String>,
    pub developer_name: String,
    pub master_label: String,
    pub message_type: Option<MessageType>,
    pub consent_type: Option<ChannelConsentLevel>,
    pub provider: String,
    pub messaging_platform_key: String,
    pub is_active: bool,
    pub rate_limit_per_second: f64,
    pub provider_options: BTreeMap<String, String>,
}

/// A checked channel spec.
#[derive(Debug, Clone)]
pub struct ChannelUpsert {
    pub id: Option<RecordId>,
    pub developer_name: String,
    pub master_label: String,
    pub message_type: MessageType,
    pub consent_type: ChannelConsentLevel,
    pub provider: ProviderName,
    pub messaging_platform_key: String,
    pub is_active: bool,
    pub rate_limit_per_second: f64,
    pub provider_options: BTreeMap<String, String>,
    /// Private: a value comes only out of `ChannelSpec::check`, never written out field by field.
    _checked: Checked,
}

impl ChannelSpec {
    pub fn check(self) -> Result<ChannelUpsert, Vec<Violation>> {
        let mut v = Violations::default();
        let id = check_optional_id("channel.id", &self.id, IdKind::MessagingChannel, &mut v);
        check_api_name("channel.developer_name", &self.developer_name, &mut v);
        if self.message_type.is_none() {
            v.push(Violation::new(
                "channel.message_type",
                ErrorKind::RequiredFieldMissing,
                format!("message_type is required ({})", MessageType::allowed()),
            ));
        }
        let provider =
            if self.provider.is_empty() { Some(ProviderName::Log) } else { ProviderName::parse(&self.provider) };
        if provider.is_none() {
            v.push(Violation::new(
                "channel.provider",
                ErrorKind::InvalidInput,
                format!("unknown provider {}; expected one of {}", quoted(&self.provider), ProviderName::allowed()),
            ));
        }
        if !self.rate_limit_per_second.is_finite() || self.rate_limit_per_second < 0.0 {
            v.push(Violation::new(
                "channel.rate_limit_per_second",
                ErrorKind::InvalidInput,
                "rate_limit_per_second must be 0 (no limit) or a positive number",
            ));
        }
        refuse_control_characters("channel.master_label", &self.master_label, &mut v);
        refuse_control_characters("channel.messaging_platform_key", &self.messaging_platform_key, &mut v);
        for (key, value) in &self.provider_options {
            refuse_control_characters(&format!("channel.provider_options.{key}"), &format!("{key}{value}"), &mut v);
        }
        if provider == Some(ProviderName::Webhook)
            && let Some(url) = self.provider_options.get("url")
        {
            check_webhook_url(url, &mut v);
        }
        let master_label = if self.master_label.is_empty() { self.developer_name.clone() } else { self.master_label };
        v.into_result(())?;
        Ok(ChannelUpsert {
            id,
            developer_name: self.developer_name,
            master_label,
            message_type: self.message_type.unwrap_or(MessageType::Text),
            consent_type: self.consent_type.unwrap_or(ChannelConsentLevel::ImplicitOptIn),
            provider: provider.unwrap_or(ProviderName::Log),
            messaging_platform_key: self.messaging_platform_key,
            is_active: self.is_active,
            rate_limit_per_second: self.rate_limit_per_second,
            provider_options: self.provider_options,
            _checked: Checked,
        })
    }
}

/// A messaging component to create or update.
#[derive(Debug, Clone, Default)]
pub struct DefinitionSpec {
    pub id: Option<String>,
    pub api_name: String,
    pub master_label: String,
    pub definition_type: Option<DefinitionType>,
    pub is_active: bool,
    pub parameters: Vec<MessageParameter>,
    pub text_layout: String,
    pub external_template: Option<ExternalTemplate>,
}

#[derive(Debug, Clone)]
pub struct DefinitionUpsert {
    pub id: Option<RecordId>,
    pub api_name: String,
    pub master_label: String,
    pub definition_type: DefinitionType,
    pub is_active: bool,
    pub parameters: Vec<MessageParameter>,
    pub text_layout: String,
    pub external_template: Option<ExternalTemplate>,
    /// Private: a value comes only out of `DefinitionSpec::check`, never written out field by field.
    _checked: Checked,
}

/// The `{!Name}` merge fields of a layout, in order.
pub fn merge_fields(layout: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = layout;
    while let Some(start) = rest.find("{!") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].trim());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// Most parameters one messaging component declares.
pub const MAX_PARAMETERS_PER_DEFINITION: usize = 100;

impl DefinitionSpec {
    /// Linear in the spec: the parameter count is bounded before any per-parameter work
    /// and names are looked up in a hash set.
    pub fn check(self) -> Result<DefinitionUpsert, Vec<Violation>> {
        if self.parameters.len() > MAX_PARAMETERS_PER_DEFINITION {
            return Err(vec![Violation::new(
                "message_definition.parameters",
                ErrorKind::InvalidInput,
                format!(
                    "{} parameters declared; a messaging component declares at most {MAX_PARAMETERS_PER_DEFINITION}",
                    self.parameters.len()
                ),
            )]);
        }
        let mut v = Violations::default();
        let id = check_optional_id("message_definition.id", &self.id, IdKind::MessageDefinition, &mut v);
        check_api_name("message_definition.api_name", &self.api_name, &mut v);
        let mut names: HashSet<&str> = HashSet::with_capacity(self.parameters.len());
        for (i, p) in self.parameters.iter().enumerate() {
            let field = format!("message_definition.parameters[{i}]");
            check_api_name(&format!("{field}.name"), &p.name, &mut v);
            if !names.insert(&p.name) {
                v.push(Violation::new(
                    format!("{field}.name"),
                    ErrorKind::InvalidInput,
                    format!("parameter {} is declared twice", echo(&p.name)),
                ));
            }
            if p.is_list && p.max_list_items as usize > MAX_LIST_ITEMS {
                v.push(Violation::new(
                    format!("{field}.max_list_items"),
                    ErrorKind::InvalidInput,
                    format!("max_list_items is at most {MAX_LIST_ITEMS} (0 means {MAX_LIST_ITEMS})"),
                ));
            }
            if !p.is_list && p.max_list_items > 0 {
                v.push(Violation::new(
                    format!("{field}.max_list_items"),
                    ErrorKind::InvalidInput,
                    "max_list_items applies only to list parameters",
                ));
            }
        }
        let mut unknown: Vec<&str> = Vec::new();
        let mut reported: HashSet<&str> = HashSet::new();
        for field in merge_fields(&self.text_layout) {
            if !names.contains(field) && reported.insert(field) {
                unknown.push(field);
            }
        }
        if !unknown.is_empty() {
            const SHOWN: usize = 10;
            let more = unknown.len().saturating_sub(SHOWN);
            let mut list: Vec<String> = unknown.iter().take(SHOWN).map(|f| echo(f).into_owned()).collect();
            if more > 0 {
                list.push(format!("and {more} more"));
            }
            v.push(Violation::new(
                "message_definition.text_layout",
                ErrorKind::InvalidInput,
                format!("merge fields {} name no declared parameter", list.join(", ")),
            ));
        }
        if let Some(t) = &self.external_template {
            if t.template_name.trim().is_empty() {
                v.push(Violation::missing("message_definition.external_template.template_name"));
            }
            for (i, name) in t.body_parameters.iter().enumerate() {
                if !names.contains(&name.as_str()) {
                    v.push(Violation::new(
                        format!("message_definition.external_template.body_parameters[{i}]"),
                        ErrorKind::InvalidInput,
                        format!("{} is not a declared parameter", echo(name)),
                    ));
                }
            }
        }
        refuse_control_characters("message_definition.master_label", &self.master_label, &mut v);
        if self.text_layout.contains('\0') {
            v.push(Violation::new(
                "message_definition.text_layout",
                ErrorKind::InvalidInput,
                "text_layout must not contain NUL characters",
            ));
        }
        v.into_result(())?;
        let master_label = if self.master_label.is_empty() { self.api_name.clone() } else { self.master_label };
        Ok(DefinitionUpsert {
            id,
            api_name: self.api_name,
            master_label,
            definition_type: self.definition_type.unwrap_or(DefinitionType::Notification),
            is_active: self.is_active,
            parameters: self.parameters,
            text_layout: self.text_layout,
            external_template: self.external_template,
            _checked: Checked,
        })
    }
}

/// An end user to create or update.
#[derive(Debug, Clone, Default)]
pub struct EndUserSpec {
    pub id: Option<String>,
    pub channel_id: String,
    pub platform_key: String,
    pub name: String,
    pub consent_status: Option<ConsentStatus>,
}

#[derive(Debug, Clone)]
pub struct EndUserUpsert {
    pub id: Option<RecordId>,
    pub channel_id: RecordId,
    pub platform_key: String,
    pub name: String,
    pub consent_status: ConsentStatus,
    /// Private: a value comes only out of `check_end_users`, never written out field by field.
    _checked: Checked,
}

/// End users per upsert call.
pub const MAX_END_USERS_PER_UPSERT: usize = 1000;

pub fn check_end_users(specs: Vec<EndUserSpec>) -> Result<Vec<EndUserUpsert>, Vec<Violation>> {
    let mut v = Violations::default();
    if specs.is_empty() {
        v.push(Violation::missing("messaging_end_users"));
    }
    if specs.len() > MAX_END_USERS_PER_UPSERT {
        v.push(Violation::new(
            "messaging_end_users",
            ErrorKind::InvalidInput,
            format!("{} end users given; at most {MAX_END_USERS_PER_UPSERT} per call", specs.len()),
        ));
        return v.into_result(Vec::new());
    }
    let mut out = Vec::with_capacity(specs.len());
    for (i, s) in specs.into_iter().enumerate() {
        let field = format!("messaging_end_users[{i}]");
        let id = check_optional_id(&format!("{field}.id"), &s.id, IdKind::MessagingEndUser, &mut v);
        let channel_id = match RecordId::parse(s.channel_id.trim(), IdKind::MessagingChannel) {
            Ok(id) => Some(id),
            Err(_) if s.channel_id.trim().is_empty() => {
                v.push(Violation::missing(format!("{field}.messaging_channel_id")));
                None
            }
            Err(e) => {
                v.push(Violation::new(
                    format!("{field}.messaging_channel_id"),
                    ErrorKind::MalformedId,
                    format!("{} is not a valid id: {e}", quoted(&s.channel_id)),
                ));
                None
            }
        };
        let key = s.platform_key.trim().to_owned();
        refuse_control_characters(&format!("{field}.messaging_platform_key"), &key, &mut v);
        refuse_control_characters(&format!("{field}.name"), &s.name, &mut v);
        if key.is_empty() {
            v.push(Violation::missing(format!("{field}.messaging_platform_key")));
        } else if key.len() > 255 {
            v.push(Violation::new(
                format!("{field}.messaging_platform_key"),
                ErrorKind::InvalidInput,
                "messaging_platform_key is at most 255 characters",
            ));
        }
        if let Some(channel_id) = channel_id {
            out.push(EndUserUpsert {
                id,
                channel_id,
                platform_key: key,
                name: s.name,
                consent_status: s.consent_status.unwrap_or(ConsentStatus::ImplicitlyOptedIn),
                _checked: Checked,
            });
        }
    }
    v.into_result(out)
}

/// A communication subscription to create or update.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionSpec {
    pub id: Option<String>,
    pub developer_name: String,
    pub name: String,
    pub channel_id: String,
    pub is_active: bool,
}

#[derive(Debug, Clone)]
pub struct SubscriptionUpsert {
    pub id: Option<RecordId>,
    pub developer_name: String,
    pub name: String,
    pub channel_id: RecordId,
    pub is_active: bool,
    /// Private: a value comes only out of `SubscriptionSpec::check`, never written out field by field.
    _checked: Checked,
}

impl SubscriptionSpec {
    pub fn check(self) -> Result<SubscriptionUpsert, Vec<Violation>> {
        let mut v = Violations::default();
        let id = check_optional_id("communication_subscription.id", &self.id, IdKind::CommSubscription, &mut v);
        check_api_name("communication_subscription.developer_name", &self.developer_name, &mut v);
        let channel_id = match RecordId::parse(self.channel_id.trim(), IdKind::MessagingChannel) {
            Ok(id) => Some(id),
            Err(e) => {
                v.push(Violation::new(
                    "communication_subscription.messaging_channel_id",
                    ErrorKind::MalformedId,
                    format!("{} is not a valid channel id: {e}", quoted(&self.channel_id)),
                ));
                None
            }
        };
        refuse_control_characters("communication_subscription.name", &self.name, &mut v);
        v.into_result(())?;
        let name = if self.name.is_empty() { self.developer_name.clone() } else { self.name };
        Ok(SubscriptionUpsert {
            id,
            developer_name: self.developer_name,
            name,
            channel_id: channel_id.expect("checked above"),
            is_active: self.is_active,
            _checked: Checked,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_fields_are_found_in_order() {
        assert_eq!(merge_fields("Hi {!Name}, {!Amount} due {! Due }{!"), vec!["Name", "Amount", "Due"]);
    }

    #[test]
    fn a_layout_naming_an_undeclared_parameter_is_rejected() {
        let spec = DefinitionSpec { api_name: "N".into(), text_layout: "Hi {!Who}".into(), ..Default::default() };
        let v = spec.check().unwrap_err();
        assert_eq!(v[0].field, "message_definition.text_layout");
    }

    #[test]
    fn a_component_declaring_more_than_100_parameters_is_refused_before_any_per_parameter_check() {
        let parameter = |i: usize| MessageParameter {
            name: format!("P{i}"),
            label: String::new(),
            value_type: ParameterValueType::Text,
            is_required: false,
            is_list: false,
            max_list_items: 0,
        };
        let spec = |n: usize| DefinitionSpec {
            api_name: "N".into(),
            parameters: (0..n).map(parameter).collect(),
            ..Default::default()
        };
        assert!(spec(MAX_PARAMETERS_PER_DEFINITION).check().is_ok());
        let v = spec(50_000).check().unwrap_err();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "message_definition.parameters");
        assert!(v[0].message.contains("50000 parameters declared"), "{}", v[0].message);
    }

    #[test]
    fn unknown_merge_fields_are_named_once_each_and_at_most_ten_of_them() {
        let layout: String = (0..5_000).map(|i| format!("{{!F{}}}", i % 20)).collect();
        let v = DefinitionSpec { api_name: "N".into(), text_layout: layout, ..Default::default() }.check().unwrap_err();
        assert_eq!(v.len(), 1);
        assert!(v[0].message.starts_with("merge fields F0, F1,"), "{}", v[0].message);
        assert!(v[0].message.contains("and 10 more"), "{}", v[0].message);
    }

    #[test]
    fn a_webhook_channel_needs_an_absolute_http_url_with_a_host() {
        let channel = |url: &str| ChannelSpec {
            developer_name: "hook".into(),
            message_type: Some(MessageType::Custom),
            provider: "webhook".into(),
            provider_options: BTreeMap::from([("url".to_owned(), url.to_owned())]),
            ..Default::default()
        };
        for good in ["https://hooks.example.com/x", "HTTPS://hooks.example.com", "http://10.0.0.1:8080/h?x=1"] {
            assert!(channel(good).check().is_ok(), "{good}");
        }
        for bad in
            ["file:///etc/passwd", "gopher://x/", "hooks.example.com/x", "https://", "https:///x", "https://u:p@h/"]
        {
            let v = channel(bad).check().unwrap_err();
            assert_eq!(v[0].field, "channel.provider_options.url", "{bad}");
        }
    }

    #[test]
    fn a_channel_needs_a_message_type_and_a_known_provider() {
        let v = ChannelSpec { developer_name: "sms".into(), provider: "pigeon".into(), ..Default::default() }
            .check()
            .unwrap_err();
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["channel.message_type", "channel.provider"]);
    }

    #[test]
    fn end_users_need_a_channel_and_a_platform_key() {
        let v = check_end_users(vec![EndUserSpec::default()]).unwrap_err();
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            fields,
            ["messaging_end_users[0].messaging_channel_id", "messaging_end_users[0].messaging_platform_key"]
        );
    }
}
