//! A send request as the caller gave it (`SendInput`, from either door), shaped by the
//! checks that need nothing but the input itself (recipients, ids, enums already parsed
//! by the door, consent combination, idempotency key) into a `ShapedSend`, then
//! completed against the records it names (looked up by `service`: definition, end
//! users, subscription) into the `NewSendRequest` the store records. Each step is the
//! only way to the next. No I/O here.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::Checked;
use super::ids::{IdKind, RecordId};
use super::model::{AllowedSessionStatus, ConsentType, DefinitionType, MessageDefinition, Priority, RequestType};
use super::params::{ParamValue, RawParam, check_params, params_to_json};
use super::schedule::check_send_at;
use super::violation::{ErrorKind, Violation, Violations, echo, quoted};

/// Recipients per request (spec §3).
pub const MAX_RECIPIENTS: usize = 100;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The inputs of one invocation, parsed by the door but not yet checked.
#[derive(Debug, Clone, Default)]
pub struct SendInput {
    pub message_definition_name: String,
    pub parameters: Vec<RawParam>,
    /// `None` = not given: SendNotificationMessages.
    pub request_type: Option<RequestType>,
    /// `None` = not given: false.
    pub enforce_consent: Option<bool>,
    /// `None` = not given: MessagingEndUser.
    pub consent_type: Option<ConsentType>,
    pub communication_subscription_id: Option<String>,
    /// `None` = not given: Any.
    pub allowed_session_status: Option<AllowedSessionStatus>,
    pub end_user_ids: Vec<String>,
    pub idempotency_key: Option<String>,
    /// `None` = not given: Transactional.
    pub priority: Option<Priority>,
    /// When to send (ms since the epoch); `None` = at once. Checked against the clock in
    /// `service` (`schedule::check_send_at`).
    pub send_at_ms: Option<i64>,
}

/// A `SendInput` whose shape is right: ids parsed, defaults applied. Made only by
/// `SendInput::shape`; read through its accessors, and completed into a
/// `NewSendRequest` by `complete` once the records it names are looked up.
#[derive(Debug, Clone)]
pub struct ShapedSend {
    message_definition_name: String,
    parameters: Vec<RawParam>,
    request_type: RequestType,
    enforce_consent: bool,
    consent_type: ConsentType,
    subscription_id: Option<RecordId>,
    allowed_session_status: AllowedSessionStatus,
    end_user_ids: Vec<RecordId>,
    idempotency_key: Option<String>,
    priority: Priority,
    send_at_ms: Option<i64>,
}

/// The tenant's records a shaped request names, as `service` looked them up.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The messaging component named `message_definition_name`, if there is one.
    pub definition: Option<&'a MessageDefinition>,
    /// The platform key of each known end user among `end_user_ids`.
    pub platform_keys: &'a HashMap<RecordId, String>,
    /// Whether the subscription named (if any) is the tenant's.
    pub subscription_exists: bool,
    pub now_ms: i64,
}

