//! Row shapes as both backends return them (the columns have the same names and the
//! same Rust types on SQLite and PostgreSQL), and their conversion into domain records.
//! Stored picklist values and JSON are parsed back; a value that does not parse means
//! the data was edited outside convmsg and is reported as `Corrupt`, never unwrapped.

use crate::domain::RecordId;
use crate::domain::model::*;
use crate::store::sql::lite::row;
use crate::store::{StoreError, StoreResult};

pub fn parse_pick<T: Picklist>(what: &str, raw: &str) -> StoreResult<T> {
    T::parse_api(raw).ok_or_else(|| StoreError::Corrupt(format!("{what} = {raw:?}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn id(raw: String) -> RecordId {
    RecordId::from_trusted(raw)
}

row! {
    pub struct ChannelRow {
        id: String,
        developer_name: String,
        master_label: String,
        message_type: String,
        consent_type: String,
        provider: String,
        platform_key: String,
        is_active: bool,
        rate_limit_per_second: f64,
        provider_options: String,
        created_ms: i64,
        updated_ms: i64,
    }
}

impl ChannelRow {
    pub fn into_record(self) -> StoreResult<Channel> {
        Ok(Channel {
            message_type: parse_pick("channels.message_type", &self.message_type)?,
            consent_type: parse_pick("channels.consent_type", &self.consent_type)?,
            provider_options: parse_json("channels.provider_options", &self.provider_options)?,
            id: id(self.id),
            developer_name: self.developer_name,
            master_label: self.master_label,
            provider: parse_pick("channels.provider", &self.provider)?,
            messaging_platform_key: self.platform_key,
            is_active: self.is_active,
            rate_limit_per_second: self.rate_limit_per_second,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

row! {
    pub struct DefinitionRow {
        id: String,
        api_name: String,
        master_label: String,
        definition_type: String,
        is_active: bool,
        parameters: String,
        text_layout: String,
        external_template: Option<String>,
        created_ms: i64,
        updated_ms: i64,
    }
}

impl DefinitionRow {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn into_record(self) -> StoreResult<MessageDefinition> {
        Ok(MessageDefinition {
            definition_type: parse_pick("message_definitions.definition_type", &self.definition_type)?,
            parameters: parse_json("message_definitions.parameters", &self.parameters)?,
            external_template: match &self.external_template {
                Some(t) => Some(parse_json("message_definitions.external_template", t)?),
                None => None,
            },
            id: id(self.id),
            api_name: self.api_name,
            master_label: self.master_label,
            is_active: self.is_active,
            text_layout: self.text_layout,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

row! {
    /// An end user joined with its channel's message type and required consent.
    pub struct EndUserRow {
        id: String,
        channel_id: String,
        platform_key: String,
        name: String,
        consent_status: String,
        created_ms: i64,
        updated_ms: i64,
        channel_message_type: String,
        channel_consent_type: String,
    }
}

impl EndUserRow {
    pub fn into_record(self) -> StoreResult<EndUser> {
        let consent_status: ConsentStatus = parse_pick("end_users.consent_status", &self.consent_status)?;
        let required: ChannelConsentLevel = parse_pick("channels.consent_type", &self.channel_consent_type)?;
        Ok(EndUser {
            message_type: parse_pick("channels.message_type", &self.channel_message_type)?,
            is_fully_opted_in: consent_status.meets(required),
            consent_status,
            id: id(self.id),
            channel_id: id(self.channel_id),
            platform_key: self.platform_key,
            name: self.name,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

row! {
    pub struct SessionRow {
        id: String,
        end_user_id: String,
        status: String,
        created_ms: i64,
        updated_ms: i64,
    }
}

impl SessionRow {
    pub fn into_record(self) -> StoreResult<Session> {
        Ok(Session {
            status: parse_pick("sessions.status", &self.status)?,
            id: id(self.id),
            end_user_id: id(self.end_user_id),
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

row! {
    pub struct SubscriptionRow {
        id: String,
        developer_name: String,
        name: String,
        channel_id: String,
        is_active: bool,
        created_ms: i64,
        updated_ms: i64,
    }
}

impl SubscriptionRow {
    pub fn into_record(self) -> Subscription {
        Subscription {
            id: id(self.id),
            developer_name: self.developer_name,
            name: self.name,
            channel_id: id(self.channel_id),
            is_active: self.is_active,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        }
    }
}

row! {
    pub struct RequestRow {
        id: String,
        name: String,
        definition_name: String,
        request_type: String,
        enforce_consent: bool,
        consent_type: String,
        subscription_id: Option<String>,
        allowed_session_status: String,
        status: String,
        parameters: String,
        accepted_ms: i64,
        updated_ms: i64,
        completed_ms: Option<i64>,
        lane: i64,
        send_at_ms: Option<i64>,
        canceled_ms: Option<i64>,
    }
}

impl RequestRow {
    pub fn into_record(self, messages: Vec<MessageRecord>) -> StoreResult<RequestRecord> {
        Ok(RequestRecord {
            request_type: parse_pick("send_requests.request_type", &self.request_type)?,
            status: parse_pick("send_requests.status", &self.status)?,
            consent_type: parse_pick("send_requests.consent_type", &self.consent_type)?,
            allowed_session_status: parse_pick("send_requests.allowed_session_status", &self.allowed_session_status)?,
            id: id(self.id),
            name: self.name,
            message_definition: self.definition_name,
            enforce_consent: self.enforce_consent,
            subscription_id: self.subscription_id.map(id),
            parameters_json: self.parameters,
            messages,
            created_ms: self.accepted_ms,
            updated_ms: self.updated_ms,
            completed_ms: self.completed_ms,
            priority: if self.lane == Priority::Bulk.lane() { Priority::Bulk } else { Priority::Transactional },
            send_at_ms: self.send_at_ms,
            canceled_ms: self.canceled_ms,
        })
    }
}

row! {
    pub struct MessageRow {
        identifier: String,
        end_user_id: String,
        platform_key: String,
        status: String,
        reason: Option<String>,
        waiting_reason: Option<String>,
        attempts: i64,
        provider_message_id: Option<String>,
        created_ms: i64,
        updated_ms: i64,
        delivery_state: Option<String>,
        sent_ms: Option<i64>,
        delivered_ms: Option<i64>,
        read_ms: Option<i64>,
        undelivered_ms: Option<i64>,
        delivery_error_code: Option<String>,
    }
}

impl MessageRow {
    pub fn into_record(self) -> StoreResult<MessageRecord> {
        Ok(MessageRecord {
            status: parse_pick("messages.status", &self.status)?,
            identifier: self.identifier,
            end_user_id: id(self.end_user_id),
            platform_key: self.platform_key,
            reason: self.reason.as_deref().map(|r| parse_pick("messages.reason", r)).transpose()?,
            waiting_reason: self
                .waiting_reason
                .as_deref()
                .map(|r| parse_pick("messages.waiting_reason", r))
                .transpose()?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            provider_message_id: self.provider_message_id,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
            delivery: Delivery {
                state: self.delivery_state.as_deref().map(|s| parse_pick("messages.delivery_state", s)).transpose()?,
                sent_ms: self.sent_ms,
                delivered_ms: self.delivered_ms,
                read_ms: self.read_ms,
                undelivered_ms: self.undelivered_ms,
                error_code: self.delivery_error_code,
            },
        })
    }
}
