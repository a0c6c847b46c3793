//! proto ⇄ domain conversion, done once at the edge. Enum numbers the contract does not
//! define become field-named violations; `_UNSPECIFIED` becomes "not given".

use std::collections::BTreeMap;

use prost_types::Timestamp;

use super::pb;
use crate::domain::admin::*;
use crate::domain::model::*;
use crate::domain::params::{ParamValue, RawItem, RawParam, RawValue, Scalar, ValueKey, params_from_json};
use crate::domain::send::SendInput;
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;

pub fn timestamp(ms: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
}

/// Maps a proto enum number: 0 → `None` (not given), a known value → `Some`, anything
/// else → a violation naming the field.
fn enum_field<P, D>(field: &str, raw: i32, map: impl Fn(P) -> Option<D>, v: &mut Vec<Violation>) -> Option<D>
where
    P: TryFrom<i32>,
{
    match P::try_from(raw) {
        Ok(p) => map(p),
        Err(_) => {
            v.push(Violation::new(field, ErrorKind::InvalidInput, format!("{raw} is not a valid value for {field}")));
            None
        }
    }
}

fn finish<T>(violations: Vec<Violation>, value: T) -> Result<T, AppError> {
    if violations.is_empty() { Ok(value) } else { Err(AppError::Invalid(violations)) }
}

pub fn send_input(req: pb::SendConversationMessagesRequest) -> Result<SendInput, AppError> {
    use pb::{AllowedSessionStatus as A, ChannelConsentType as C, Priority as P, RequestType as R};
    let mut v = Vec::new();
    let request_type = enum_field(
        "requestType",
        req.request_type,
        |p: R| match p {
            R::Unspecified => None,
            R::SendNotificationMessages => Some(RequestType::SendNotificationMessages),
        },
        &mut v,
    );
    let consent_type = enum_field(
        "channelConsentType",
        req.channel_consent_type,
        |p: C| match p {
            C::Unspecified => None,
            C::MessagingEndUser => Some(ConsentType::MessagingEndUser),
            C::CommunicationSubscription => Some(ConsentType::CommunicationSubscription),
            C::Custom => Some(ConsentType::Custom),
        },
        &mut v,
    );
    let allowed_session_status = enum_field(
        "allowedSessionStatus",
        req.allowed_session_status,
        |p: A| match p {
            A::Unspecified => None,
            A::Any => Some(AllowedSessionStatus::Any),
            A::NonActive => Some(AllowedSessionStatus::NonActive),
            A::Closed => Some(AllowedSessionStatus::Closed),
        },
        &mut v,
    );
    let priority = enum_field(
        "priority",
        req.priority,
        |p: P| match p {
            P::Unspecified => None,
            P::Transactional => Some(Priority::Transactional),
            P::Bulk => Some(Priority::Bulk),
        },
        &mut v,
    );
    let send_at_ms = match req.send_at {
        None => None,
        Some(t) if (0..1_000_000_000).contains(&t.nanos) => {
            Some(t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos / 1_000_000)))
        }
        Some(_) => {
            v.push(Violation::new("sendAt", ErrorKind::InvalidInput, "sendAt has nanos outside 0..1e9"));
            None
        }
    };
    let input = SendInput {
        message_definition_name: req.message_definition_name,
        parameters: req.messaging_definition_input_parameters.into_iter().map(raw_param).collect(),
        request_type,
        enforce_consent: req.is_enforce_messaging_channel_consent,
        consent_type,
        communication_subscription_id: Some(req.communication_subscription_id).filter(|s| !s.is_empty()),
        allowed_session_status,
        end_user_ids: req.messaging_end_user_ids,
        idempotency_key: Some(req.idempotency_key).filter(|s| !s.is_empty()),
        priority,
        send_at_ms,
    };
    finish(v, input)
}