impl SendInput {
    /// Checks everything that needs no stored record. Reports every problem found.
    pub fn shape(self) -> Result<ShapedSend, Vec<Violation>> {
        let mut v = Violations::default();
        let name = self.message_definition_name.trim().to_owned();
        if name.is_empty() {
            v.push(Violation::missing("messageDefinitionName"));
        }
        refuse_control_characters("messageDefinitionName", &name, &mut v);
        if let Some(key) = &self.idempotency_key {
            refuse_control_characters("idempotencyKey", key, &mut v);
        }

        let end_user_ids = shape_recipients(&self.end_user_ids, &mut v);

        let enforce_consent = self.enforce_consent.unwrap_or(false);
        let consent_type = self.consent_type.unwrap_or(ConsentType::MessagingEndUser);
        if enforce_consent && consent_type == ConsentType::Custom {
            v.push(Violation::new(
                "channelConsentType",
                ErrorKind::InvalidInput,
                "channelConsentType Custom means the caller applies its own consent logic; it cannot be combined \
                 with isEnforceMessagingChannelConsent=true",
            ));
        }
        let subscription_raw = self.communication_subscription_id.filter(|s| !s.trim().is_empty());
        let subscription_id = match (consent_type, subscription_raw) {
            (ConsentType::CommunicationSubscription, None) => {
                v.push(Violation::new(
                    "communicationSubscriptionId",
                    ErrorKind::RequiredFieldMissing,
                    "communicationSubscriptionId is required when channelConsentType is CommunicationSubscription",
                ));
                None
            }
            (ConsentType::CommunicationSubscription, Some(raw)) => {
                match RecordId::parse(raw.trim(), IdKind::CommSubscription) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        v.push(Violation::new(
                            "communicationSubscriptionId",
                            ErrorKind::MalformedId,
                            format!("{} is not a valid id: {e}", quoted(&raw)),
                        ));
                        None
                    }
                }
            }
            (_, Some(_)) => {
                v.push(Violation::new(
                    "communicationSubscriptionId",
                    ErrorKind::InvalidInput,
                    "communicationSubscriptionId is only allowed when channelConsentType is CommunicationSubscription",
                ));
                None
            }
            (_, None) => None,
        };

        let idempotency_key = self.idempotency_key.filter(|k| !k.is_empty());
        if let Some(key) = &idempotency_key
            && key.chars().count() > MAX_IDEMPOTENCY_KEY
        {
            v.push(Violation::new(
                "idempotencyKey",
                ErrorKind::InvalidInput,
                format!(
                    "idempotency key is {} characters; at most {MAX_IDEMPOTENCY_KEY} are allowed",
                    key.chars().count()
                ),
            ));
        }

        v.into_result(ShapedSend {
            message_definition_name: name,
            parameters: self.parameters,
            request_type: self.request_type.unwrap_or(RequestType::SendNotificationMessages),
            enforce_consent,
            consent_type,
            subscription_id,
            allowed_session_status: self.allowed_session_status.unwrap_or(AllowedSessionStatus::Any),
            end_user_ids,
            idempotency_key,
            priority: self.priority.unwrap_or(Priority::Transactional),
            send_at_ms: self.send_at_ms,
        })
    }
}

impl ShapedSend {
    pub fn message_definition_name(&self) -> &str {
        &self.message_definition_name
    }

    pub fn end_user_ids(&self) -> &[RecordId] {
        &self.end_user_ids
    }

    /// The parameters as given, before `complete` checks them against the component.
    pub fn parameters(&self) -> &[RawParam] {
        &self.parameters
    }

