//! Domain records and picklists: channels, messaging components, end users, sessions,
//! subscriptions and send requests. Picklist values carry their Salesforce API names,
//! used in storage and on the REST bridge. Pure data: no I/O, no wire types.

use serde::{Deserialize, Serialize};

use super::ids::RecordId;
use super::reason::{FailureReason, WaitReason};

/// A picklist: an enum stored and shown as its Salesforce API value.
pub trait Picklist: Sized + Copy {
    fn parse_api(value: &str) -> Option<Self>;
}

/// Declares a picklist enum with its Salesforce API value for each variant.
macro_rules! picklist {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $api:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The Salesforce API value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $api),+ }
            }

            /// Parses the Salesforce API value (exact match).
            pub fn parse(value: &str) -> Option<Self> {
                match value { $($api => Some($name::$variant),)+ _ => None }
            }

            /// The API values, comma-separated, for error messages.
            pub fn allowed() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl Picklist for $name {
            fn parse_api(value: &str) -> Option<Self> {
                Self::parse(value)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use picklist;

picklist!(RequestType { SendNotificationMessages => "SendNotificationMessages" });
picklist!(
    /// `channelConsentType`.
    ConsentType {
        MessagingEndUser => "MessagingEndUser",
        CommunicationSubscription => "CommunicationSubscription",
        Custom => "Custom",
    }
);
picklist!(
    /// `allowedSessionStatus` / `AllowExistingSessionStatus`.
    AllowedSessionStatus { Any => "Any", NonActive => "NonActive", Closed => "Closed" }
);
picklist!(
    /// Which lane of the queue a request waits in (beyond Salesforce; see `schedule`).
    Priority { Transactional => "Transactional", Bulk => "Bulk" }
);

impl Priority {
    /// The stored lane number: lower lanes are claimed first.
    pub fn lane(self) -> i64 {
        match self {
            Priority::Transactional => 0,
            Priority::Bulk => 1,
        }
    }
}

picklist!(RequestStatus { Pending => "Pending", InProgress => "InProgress", Completed => "Completed" });
picklist!(MessageState {
    Pending => "Pending",
    InProgress => "InProgress",
    Success => "Success",
    Failed => "Failed",
});
picklist!(
    /// What the provider reported after accepting a message (receipts; `domain::receipt`).
    DeliveryState {
        Sent => "Sent",
        Delivered => "Delivered",
        Read => "Read",
        Undelivered => "Undelivered",
    }
);
picklist!(MessageType {
    AppleBusinessChat => "AppleBusinessChat",
    Custom => "Custom",
    EmbeddedMessaging => "EmbeddedMessaging",
    Facebook => "Facebook",
    Phone => "Phone",
    Text => "Text",
    Voice => "Voice",
    WhatsApp => "WhatsApp",
});
picklist!(
    /// `MessagingChannel.ConsentType`: the level a channel requires, in increasing strength.
    ChannelConsentLevel {
        ImplicitOptIn => "ImplicitOptIn",
        ExplicitOptIn => "ExplicitOptIn",
        DoubleOptIn => "DoubleOptIn",
    }
);
picklist!(
    /// `MessagingEndUser.MessagingConsentStatus`.
    ConsentStatus {
        OptedOut => "OptedOut",
        ImplicitlyOptedIn => "ImplicitlyOptedIn",
        ExplicitlyOptedIn => "ExplicitlyOptedIn",
        DoublyOptedIn => "DoublyOptedIn",
    }
);
picklist!(DefinitionType {
    Notification => "Notification",
    Action => "Action",
    AutoResponse => "AutoResponse",
    Link => "Link",
});
picklist!(ParameterValueType {
    Text => "Text",
    Url => "Url",
    RecordId => "RecordId",
    ImageId => "ImageId",
    Date => "Date",
    DateTime => "DateTime",
    Integer => "Integer",
    Double => "Double",
    Boolean => "Boolean",
});
picklist!(ExternalTemplateStatus {
    Approved => "Approved",
    Pending => "Pending",
    Rejected => "Rejected",
    Paused => "Paused",
    Disabled => "Disabled",
});
picklist!(SessionStatus {
    New => "New",
    Active => "Active",
    Consent => "Consent",
    Waiting => "Waiting",
    Paused => "Paused",
    Inactive => "Inactive",
    Ended => "Ended",
    Error => "Error",
});
picklist!(SubscriptionConsentStatus { OptedIn => "OptedIn", OptedOut => "OptedOut" });

impl ChannelConsentLevel {
    fn rank(self) -> u8 {
        match self {
            ChannelConsentLevel::ImplicitOptIn => 1,
            ChannelConsentLevel::ExplicitOptIn => 2,
            ChannelConsentLevel::DoubleOptIn => 3,
        }
    }
}

impl ConsentStatus {
    /// Whether this status meets a channel's required level (OptedOut never does).
    pub fn meets(self, required: ChannelConsentLevel) -> bool {
        let rank = match self {
            ConsentStatus::OptedOut => return false,
            ConsentStatus::ImplicitlyOptedIn => 1,
            ConsentStatus::ExplicitlyOptedIn => 2,
            ConsentStatus::DoublyOptedIn => 3,
        };
        rank >= required.rank()
    }
}

impl SessionStatus {
    /// Open = any status other than Ended and Error (spec §10.3).
    pub fn is_open(self) -> bool {
        !matches!(self, SessionStatus::Ended | SessionStatus::Error)
    }
}

picklist!(
    /// The providers a channel can be bound to, by the name a channel stores.
    ProviderName { Log => "log", Webhook => "webhook", WhatsApp => "whatsapp", Twilio => "twilio" }
);

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub id: RecordId,
    pub developer_name: String,
    pub master_label: String,
    pub message_type: MessageType,
    pub consent_type: ChannelConsentLevel,
    pub provider: ProviderName,
    pub messaging_platform_key: String,
    pub is_active: bool,
    pub rate_limit_per_second: f64,
    pub provider_options: std::collections::BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One parameter a messaging component declares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageParameter {
    pub name: String,
    #[serde(default)]
    pub label: String,
    #[serde(with = "value_type_serde")]
    pub value_type: ParameterValueType,
    #[serde(default)]
    pub is_required: bool,
    #[serde(default)]
    pub is_list: bool,
    #[serde(default)]
    pub max_list_items: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalTemplate {
    pub template_name: String,
    #[serde(default)]
    pub language: String,
    #[serde(with = "template_status_serde")]
    pub status: ExternalTemplateStatus,
    #[serde(default)]
    pub account_identifier: String,
    #[serde(default)]
    pub body_parameters: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageDefinition {
    pub id: RecordId,
    pub api_name: String,
    pub master_label: String,
    pub definition_type: DefinitionType,
    pub is_active: bool,
    pub parameters: Vec<MessageParameter>,
    pub text_layout: String,
    pub external_template: Option<ExternalTemplate>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EndUser {
    pub id: RecordId,
    pub channel_id: RecordId,
    pub platform_key: String,
    pub name: String,
    pub consent_status: ConsentStatus,
    /// From the channel, for display.
    pub message_type: MessageType,
    /// Whether `consent_status` meets the channel's required level.
    pub is_fully_opted_in: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: RecordId,
    pub end_user_id: RecordId,
    pub status: SessionStatus,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: RecordId,
    pub developer_name: String,
    pub name: String,
    pub channel_id: RecordId,
    pub is_active: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One message (one recipient) of a send request, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub identifier: String,
    pub end_user_id: RecordId,
    pub platform_key: String,
    pub status: MessageState,
    pub reason: Option<FailureReason>,
    pub waiting_reason: Option<WaitReason>,
    pub attempts: u32,
    pub provider_message_id: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// After the provider accepted it: its delivery as receipts report it (`None` until
    /// sent). Beside `status`, which keeps Salesforce's meaning (Success = sent).
    pub delivery: Delivery,
}

/// A message's delivery state and when each step was first reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub state: Option<DeliveryState>,
    pub sent_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub read_ms: Option<i64>,
    pub undelivered_ms: Option<i64>,
    /// The provider's error code when `Undelivered` (Twilio `ErrorCode`, WhatsApp
    /// `errors[].code`, a gateway's `errorCode`).
    pub error_code: Option<String>,
}

/// The ConvMessageSendRequest record with its messages in recipient order.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub id: RecordId,
    pub name: String,
    pub message_definition: String,
    pub request_type: RequestType,
    pub status: RequestStatus,
    pub enforce_consent: bool,
    pub consent_type: ConsentType,
    pub subscription_id: Option<RecordId>,
    pub allowed_session_status: AllowedSessionStatus,
    /// The validated parameters in Salesforce JSON form (`[{"name":…,"textValue":…}]`).
    pub parameters_json: String,
    pub messages: Vec<MessageRecord>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub completed_ms: Option<i64>,
    pub priority: Priority,
    /// When it was scheduled for (`send_at`), if it was.
    pub send_at_ms: Option<i64>,
    /// When `CancelRequest` was acknowledged, if it was.
    pub canceled_ms: Option<i64>,
}

impl RequestRecord {
    pub fn count(&self, state: MessageState) -> usize {
        self.messages.iter().filter(|m| m.status == state).count()
    }
}

mod value_type_serde {
    use super::ParameterValueType;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &ParameterValueType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ParameterValueType, D::Error> {
        let s = String::deserialize(d)?;
        ParameterValueType::parse(&s).ok_or_else(|| D::Error::custom(format!("unknown value type {s}")))
    }
}

mod template_status_serde {
    use super::ExternalTemplateStatus;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &ExternalTemplateStatus, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ExternalTemplateStatus, D::Error> {
        let s = String::deserialize(d)?;
        ExternalTemplateStatus::parse(&s).ok_or_else(|| D::Error::custom(format!("unknown template status {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consent_levels_order_implicit_explicit_double_and_opted_out_never_meets() {
        use ChannelConsentLevel::*;
        assert!(ConsentStatus::ImplicitlyOptedIn.meets(ImplicitOptIn));
        assert!(!ConsentStatus::ImplicitlyOptedIn.meets(ExplicitOptIn));
        assert!(ConsentStatus::ExplicitlyOptedIn.meets(ExplicitOptIn));
        assert!(!ConsentStatus::ExplicitlyOptedIn.meets(DoubleOptIn));
        assert!(ConsentStatus::DoublyOptedIn.meets(DoubleOptIn));
        assert!(!ConsentStatus::OptedOut.meets(ImplicitOptIn));
    }

    #[test]
    fn only_ended_and_error_sessions_are_closed() {
        for s in SessionStatus::ALL {
            assert_eq!(s.is_open(), !matches!(s, SessionStatus::Ended | SessionStatus::Error), "{s}");
        }
    }

    #[test]
    fn picklists_round_trip_their_api_values() {
        for v in AllowedSessionStatus::ALL {
            assert_eq!(AllowedSessionStatus::parse(v.as_str()), Some(*v));
        }
        assert_eq!(ConsentType::parse("messagingenduser"), None);
        assert_eq!(ConsentType::allowed(), "MessagingEndUser, CommunicationSubscription, Custom");
    }
}
