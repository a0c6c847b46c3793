//! The fields of the `ConvMessageSendRequest` object (spec §9.1) as one catalogue: the
//! record's field order, each field's Salesforce type, label and length, whether a query
//! may filter or sort on it, and where its value comes from (a stored column, the
//! request's messages, or a constant convmsg never sets). SOQL, the describe, the
//! sObject record and gRPC's `ListRequests` all read this one table, so they cannot
//! disagree. Pure data: nothing here knows how a store keeps a field.

use crate::domain::model::MessageState;

/// A field of `ConvMessageSendRequest`, in the order the record shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Id,
    IsDeleted,
    Name,
    CreatedDate,
    CreatedById,
    LastModifiedDate,
    LastModifiedById,
    SystemModstamp,
    MessageDefinition,
    MessageDefinitionParameters,
    RequestType,
    RequestStatus,
    CompletedDate,
    ShouldEnforceChannelConsent,
    AllowExistingSessionStatus,
    RequestConsentType,
    CommSubscriptionId,
    SessionLongevityPreference,
    TotalMessageCount,
    PendingMessageCount,
    InProgressMessageCount,
    SuccessMessageCount,
    FailedMessageCount,
    PendingMessageIdentifiers,
    InProgressMessageIdentifiers,
    SuccessMessageIdentifiers,
    FailedMessageIdentifiers,
    PendingMessagingEndUserIds,
    InProgressMessagingEndUserIds,
    InProgressMessagingSessionIds,
    PendingMeuPlatformKeys,
    InProgressMeuPlatformKeys,
    SuccessMeuPlatformKeys,
    FailedMeuPlatformKeys,
    FailedMessageErrorReasons,
    // convmsg's own, after Salesforce's: the delivery receipts reported for Success
    // messages (`domain::receipt`), which Salesforce's counts and statuses do not show.
    DeliveredMessageIdentifiers,
    ReadMessageIdentifiers,
    UndeliveredMessageIdentifiers,
    UndeliveredMessageErrorCodes,
}

/// Salesforce field types (the describe's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Id,
    Boolean,
    String,
    DateTime,
    Reference,
    Picklist,
    Int,
    TextArea,
}

impl FieldType {
    /// The describe's `type` value.
    pub fn api_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
            FieldType::DateTime => "datetime",
            FieldType::Reference => "reference",
            FieldType::Picklist => "picklist",
            FieldType::Int => "int",
            FieldType::TextArea => "textarea",
        }
    }

    /// The describe's `soapType`.
    pub fn soap_type(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "tns:ID",
            FieldType::Boolean => "xsd:boolean",
            FieldType::DateTime => "xsd:dateTime",
            FieldType::Int => "xsd:int",
            FieldType::String | FieldType::Picklist | FieldType::TextArea => "xsd:string",
        }
    }

    /// The type's name in SOQL error messages ("must be of type …").
    pub fn soql_name(self) -> &'static str {
        match self {
            FieldType::Id | FieldType::Reference => "id",
            FieldType::Boolean => "boolean",
            FieldType::DateTime => "dateTime",
            FieldType::Int => "integer",
            FieldType::String | FieldType::Picklist | FieldType::TextArea => "string",
        }
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A value the request row stores.
    Stored,
    /// Always null in convmsg (no users, no session longevity input, no session ids).
    AlwaysNull,
    /// Always false (`IsDeleted`: deleted requests are gone, never in a recycle bin).
    AlwaysFalse,
    /// The number of the request's messages, in one state or in all (`None`).
    MessageCount(Option<MessageState>),
    /// A comma-joined list built from the request's messages.
    MessageList,
}

/// What the describe and the query compiler know of a field.
#[derive(Debug, Clone, Copy)]
pub struct FieldInfo {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: FieldType,
    /// Characters for text types, 0 otherwise.
    pub length: u32,
    /// Digits for `int`.
    pub digits: u32,
    pub nillable: bool,
    pub defaulted_on_create: bool,
    /// The object a reference points to.
    pub reference_to: Option<&'static str>,
    /// Picklist API values, in the describe's order.
    pub picklist: &'static [&'static str],
    pub source: Source,
}

const REQUEST_STATUS: &[&str] = &["Pending", "InProgress", "Completed"];
const CONSENT_TYPES: &[&str] = &["CommunicationSubscription", "MessagingEndUser"];
const LONGEVITY: &[&str] = &["KeepSessionOpen", "EndSession", "KeepSessionOpenOrAppend"];
const ALLOWED_SESSION: &[&str] = &["Any", "NonActive", "Closed"];
const REQUEST_TYPES: &[&str] = &["SendNotificationMessages"];