fn raw_param(p: pb::MessageDefinitionInputParameter) -> RawParam {
    use pb::message_definition_input_parameter::Value as V;
    let strs = |items: Vec<String>| items.into_iter().map(RawItem::Str).collect();
    let instant = |t: Timestamp| RawItem::Instant { seconds: t.seconds, nanos: t.nanos };
    let value = p.value.map(|value| match value {
        V::TextValue(s) => RawValue { key: ValueKey::Text, items: vec![RawItem::Str(s)] },
        V::RecordIdValue(s) => RawValue { key: ValueKey::RecordId, items: vec![RawItem::Str(s)] },
        V::DateValue(s) => RawValue { key: ValueKey::Date, items: vec![RawItem::Str(s)] },
        V::DateTimeValue(t) => RawValue { key: ValueKey::DateTime, items: vec![instant(t)] },
        V::NumberValue(n) => RawValue { key: ValueKey::Number, items: vec![RawItem::Number(n)] },
        V::BooleanValue(b) => RawValue { key: ValueKey::Boolean, items: vec![RawItem::Bool(b)] },
        V::TextValues(l) => RawValue { key: ValueKey::TextList, items: strs(l.values) },
        V::RecordIdValues(l) => RawValue { key: ValueKey::RecordIdList, items: strs(l.values) },
        V::DateValues(l) => RawValue { key: ValueKey::DateList, items: strs(l.values) },
        V::DateTimeValues(l) => {
            RawValue { key: ValueKey::DateTimeList, items: l.values.into_iter().map(instant).collect() }
        }
        V::NumberValues(l) => {
            RawValue { key: ValueKey::NumberList, items: l.values.into_iter().map(RawItem::Number).collect() }
        }
        V::BooleanValues(l) => {
            RawValue { key: ValueKey::BooleanList, items: l.values.into_iter().map(RawItem::Bool).collect() }
        }
    });
    RawParam { name: p.name, values: value.into_iter().collect() }
}

fn proto_param(p: ParamValue) -> pb::MessageDefinitionInputParameter {
    use pb::message_definition_input_parameter::Value as V;
    let texts = |items: &[Scalar]| items.iter().map(Scalar::render).collect::<Vec<_>>();
    let stamp = |s: &Scalar| match s {
        Scalar::DateTime(t) => Timestamp { seconds: t.unix_timestamp(), nanos: t.nanosecond() as i32 },
        _ => Timestamp::default(),
    };
    let number = |s: &Scalar| if let Scalar::Number(n) = s { *n } else { 0.0 };
    let boolean = |s: &Scalar| matches!(s, Scalar::Boolean(true));
    let first = p.items.first();
    let first_text = || first.map(Scalar::render).unwrap_or_default();
    let value = match p.key {
        ValueKey::Text => V::TextValue(first_text()),
        ValueKey::RecordId => V::RecordIdValue(first_text()),
        ValueKey::Date => V::DateValue(first_text()),
        ValueKey::DateTime => V::DateTimeValue(first.map(stamp).unwrap_or_default()),
        ValueKey::Number => V::NumberValue(first.map(number).unwrap_or_default()),
        ValueKey::Boolean => V::BooleanValue(first.map(boolean).unwrap_or_default()),
        ValueKey::TextList => V::TextValues(pb::TextValues { values: texts(&p.items) }),
        ValueKey::RecordIdList => V::RecordIdValues(pb::RecordIdValues { values: texts(&p.items) }),
        ValueKey::DateList => V::DateValues(pb::DateValues { values: texts(&p.items) }),
        ValueKey::DateTimeList => V::DateTimeValues(pb::DateTimeValues { values: p.items.iter().map(stamp).collect() }),
        ValueKey::NumberList => V::NumberValues(pb::NumberValues { values: p.items.iter().map(number).collect() }),
        ValueKey::BooleanList => V::BooleanValues(pb::BooleanValues { values: p.items.iter().map(boolean).collect() }),
    };
    pb::MessageDefinitionInputParameter { name: p.name, value: Some(value) }
}

fn request_status(s: RequestStatus) -> pb::RequestStatus {
    match s {
        RequestStatus::Pending => pb::RequestStatus::Pending,
        RequestStatus::InProgress => pb::RequestStatus::InProgress,
        RequestStatus::Completed => pb::RequestStatus::Completed,
    }
}

fn message_state(s: MessageState) -> pb::MessageState {
    match s {
        MessageState::Pending => pb::MessageState::Pending,
        MessageState::InProgress => pb::MessageState::InProgress,
        MessageState::Success => pb::MessageState::Success,
        MessageState::Failed => pb::MessageState::Failed,
    }
}

/// A record of a `ListRequests` page: its counts as read alongside it (its messages are
/// listed only in the full view).
pub fn queried_request(q: crate::store::reads::QueriedRequest, with_messages: bool) -> pb::ConvMessageSendRequest {
    let counts = q.counts;
    let mut record = request_record(q.record);
    if !with_messages {
        record.messages.clear();
    }
    let n = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
    record.total_message_count = n(counts.total);
    record.pending_message_count = n(counts.pending);
    record.in_progress_message_count = n(counts.in_progress);
    record.success_message_count = n(counts.success);
    record.failed_message_count = n(counts.failed);
    record
}