    pub fn subscription_id(&self) -> Option<&RecordId> {
        self.subscription_id.as_ref()
    }

    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Checks the request against the records it names — the component (there, active,
    /// a Notification; the parameters it declares), every recipient known, the
    /// subscription the tenant's, `send_at` in range — and builds the request to record.
    /// Reports every problem at once, in that order.
    pub fn complete(self, found: Found<'_>, trace_context: Option<String>) -> Result<NewSendRequest, Vec<Violation>> {
        let mut violations: Vec<Violation> = Vec::new();
        let definition = match found.definition {
            None => {
                violations.push(Violation::new(
                    "messageDefinitionName",
                    ErrorKind::InvalidInput,
                    format!("no messaging component named {}", quoted(&self.message_definition_name)),
                ));
                None
            }
            Some(d) if !d.is_active => {
                violations.push(Violation::new(
                    "messageDefinitionName",
                    ErrorKind::InvalidInput,
                    format!("messaging component {} is not active; only active components can be sent", d.api_name),
                ));
                None
            }
            Some(d) if d.definition_type != DefinitionType::Notification => {
                violations.push(Violation::new(
                    "messageDefinitionName",
                    ErrorKind::InvalidInput,
                    format!(
                        "messaging component {} is of type {}; only Notification components can be sent",
                        d.api_name, d.definition_type
                    ),
                ));
                None
            }
            Some(d) => Some(d),
        };
        let parameters = match definition {
            Some(d) => match check_params(&d.parameters, self.parameters) {
                Ok(p) => p,
                Err(v) => {
                    violations.extend(v);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };

        let mut recipients = Vec::with_capacity(self.end_user_ids.len());
        for (i, id) in self.end_user_ids.iter().enumerate() {
            match found.platform_keys.get(id) {
                Some(key) => recipients.push((id.clone(), key.clone())),
                None => violations.push(Violation::new(
                    format!("messagingEndUserIds[{i}]"),
                    ErrorKind::InvalidIdField,
                    format!("no messaging end user {id}"),
                )),
            }
        }

        if let Some(sub) = &self.subscription_id
            && !found.subscription_exists
        {
            violations.push(Violation::new(
                "communicationSubscriptionId",
                ErrorKind::InvalidIdField,
                format!("no communication subscription {sub}"),
            ));
        }

        let send_at_ms = match check_send_at(self.send_at_ms, found.now_ms) {
            Ok(due) => due,
            Err(v) => {
                violations.push(v);
                None
            }
        };

        let Some(definition) = definition.filter(|_| violations.is_empty()) else {
            return Err(violations);
        };
        Ok(NewSendRequest {
            message_definition_name: definition.api_name.clone(),
            message_definition_id: definition.id.clone(),
            parameters,
            request_type: self.request_type,
            enforce_consent: self.enforce_consent,
            consent_type: self.consent_type,
            subscription_id: self.subscription_id,
            allowed_session_status: self.allowed_session_status,
            recipients,
            idempotency_key: self.idempotency_key,
            trace_context,
            priority: self.priority,
            send_at_ms,
            requested_send_at_ms: self.send_at_ms,
            _checked: Checked,
        })
    }
}

/// Text that no database can store or no person means: NUL and other control characters.
pub fn refuse_control_characters(field: &str, text: &str, v: &mut Violations) {
    if text.chars().any(char::is_control) {
        v.push(Violation::new(field, ErrorKind::InvalidInput, format!("{field} must not contain control characters")));
    }
}

fn shape_recipients(raw: &[String], v: &mut Violations) -> Vec<RecordId> {
    if raw.is_empty() {
        v.push(Violation::new(
            "messagingEndUserIds",
            ErrorKind::RequiredFieldMissing,
            "You must specify at least one messaging end user id in messagingEndUserIds.",
        ));
        return Vec::new();
    }
    if raw.len() > MAX_RECIPIENTS {
        v.push(Violation::new(
            "messagingEndUserIds",
            ErrorKind::InvalidInput,
            format!(
                "{} recipients given; at most {MAX_RECIPIENTS} are allowed per request — split the recipients into \
                 batches of {MAX_RECIPIENTS} or fewer",
                raw.len()
            ),
        ));
        return Vec::new();
    }
    let mut ids: Vec<RecordId> = Vec::with_capacity(raw.len());
    for (i, text) in raw.iter().enumerate() {
        let field = format!("messagingEndUserIds[{i}]");
        match RecordId::parse(text.trim(), IdKind::MessagingEndUser) {
            Ok(id) => {
                if let Some(first) = ids.iter().position(|seen| *seen == id) {
                    v.push(Violation::new(
                        field,
                        ErrorKind::InvalidInput,
                        format!("{} is a duplicate of messagingEndUserIds[{first}]", echo(text)),
                    ));
                }
                ids.push(id);
            }
            Err(e) => v.push(Violation::new(
                field,
                ErrorKind::MalformedId,
                format!("{} is not a valid id: {e}", quoted(text)),
            )),
        }
    }
    ids
}

/// A fully checked request, ready to record in one transaction. Made only by
/// `ShapedSend::complete`; its fields stay readable for the store's accept path.
#[derive(Debug, Clone)]
pub struct NewSendRequest {
    pub message_definition_name: String,
    pub message_definition_id: RecordId,
    pub parameters: Vec<ParamValue>,
    pub request_type: RequestType,
    pub enforce_consent: bool,
    pub consent_type: ConsentType,
    pub subscription_id: Option<RecordId>,
    pub allowed_session_status: AllowedSessionStatus,
    /// Recipients in order, with the platform key each had when accepted.
    pub recipients: Vec<(RecordId, String)>,
    pub idempotency_key: Option<String>,
    /// W3C trace context of the caller, carried to the dispatcher.
    pub trace_context: Option<String>,
    pub priority: Priority,
    /// When it becomes due, if later than its accept (checked: at most 35 days ahead).
    pub send_at_ms: Option<i64>,
    /// The `send_at` the caller gave, as given: what the idempotency fingerprint compares,
    /// so a retry of the same call matches even once that time has come.
    pub requested_send_at_ms: Option<i64>,
    /// Private: nothing outside this module can write one out field by field.
    _checked: Checked,
}

impl NewSendRequest {
    /// The canonical parameters text stored on the record.
    pub fn parameters_json(&self) -> String {
        params_to_json(&self.parameters)
    }

    /// SHA-256 over the parsed request (not its wire form), so the same call through
    /// REST and gRPC — or with parameters in another order — has the same fingerprint.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        let recipients: Vec<&str> = self.recipients.iter().map(|(id, _)| id.as_str()).collect();
        let parts = [
            self.message_definition_name.as_str(),
            &self.parameters_json(),
            self.request_type.as_str(),
            if self.enforce_consent { "true" } else { "false" },
            self.consent_type.as_str(),
            self.subscription_id.as_ref().map(RecordId::as_str).unwrap_or(""),
            self.allowed_session_status.as_str(),
            &recipients.join(","),
        ];
        // Beyond Salesforce's inputs, only what differs from the defaults counts, so the
        // fingerprints of requests stored before these inputs existed stay the same.
        let priority = (self.priority != Priority::Transactional).then(|| format!("priority={}", self.priority));
        let send_at = self.requested_send_at_ms.map(|at| format!("sendAt={at}"));
        for part in parts.into_iter().chain(priority.as_deref()).chain(send_at.as_deref()) {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        format!("{:x}", h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> String {
        let base = format!("0PA{:012}", n);
        RecordId::parse_any(&base).unwrap().into_string()
    }

    fn input(recipients: usize) -> SendInput {
        SendInput {
            message_definition_name: "Notification".into(),
            end_user_ids: (0..recipients).map(id).collect(),
            ..Default::default()
        }
    }

    fn violations(input: SendInput) -> Vec<Violation> {
        input.shape().unwrap_err()
    }

    #[test]
    fn defaults_follow_the_salesforce_record_when_inputs_are_absent() {
        let s = input(1).shape().unwrap();
        assert_eq!(s.request_type, RequestType::SendNotificationMessages);
        assert!(!s.enforce_consent);
        assert_eq!(s.consent_type, ConsentType::MessagingEndUser);
        assert_eq!(s.allowed_session_status, AllowedSessionStatus::Any);
    }

    #[test]
    fn a_request_with_101_recipients_is_rejected_naming_the_field() {
        let v = violations(input(101));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "messagingEndUserIds");
        assert_eq!(v[0].kind, ErrorKind::InvalidInput);
        assert!(v[0].message.contains("101"));
    }

    #[test]
    fn a_request_with_100_recipients_is_accepted() {
        assert_eq!(input(100).shape().unwrap().end_user_ids.len(), 100);
    }

    #[test]
    fn a_request_without_recipients_is_required_field_missing() {
        let v = violations(input(0));
        assert_eq!((v[0].field.as_str(), v[0].kind), ("messagingEndUserIds", ErrorKind::RequiredFieldMissing));
    }

    #[test]
    fn a_missing_definition_name_is_required_field_missing() {
        let v = violations(SendInput { message_definition_name: "  ".into(), ..input(1) });
        assert_eq!((v[0].field.as_str(), v[0].kind), ("messageDefinitionName", ErrorKind::RequiredFieldMissing));
    }

    #[test]
    fn duplicate_recipients_are_found_after_15_to_18_normalisation() {
        let full = id(7);
        let v = violations(SendInput { end_user_ids: vec![full.clone(), full[..15].to_owned()], ..input(0) });
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].field, "messagingEndUserIds[1]");
        assert!(v[0].message.contains("messagingEndUserIds[0]"));
    }

    #[test]
    fn malformed_and_wrong_prefix_recipient_ids_are_malformed_id_naming_the_index() {
        let v =
            violations(SendInput { end_user_ids: vec![id(1), "nope".into(), "0019000000B98de".into()], ..input(0) });
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].field.as_str(), v[0].kind), ("messagingEndUserIds[1]", ErrorKind::MalformedId));
        assert_eq!((v[1].field.as_str(), v[1].kind), ("messagingEndUserIds[2]", ErrorKind::MalformedId));
    }

    #[test]
    fn communication_subscription_consent_needs_a_subscription_id() {
        let v = violations(SendInput { consent_type: Some(ConsentType::CommunicationSubscription), ..input(1) });
        assert_eq!((v[0].field.as_str(), v[0].kind), ("communicationSubscriptionId", ErrorKind::RequiredFieldMissing));
        let v = violations(SendInput {
            consent_type: Some(ConsentType::CommunicationSubscription),
            communication_subscription_id: Some("0PARM000000Lc3I".into()),
            ..input(1)
        });
        assert_eq!(v[0].kind, ErrorKind::MalformedId);
    }

    #[test]
    fn enforced_consent_with_custom_consent_type_is_contradictory() {
        let v =
            violations(SendInput { enforce_consent: Some(true), consent_type: Some(ConsentType::Custom), ..input(1) });
        assert_eq!((v[0].field.as_str(), v[0].kind), ("channelConsentType", ErrorKind::InvalidInput));
        assert!(
            SendInput { enforce_consent: Some(false), consent_type: Some(ConsentType::Custom), ..input(1) }
                .shape()
                .is_ok()
        );
    }

    #[test]
    fn an_idempotency_key_over_255_characters_is_rejected() {
        let v = violations(SendInput { idempotency_key: Some("k".repeat(256)), ..input(1) });
        assert_eq!(v[0].field, "idempotencyKey");
        assert!(SendInput { idempotency_key: Some("k".repeat(255)), ..input(1) }.shape().is_ok());
    }

    #[test]
    fn control_characters_in_names_and_keys_are_refused_naming_the_field() {
        let v = violations(SendInput { idempotency_key: Some("a\u{0}b".into()), ..input(1) });
        assert_eq!((v[0].field.as_str(), v[0].kind), ("idempotencyKey", ErrorKind::InvalidInput));
        let v = violations(SendInput { message_definition_name: "N\u{0}".into(), ..input(1) });
        assert_eq!(v[0].field, "messageDefinitionName");
    }

    fn component(is_active: bool) -> MessageDefinition {
        MessageDefinition {
            id: RecordId::generate(IdKind::MessageDefinition),
            api_name: "Notification".into(),
            master_label: "Notification".into(),
            definition_type: DefinitionType::Notification,
            is_active,
            parameters: vec![],
            text_layout: String::new(),
            external_template: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn completing_against_the_records_reports_each_missing_one_in_field_order() {
        let keys = HashMap::new();
        let shaped = input(2).shape().unwrap();
        let found = Found { definition: None, platform_keys: &keys, subscription_exists: true, now_ms: 0 };
        let fields: Vec<String> = shaped.complete(found, None).unwrap_err().into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["messageDefinitionName", "messagingEndUserIds[0]", "messagingEndUserIds[1]"]);
    }

    #[test]
    fn a_complete_request_keeps_its_recipients_platform_keys_in_order() {
        let shaped = input(2).shape().unwrap();
        let keys: HashMap<RecordId, String> =
            shaped.end_user_ids().iter().enumerate().map(|(i, id)| (id.clone(), format!("+1555{i}"))).collect();
        let definition = component(true);
        let found = Found { definition: Some(&definition), platform_keys: &keys, subscription_exists: true, now_ms: 0 };
        let request = shaped.complete(found, None).unwrap();
        let platform_keys: Vec<&str> = request.recipients.iter().map(|(_, key)| key.as_str()).collect();
        assert_eq!(platform_keys, ["+15550", "+15551"]);
        assert_eq!(request.message_definition_id, definition.id);
        let inactive = component(false);
        let found = Found { definition: Some(&inactive), ..found };
        assert_eq!(input(2).shape().unwrap().complete(found, None).unwrap_err()[0].field, "messageDefinitionName");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let v = violations(SendInput {
            message_definition_name: String::new(),
            end_user_ids: vec!["bad".into()],
            consent_type: Some(ConsentType::CommunicationSubscription),
            ..Default::default()
        });
        let fields: Vec<&str> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["messageDefinitionName", "messagingEndUserIds[0]", "communicationSubscriptionId"]);
    }
}