impl Field {
    pub const ALL: [Field; 39] = [
        Field::Id,
        Field::IsDeleted,
        Field::Name,
        Field::CreatedDate,
        Field::CreatedById,
        Field::LastModifiedDate,
        Field::LastModifiedById,
        Field::SystemModstamp,
        Field::MessageDefinition,
        Field::MessageDefinitionParameters,
        Field::RequestType,
        Field::RequestStatus,
        Field::CompletedDate,
        Field::ShouldEnforceChannelConsent,
        Field::AllowExistingSessionStatus,
        Field::RequestConsentType,
        Field::CommSubscriptionId,
        Field::SessionLongevityPreference,
        Field::TotalMessageCount,
        Field::PendingMessageCount,
        Field::InProgressMessageCount,
        Field::SuccessMessageCount,
        Field::FailedMessageCount,
        Field::PendingMessageIdentifiers,
        Field::InProgressMessageIdentifiers,
        Field::SuccessMessageIdentifiers,
        Field::FailedMessageIdentifiers,
        Field::PendingMessagingEndUserIds,
        Field::InProgressMessagingEndUserIds,
        Field::InProgressMessagingSessionIds,
        Field::PendingMeuPlatformKeys,
        Field::InProgressMeuPlatformKeys,
        Field::SuccessMeuPlatformKeys,
        Field::FailedMeuPlatformKeys,
        Field::FailedMessageErrorReasons,
        Field::DeliveredMessageIdentifiers,
        Field::ReadMessageIdentifiers,
        Field::UndeliveredMessageIdentifiers,
        Field::UndeliveredMessageErrorCodes,
    ];