pub fn request_record(r: RequestRecord) -> pb::ConvMessageSendRequest {
    let count = |s| r.count(s) as u32;
    pb::ConvMessageSendRequest {
        total_message_count: r.messages.len() as u32,
        pending_message_count: count(MessageState::Pending),
        in_progress_message_count: count(MessageState::InProgress),
        success_message_count: count(MessageState::Success),
        failed_message_count: count(MessageState::Failed),
        id: r.id.to_string(),
        name: r.name.clone(),
        message_definition: r.message_definition.clone(),
        request_type: pb::RequestType::SendNotificationMessages as i32,
        request_status: request_status(r.status) as i32,
        should_enforce_channel_consent: r.enforce_consent,
        request_consent_type: match r.consent_type {
            ConsentType::MessagingEndUser => pb::ChannelConsentType::MessagingEndUser,
            ConsentType::CommunicationSubscription => pb::ChannelConsentType::CommunicationSubscription,
            ConsentType::Custom => pb::ChannelConsentType::Custom,
        } as i32,
        comm_subscription_id: r.subscription_id.as_ref().map(|id| id.to_string()).unwrap_or_default(),
        allow_existing_session_status: match r.allowed_session_status {
            AllowedSessionStatus::Any => pb::AllowedSessionStatus::Any,
            AllowedSessionStatus::NonActive => pb::AllowedSessionStatus::NonActive,
            AllowedSessionStatus::Closed => pb::AllowedSessionStatus::Closed,
        } as i32,
        message_definition_parameters: params_from_json(&r.parameters_json).into_iter().map(proto_param).collect(),
        created_date: timestamp(r.created_ms),
        last_modified_date: timestamp(r.updated_ms),
        completed_date: r.completed_ms.and_then(timestamp),
        priority: match r.priority {
            Priority::Transactional => pb::Priority::Transactional,
            Priority::Bulk => pb::Priority::Bulk,
        } as i32,
        send_at: r.send_at_ms.and_then(timestamp),
        canceled_date: r.canceled_ms.and_then(timestamp),
        messages: r
            .messages
            .into_iter()
            .map(|m| pb::MessageStatus {
                message_identifier: m.identifier,
                messaging_end_user_id: m.end_user_id.into_string(),
                platform_key: m.platform_key,
                status: message_state(m.status) as i32,
                reason: m.reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                waiting_reason: m.waiting_reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
                attempts: m.attempts,
                provider_message_id: m.provider_message_id.unwrap_or_default(),
                created_date: timestamp(m.created_ms),
                last_modified_date: timestamp(m.updated_ms),
                delivery_state: delivery_state(m.delivery.state) as i32,
                sent_date: m.delivery.sent_ms.and_then(timestamp),
                delivered_date: m.delivery.delivered_ms.and_then(timestamp),
                read_date: m.delivery.read_ms.and_then(timestamp),
                undelivered_date: m.delivery.undelivered_ms.and_then(timestamp),
                delivery_error_code: m.delivery.error_code.unwrap_or_default(),
            })
            .collect(),
    }
}

fn delivery_state(state: Option<DeliveryState>) -> pb::DeliveryState {
    match state {
        None => pb::DeliveryState::Unspecified,
        Some(DeliveryState::Sent) => pb::DeliveryState::Sent,
        Some(DeliveryState::Delivered) => pb::DeliveryState::Delivered,
        Some(DeliveryState::Read) => pb::DeliveryState::Read,
        Some(DeliveryState::Undelivered) => pb::DeliveryState::Undelivered,
    }
}

// ---- admin ------------------------------------------------------------------------

/// Declares both directions of a proto enum ⇄ domain picklist mapping.
macro_rules! enum_map {
    ($to_domain:ident, $to_proto:ident, $p:ty, $d:ty, { $($pv:ident <=> $dv:ident),+ $(,)? }) => {
        fn $to_domain(p: $p) -> Option<$d> {
            match p { <$p>::Unspecified => None, $(<$p>::$pv => Some(<$d>::$dv)),+ }
        }
        fn $to_proto(d: $d) -> i32 {
            (match d { $(<$d>::$dv => <$p>::$pv),+ }) as i32
        }
    };
}

