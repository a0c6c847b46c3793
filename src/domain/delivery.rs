//! What happens to one message at send time, as pure functions: the gate (channel
//! active, consent, session state and how long a held message may wait) and rendering
//! (merge fields, external templates). The dispatcher gathers the inputs and acts on
//! the answers. No I/O here.

use super::model::*;
use super::params::ParamValue;
use super::reason::{FailureReason, WaitReason};

/// Everything the gate looks at for one message.
#[derive(Debug, Clone)]
pub struct GateInput {
    pub channel_active: bool,
    pub enforce_consent: bool,
    pub consent_type: ConsentType,
    pub end_user_consent: ConsentStatus,
    pub channel_required: ChannelConsentLevel,
    /// The end user's consent to the request's subscription; `None` = never given.
    pub subscription_consent: Option<SubscriptionConsentStatus>,
    pub allowed_session_status: AllowedSessionStatus,
    /// Status of the end user's latest session, if any.
    pub session_status: Option<SessionStatus>,
    /// When the message was first held, if it is being held.
    pub waiting_since_ms: Option<i64>,
    pub now_ms: i64,
    pub session_wait_max_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Send,
    Fail(FailureReason),
    /// Hold the message; look again at `recheck_at_ms` (when the wait expires) or
    /// sooner if the end user's session changes.
    Wait {
        reason: WaitReason,
        since_ms: i64,
        recheck_at_ms: i64,
    },
}

pub fn gate(i: &GateInput) -> Gate {
    if !i.channel_active {
        return Gate::Fail(FailureReason::ChannelInactive);
    }
    if i.enforce_consent {
        let allowed = match i.consent_type {
            ConsentType::MessagingEndUser => i.end_user_consent.meets(i.channel_required),
            ConsentType::CommunicationSubscription => {
                i.subscription_consent == Some(SubscriptionConsentStatus::OptedIn)
            }
            ConsentType::Custom => true,
        };
        if !allowed {
            return Gate::Fail(FailureReason::EndUserIsNotOptedIn);
        }
    }
    let held = match (i.allowed_session_status, i.session_status) {
        (AllowedSessionStatus::NonActive, Some(SessionStatus::Active)) => Some(WaitReason::SessionActive),
        (AllowedSessionStatus::Closed, Some(s)) if s.is_open() => Some(WaitReason::SessionOpen),
        _ => None,
    };
    match held {
        None => Gate::Send,
        Some(why) => {
            let since_ms = i.waiting_since_ms.unwrap_or(i.now_ms);
            let recheck_at_ms = since_ms.saturating_add(i.session_wait_max_ms);
            if i.now_ms >= recheck_at_ms {
                Gate::Fail(FailureReason::SessionWaitExpired)
            } else {
                Gate::Wait { reason: why, since_ms, recheck_at_ms }
            }
        }
    }
}