    /// The field named `name`, matched case-insensitively as Salesforce does.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn kind(self) -> FieldType {
        self.info().kind
    }

    /// A query may filter on the field: stored, constant or counted values (not the
    /// long text areas, which Salesforce does not filter either, and not the lists built
    /// from messages).
    pub fn is_filterable(self) -> bool {
        let info = self.info();
        info.kind != FieldType::TextArea && info.source != Source::MessageList
    }

    /// A query may sort on the field (the same fields as filter).
    pub fn is_sortable(self) -> bool {
        self.is_filterable()
    }

    /// Whether the value is built from the request's messages.
    pub fn needs_messages(self) -> bool {
        self.info().source == Source::MessageList
    }

    pub fn info(self) -> FieldInfo {
        use FieldType as T;
        use Source::*;
        let field = |name, label, kind, length, nillable, source| FieldInfo {
            name,
            label,
            kind,
            length,
            digits: 0,
            nillable,
            defaulted_on_create: false,
            reference_to: None,
            picklist: &[],
            source,
        };
        let count = |name, label, state| FieldInfo {
            digits: 9,
            defaulted_on_create: true,
            ..field(name, label, T::Int, 0, false, MessageCount(state))
        };
        let list = |name, label, length| field(name, label, T::TextArea, length, true, MessageList);
        let pick = |name, label, nillable, source, values| FieldInfo {
            picklist: values,
            ..field(name, label, T::Picklist, 255, nillable, source)
        };
        let user = |name, label| FieldInfo {
            reference_to: Some("User"),
            ..field(name, label, T::Reference, 18, true, AlwaysNull)
        };
        match self {
            Field::Id => field("Id", "Conversation Message Send Request ID", T::Id, 18, false, Stored),
            Field::IsDeleted => FieldInfo {
                defaulted_on_create: true,
                ..field("IsDeleted", "Deleted", T::Boolean, 0, false, AlwaysFalse)
            },
            Field::Name => FieldInfo {
                defaulted_on_create: true,
                ..field("Name", "Conversation Message Send Request Name", T::String, 255, false, Stored)
            },
            Field::CreatedDate => field("CreatedDate", "Created Date", T::DateTime, 0, false, Stored),
            Field::CreatedById => user("CreatedById", "Created By ID"),
            Field::LastModifiedDate => field("LastModifiedDate", "Last Modified Date", T::DateTime, 0, false, Stored),
            Field::LastModifiedById => user("LastModifiedById", "Last Modified By ID"),
            Field::SystemModstamp => field("SystemModstamp", "System Modstamp", T::DateTime, 0, false, Stored),
            Field::MessageDefinition => field("MessageDefinition", "Message Definition", T::String, 255, false, Stored),
            Field::MessageDefinitionParameters => {
                field("MessageDefinitionParameters", "Message Definition Parameters", T::TextArea, 8000, true, Stored)
            }
            Field::RequestType => pick("RequestType", "Send Message Type", false, Stored, REQUEST_TYPES),
            Field::RequestStatus => pick("RequestStatus", "Send Status", false, Stored, REQUEST_STATUS),
            Field::CompletedDate => field("CompletedDate", "Completed Date", T::DateTime, 0, true, Stored),
            Field::ShouldEnforceChannelConsent => FieldInfo {
                defaulted_on_create: true,
                ..field("ShouldEnforceChannelConsent", "Enforce Channel Consent", T::Boolean, 0, false, Stored)
            },
            Field::AllowExistingSessionStatus => {
                pick("AllowExistingSessionStatus", "Send Condition", false, Stored, ALLOWED_SESSION)
            }
            Field::RequestConsentType => pick("RequestConsentType", "Consent Type", true, Stored, CONSENT_TYPES),
            Field::CommSubscriptionId => FieldInfo {
                reference_to: Some("CommSubscription"),
                ..field("CommSubscriptionId", "Communication Subscription ID", T::Reference, 18, true, Stored)
            },
            Field::SessionLongevityPreference => {
                pick("SessionLongevityPreference", "Messaging Session Longevity", true, AlwaysNull, LONGEVITY)
            }
            Field::TotalMessageCount => count("TotalMessageCount", "Total Message Count", None),
            Field::PendingMessageCount => {
                count("PendingMessageCount", "Pending Message Count", Some(MessageState::Pending))
            }
            Field::InProgressMessageCount => {
                count("InProgressMessageCount", "In Progress Message Count", Some(MessageState::InProgress))
            }
            Field::SuccessMessageCount => {
                count("SuccessMessageCount", "Success Message Count", Some(MessageState::Success))
            }
            Field::FailedMessageCount => {
                count("FailedMessageCount", "Failed Message Count", Some(MessageState::Failed))
            }
            Field::PendingMessageIdentifiers => list("PendingMessageIdentifiers", "Pending Message Identifiers", 4000),
            Field::InProgressMessageIdentifiers => {
                list("InProgressMessageIdentifiers", "In Progress Message Identifiers", 4000)
            }
            Field::SuccessMessageIdentifiers => list("SuccessMessageIdentifiers", "Success Message Identifiers", 4000),
            Field::FailedMessageIdentifiers => list("FailedMessageIdentifiers", "Failed Message Identifiers", 4000),
            Field::PendingMessagingEndUserIds => list("PendingMessagingEndUserIds", "Pending Messaging User Ids", 4000),
            Field::InProgressMessagingEndUserIds => {
                list("InProgressMessagingEndUserIds", "In Progress Messaging User Ids", 4000)
            }
            Field::InProgressMessagingSessionIds => FieldInfo {
                source: AlwaysNull,
                ..list("InProgressMessagingSessionIds", "In Progress Messaging Session Ids", 4000)
            },
            Field::PendingMeuPlatformKeys => {
                list("PendingMeuPlatformKeys", "Pending Messaging User Platform Keys", 8000)
            }
            Field::InProgressMeuPlatformKeys => {
                list("InProgressMeuPlatformKeys", "In Progress Messaging Session Platform Keys", 8000)
            }
            Field::SuccessMeuPlatformKeys => list("SuccessMeuPlatformKeys", "Success Message Platform Keys", 8000),
            Field::FailedMeuPlatformKeys => list("FailedMeuPlatformKeys", "Failed Message Platform Keys", 8000),
            Field::FailedMessageErrorReasons => list("FailedMessageErrorReasons", "Failed Message Error Reasons", 700),
            Field::DeliveredMessageIdentifiers => {
                list("DeliveredMessageIdentifiers", "Delivered Message Identifiers", 4000)
            }
            Field::ReadMessageIdentifiers => list("ReadMessageIdentifiers", "Read Message Identifiers", 4000),
            Field::UndeliveredMessageIdentifiers => {
                list("UndeliveredMessageIdentifiers", "Undelivered Message Identifiers", 4000)
            }
            Field::UndeliveredMessageErrorCodes => {
                list("UndeliveredMessageErrorCodes", "Undelivered Message Error Codes", 700)
            }
        }
    }

    /// The canonical picklist value `raw` names (case-insensitively), if it is one.
    pub fn picklist_value(self, raw: &str) -> Option<&'static str> {
        self.info().picklist.iter().copied().find(|v| v.eq_ignore_ascii_case(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{AllowedSessionStatus, RequestStatus, RequestType};

    #[test]
    fn the_catalogue_lists_every_field_once_in_record_order_and_names_parse_case_insensitively() {
        for (i, field) in Field::ALL.iter().enumerate() {
            assert_eq!(Field::parse(field.name()), Some(*field));
            assert_eq!(Field::parse(&field.name().to_ascii_lowercase()), Some(*field));
            assert!(!Field::ALL[..i].contains(field), "{field:?} twice");
        }
        assert_eq!(Field::parse("Colour"), None);
    }

    #[test]
    fn picklist_values_are_the_domain_s_api_values() {
        let api = |all: &[&'static str]| all.to_vec();
        assert_eq!(api(REQUEST_STATUS), RequestStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert_eq!(api(ALLOWED_SESSION), AllowedSessionStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert_eq!(api(REQUEST_TYPES), RequestType::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        assert_eq!(Field::RequestStatus.picklist_value("inprogress"), Some("InProgress"));
        assert_eq!(Field::RequestStatus.picklist_value("In Progress"), None);
    }

    #[test]
    fn message_lists_and_text_areas_can_be_selected_but_not_filtered_or_sorted() {
        assert!(!Field::FailedMessageIdentifiers.is_filterable());
        assert!(!Field::MessageDefinitionParameters.is_sortable());
        assert!(Field::FailedMessageIdentifiers.needs_messages());
        for field in [Field::Id, Field::Name, Field::RequestStatus, Field::FailedMessageCount, Field::CompletedDate] {
            assert!(field.is_filterable() && field.is_sortable(), "{field:?}");
            assert!(!field.needs_messages(), "{field:?}");
        }
    }
}