enum_map!(message_type, message_type_proto, pb::MessageType, MessageType, {
    AppleBusinessChat <=> AppleBusinessChat, Custom <=> Custom, EmbeddedMessaging <=> EmbeddedMessaging,
    Facebook <=> Facebook, Phone <=> Phone, Text <=> Text, Voice <=> Voice, Whatsapp <=> WhatsApp,
});
enum_map!(consent_level, consent_level_proto, pb::ChannelConsentLevel, ChannelConsentLevel, {
    ImplicitOptIn <=> ImplicitOptIn, ExplicitOptIn <=> ExplicitOptIn, DoubleOptIn <=> DoubleOptIn,
});
enum_map!(consent_status, consent_status_proto, pb::ConsentStatus, ConsentStatus, {
    OptedOut <=> OptedOut, ImplicitlyOptedIn <=> ImplicitlyOptedIn, ExplicitlyOptedIn <=> ExplicitlyOptedIn,
    DoublyOptedIn <=> DoublyOptedIn,
});
enum_map!(definition_type, definition_type_proto, pb::DefinitionType, DefinitionType, {
    Notification <=> Notification, Action <=> Action, AutoResponse <=> AutoResponse, Link <=> Link,
});
enum_map!(value_type, value_type_proto, pb::ParameterValueType, ParameterValueType, {
    Text <=> Text, Url <=> Url, RecordId <=> RecordId, ImageId <=> ImageId, Date <=> Date, DateTime <=> DateTime,
    Integer <=> Integer, Double <=> Double, Boolean <=> Boolean,
});
enum_map!(template_status, template_status_proto, pb::ExternalTemplateStatus, ExternalTemplateStatus, {
    Approved <=> Approved, Pending <=> Pending, Rejected <=> Rejected, Paused <=> Paused, Disabled <=> Disabled,
});
enum_map!(session_status, session_status_proto, pb::SessionStatus, SessionStatus, {
    New <=> New, Active <=> Active, Consent <=> Consent, Waiting <=> Waiting, Paused <=> Paused,
    Inactive <=> Inactive, Ended <=> Ended, Error <=> Error,
});
enum_map!(subscription_consent, _subscription_consent_proto, pb::SubscriptionConsentStatus, SubscriptionConsentStatus, {
    OptedIn <=> OptedIn, OptedOut <=> OptedOut,
});

fn opt_id(s: String) -> Option<String> {
    Some(s).filter(|s| !s.trim().is_empty())
}

pub fn channel_spec(c: Option<pb::Channel>) -> Result<ChannelSpec, AppError> {
    let c = c.ok_or_else(|| AppError::invalid(Violation::missing("channel")))?;
    let mut v = Vec::new();
    let spec = ChannelSpec {
        message_type: enum_field("channel.message_type", c.message_type, message_type, &mut v),
        consent_type: enum_field("channel.consent_type", c.consent_type, consent_level, &mut v),
        id: opt_id(c.id),
        developer_name: c.developer_name,
        master_label: c.master_label,
        provider: c.provider,
        messaging_platform_key: c.messaging_platform_key,
        is_active: c.is_active,
        rate_limit_per_second: c.rate_limit_per_second,
        provider_options: c.provider_options.into_iter().collect::<BTreeMap<_, _>>(),
    };
    finish(v, spec)
}

pub fn channel(c: Channel) -> pb::Channel {
    pb::Channel {
        id: c.id.into_string(),
        developer_name: c.developer_name,
        master_label: c.master_label,
        message_type: message_type_proto(c.message_type),
        consent_type: consent_level_proto(c.consent_type),
        provider: c.provider.as_str().to_owned(),
        messaging_platform_key: c.messaging_platform_key,
        is_active: c.is_active,
        rate_limit_per_second: c.rate_limit_per_second,
        provider_options: c.provider_options.into_iter().collect(),
        created_date: timestamp(c.created_ms),
        last_modified_date: timestamp(c.updated_ms),
    }
}

pub fn definition_spec(d: Option<pb::MessageDefinition>) -> Result<DefinitionSpec, AppError> {
    let d = d.ok_or_else(|| AppError::invalid(Violation::missing("message_definition")))?;
    let mut v = Vec::new();
    let definition_type = enum_field("message_definition.type", d.r#type, definition_type, &mut v);
    let parameters = d
        .parameters
        .into_iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let field = format!("message_definition.parameters[{i}].value_type");
            let Some(value_type) = enum_field(&field, p.value_type, value_type, &mut v) else {
                if p.value_type == 0 {
                    v.push(Violation::missing(field));
                }
                return None;
            };
            Some(MessageParameter {
                name: p.name,
                label: p.label,
                value_type,
                is_required: p.is_required,
                is_list: p.is_list,
                max_list_items: p.max_list_items,
            })
        })
        .collect();
    let external_template = d.external_template.map(|t| ExternalTemplate {
        status: enum_field("message_definition.external_template.status", t.status, template_status, &mut v)
            .unwrap_or(ExternalTemplateStatus::Pending),
        template_name: t.template_name,
        language: t.language,
        account_identifier: t.account_identifier,
        body_parameters: t.body_parameters,
    });
    let spec = DefinitionSpec {
        id: opt_id(d.id),
        api_name: d.api_name,
        master_label: d.master_label,
        definition_type,
        is_active: d.is_active,
        parameters,
        text_layout: d.text_layout,
        external_template,
    };
    finish(v, spec)
}