/// Fills `{!Name}` merge fields; list values are joined with ", "; an optional
/// parameter that was not given renders as nothing.
pub fn render_text(layout: &str, params: &[ParamValue]) -> String {
    let mut out = String::with_capacity(layout.len() + 32);
    let mut rest = layout;
    while let Some(start) = rest.find("{!") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        out.push_str(&rest[..start]);
        out.push_str(&render_param(after[..end].trim(), params));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn render_param(name: &str, params: &[ParamValue]) -> String {
    params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.items.iter().map(|s| s.render()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// A template ready for the provider: name, language and rendered body parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedTemplate {
    pub name: String,
    pub language: String,
    pub body_parameters: Vec<String>,
}

/// The approved template to send, if any. Channels that only allow business-initiated
/// messages through approved templates (WhatsApp) fail without one.
pub fn template_for(
    channel_type: MessageType,
    definition: &MessageDefinition,
    params: &[ParamValue],
) -> Result<Option<RenderedTemplate>, FailureReason> {
    let approved = definition.external_template.as_ref().filter(|t| t.status == ExternalTemplateStatus::Approved);
    match approved {
        Some(t) => Ok(Some(RenderedTemplate {
            name: t.template_name.clone(),
            language: t.language.clone(),
            body_parameters: t.body_parameters.iter().map(|name| render_param(name, params)).collect(),
        })),
        None if channel_type == MessageType::WhatsApp => Err(FailureReason::ApprovedExternalTemplateRequired),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::params::{RawItem, RawParam, RawValue, ValueKey, check_params};

    fn input() -> GateInput {
        GateInput {
            channel_active: true,
            enforce_consent: true,
            consent_type: ConsentType::MessagingEndUser,
            end_user_consent: ConsentStatus::ExplicitlyOptedIn,
            channel_required: ChannelConsentLevel::ExplicitOptIn,
            subscription_consent: None,
            allowed_session_status: AllowedSessionStatus::Any,
            session_status: None,
            waiting_since_ms: None,
            now_ms: 1_000,
            session_wait_max_ms: 10_000,
        }
    }

    #[test]
    fn an_end_user_below_the_channels_consent_level_is_not_opted_in() {
        let i = GateInput { end_user_consent: ConsentStatus::ImplicitlyOptedIn, ..input() };
        assert_eq!(gate(&i), Gate::Fail(FailureReason::EndUserIsNotOptedIn));
        assert_eq!(gate(&GateInput { enforce_consent: false, ..i.clone() }), Gate::Send);
        assert_eq!(gate(&GateInput { end_user_consent: ConsentStatus::DoublyOptedIn, ..i }), Gate::Send);
    }

    #[test]
    fn subscription_consent_needs_an_opt_in_to_that_subscription() {
        let i = GateInput { consent_type: ConsentType::CommunicationSubscription, ..input() };
        assert_eq!(gate(&i), Gate::Fail(FailureReason::EndUserIsNotOptedIn));
        let out = GateInput { subscription_consent: Some(SubscriptionConsentStatus::OptedOut), ..i.clone() };
        assert_eq!(gate(&out), Gate::Fail(FailureReason::EndUserIsNotOptedIn));
        let opted = GateInput { subscription_consent: Some(SubscriptionConsentStatus::OptedIn), ..i };
        assert_eq!(gate(&opted), Gate::Send);
    }

    #[test]
    fn custom_consent_is_not_enforced_even_for_opted_out_users() {
        let i = GateInput {
            consent_type: ConsentType::Custom,
            enforce_consent: false,
            end_user_consent: ConsentStatus::OptedOut,
            ..input()
        };
        assert_eq!(gate(&i), Gate::Send);
    }

    #[test]
    fn an_inactive_channel_fails_first() {
        assert_eq!(gate(&GateInput { channel_active: false, ..input() }), Gate::Fail(FailureReason::ChannelInactive));
    }

    #[test]
    fn non_active_waits_only_while_the_session_is_active() {
        let i = GateInput { allowed_session_status: AllowedSessionStatus::NonActive, ..input() };
        let active = GateInput { session_status: Some(SessionStatus::Active), ..i.clone() };
        assert_eq!(
            gate(&active),
            Gate::Wait { reason: WaitReason::SessionActive, since_ms: 1_000, recheck_at_ms: 11_000 }
        );
        assert_eq!(gate(&GateInput { session_status: Some(SessionStatus::Waiting), ..i.clone() }), Gate::Send);
        assert_eq!(gate(&GateInput { session_status: None, ..i }), Gate::Send);
    }

    #[test]
    fn closed_waits_while_any_session_is_open() {
        let i = GateInput { allowed_session_status: AllowedSessionStatus::Closed, ..input() };
        for open in [SessionStatus::New, SessionStatus::Waiting, SessionStatus::Paused, SessionStatus::Inactive] {
            assert!(matches!(gate(&GateInput { session_status: Some(open), ..i.clone() }), Gate::Wait { .. }));
        }
        for closed in [SessionStatus::Ended, SessionStatus::Error] {
            assert_eq!(gate(&GateInput { session_status: Some(closed), ..i.clone() }), Gate::Send);
        }
    }

    #[test]
    fn a_held_message_fails_once_the_maximum_wait_has_passed() {
        let i = GateInput {
            allowed_session_status: AllowedSessionStatus::Closed,
            session_status: Some(SessionStatus::Active),
            waiting_since_ms: Some(1_000),
            ..input()
        };
        assert!(matches!(gate(&GateInput { now_ms: 10_999, ..i.clone() }), Gate::Wait { since_ms: 1_000, .. }));
        assert_eq!(gate(&GateInput { now_ms: 11_000, ..i }), Gate::Fail(FailureReason::SessionWaitExpired));
    }

    /// A text parameter (a list when `key` is a list key), checked as a request's would be.
    fn text(name: &str, items: &[&str], key: ValueKey) -> ParamValue {
        let declared = MessageParameter {
            name: name.into(),
            label: String::new(),
            value_type: ParameterValueType::Text,
            is_required: false,
            is_list: key.is_list(),
            max_list_items: 0,
        };
        let items = items.iter().map(|s| RawItem::Str(s.to_string())).collect();
        let raw = RawParam { name: name.into(), values: vec![RawValue { key, items }] };
        check_params(&[declared], vec![raw]).unwrap().remove(0)
    }

    #[test]
    fn merge_fields_are_filled_and_missing_optional_ones_render_empty() {
        let params = vec![text("Name", &["Ada"], ValueKey::Text), text("Tags", &["a", "b"], ValueKey::TextList)];
        assert_eq!(render_text("Hi {!Name} [{!Tags}] {!Missing}.", &params), "Hi Ada [a, b] .");
        assert_eq!(render_text("no fields {! unclosed", &params), "no fields {! unclosed");
    }

    fn definition(template: Option<ExternalTemplate>) -> MessageDefinition {
        MessageDefinition {
            id: crate::domain::RecordId::generate(crate::domain::IdKind::MessageDefinition),
            api_name: "N".into(),
            master_label: "N".into(),
            definition_type: DefinitionType::Notification,
            is_active: true,
            parameters: vec![],
            text_layout: String::new(),
            external_template: template,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn template(status: ExternalTemplateStatus) -> ExternalTemplate {
        ExternalTemplate {
            template_name: "order_update".into(),
            language: "en_US".into(),
            status,
            account_identifier: String::new(),
            body_parameters: vec!["Name".into()],
        }
    }

    #[test]
    fn whatsapp_needs_an_approved_template_other_channels_do_not() {
        let params = vec![text("Name", &["Ada"], ValueKey::Text)];
        assert_eq!(
            template_for(MessageType::WhatsApp, &definition(None), &params),
            Err(FailureReason::ApprovedExternalTemplateRequired)
        );
        let pending = definition(Some(template(ExternalTemplateStatus::Pending)));
        assert_eq!(
            template_for(MessageType::WhatsApp, &pending, &params),
            Err(FailureReason::ApprovedExternalTemplateRequired)
        );
        assert_eq!(template_for(MessageType::Text, &definition(None), &params), Ok(None));
        let approved = definition(Some(template(ExternalTemplateStatus::Approved)));
        let t = template_for(MessageType::WhatsApp, &approved, &params).unwrap().unwrap();
        assert_eq!(t.body_parameters, vec!["Ada".to_owned()]);
    }
}