pub fn definition(d: MessageDefinition) -> pb::MessageDefinition {
    pb::MessageDefinition {
        id: d.id.into_string(),
        api_name: d.api_name,
        master_label: d.master_label,
        r#type: definition_type_proto(d.definition_type),
        is_active: d.is_active,
        parameters: d
            .parameters
            .into_iter()
            .map(|p| pb::MessageParameter {
                name: p.name,
                label: p.label,
                value_type: value_type_proto(p.value_type),
                is_required: p.is_required,
                is_list: p.is_list,
                max_list_items: p.max_list_items,
            })
            .collect(),
        text_layout: d.text_layout,
        external_template: d.external_template.map(|t| pb::ExternalTemplate {
            template_name: t.template_name,
            language: t.language,
            status: template_status_proto(t.status),
            account_identifier: t.account_identifier,
            body_parameters: t.body_parameters,
        }),
        created_date: timestamp(d.created_ms),
        last_modified_date: timestamp(d.updated_ms),
    }
}

pub fn end_user_specs(users: Vec<pb::MessagingEndUser>) -> Result<Vec<EndUserSpec>, AppError> {
    let mut v = Vec::new();
    let specs = users
        .into_iter()
        .enumerate()
        .map(|(i, u)| EndUserSpec {
            consent_status: enum_field(
                &format!("messaging_end_users[{i}].messaging_consent_status"),
                u.messaging_consent_status,
                consent_status,
                &mut v,
            ),
            id: opt_id(u.id),
            channel_id: u.messaging_channel_id,
            platform_key: u.messaging_platform_key,
            name: u.name,
        })
        .collect();
    finish(v, specs)
}

pub fn end_user(u: EndUser) -> pb::MessagingEndUser {
    pb::MessagingEndUser {
        id: u.id.into_string(),
        messaging_channel_id: u.channel_id.into_string(),
        messaging_platform_key: u.platform_key,
        name: u.name,
        messaging_consent_status: consent_status_proto(u.consent_status),
        message_type: message_type_proto(u.message_type),
        is_fully_opted_in: u.is_fully_opted_in,
        created_date: timestamp(u.created_ms),
        last_modified_date: timestamp(u.updated_ms),
    }
}

pub fn session_status_input(raw: i32) -> Result<Option<SessionStatus>, AppError> {
    let mut v = Vec::new();
    let status = enum_field("status", raw, session_status, &mut v);
    finish(v, status)
}

pub fn session(s: Session) -> pb::MessagingSession {
    pb::MessagingSession {
        id: s.id.into_string(),
        messaging_end_user_id: s.end_user_id.into_string(),
        status: session_status_proto(s.status),
        created_date: timestamp(s.created_ms),
        last_modified_date: timestamp(s.updated_ms),
    }
}

pub fn subscription_spec(s: Option<pb::CommunicationSubscription>) -> Result<SubscriptionSpec, AppError> {
    let s = s.ok_or_else(|| AppError::invalid(Violation::missing("communication_subscription")))?;
    Ok(SubscriptionSpec {
        id: opt_id(s.id),
        developer_name: s.developer_name,
        name: s.name,
        channel_id: s.messaging_channel_id,
        is_active: s.is_active,
    })
}

pub fn subscription(s: Subscription) -> pb::CommunicationSubscription {
    pb::CommunicationSubscription {
        id: s.id.into_string(),
        developer_name: s.developer_name,
        name: s.name,
        messaging_channel_id: s.channel_id.into_string(),
        is_active: s.is_active,
        created_date: timestamp(s.created_ms),
        last_modified_date: timestamp(s.updated_ms),
    }
}

pub fn subscription_consent_input(raw: i32) -> Result<Option<SubscriptionConsentStatus>, AppError> {
    let mut v = Vec::new();
    let status = enum_field("status", raw, subscription_consent, &mut v);
    finish(v, status)
}
