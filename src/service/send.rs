//! Sending: validate a request against the tenant's records (all problems at once, each
//! naming its field) and record it in one transaction.

use std::sync::Arc;

use super::Service;
use crate::domain::model::*;
use crate::domain::params::check_params;
use crate::domain::principal::{Principal, Scope};
use crate::domain::send::{NewSendRequest, SendInput};
use crate::domain::violation::quoted;
use crate::domain::{ErrorKind, RecordId, Violation};
use crate::error::AppError;
use crate::store::{AcceptOutcome, Accepted, Key};

impl Service {
    /// Validates a send request against the tenant's records and records it in one
    /// transaction. Nothing is written when anything is wrong. The stored trace context
    /// is the current (accept) span's, so delivery spans are its children; without a
    /// tracer it is the caller's `traceparent`, as given.
    pub async fn send(
        &self,
        principal: &Principal,
        input: SendInput,
        trace_context: Option<String>,
    ) -> Result<Accepted, AppError> {
        principal.require(Scope::Send)?;
        let tenant = principal.tenant.as_str();
        let shaped = input.shape().map_err(AppError::Invalid)?;
        let mut violations: Vec<Violation> = Vec::new();

        let definition = self.component(tenant, &shaped.message_definition_name).await?;
        let definition = match definition {
            None => {
                violations.push(Violation::new(
                    "messageDefinitionName",
                    ErrorKind::InvalidInput,
                    format!("no messaging component named {}", quoted(&shaped.message_definition_name)),
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
        let parameters = match &definition {
            Some(d) => match check_params(&d.parameters, shaped.parameters) {
                Ok(p) => p,
                Err(v) => {
                    violations.extend(v);
                    Vec::new()
                }
            },
            None => Vec::new(),
        };

        let keys = self.platform_keys(tenant, &shaped.end_user_ids).await?;
        let mut recipients = Vec::with_capacity(shaped.end_user_ids.len());
        for (i, id) in shaped.end_user_ids.iter().enumerate() {
            match keys.get(id) {
                Some(key) => recipients.push((id.clone(), key.clone())),
                None => violations.push(Violation::new(
                    format!("messagingEndUserIds[{i}]"),
                    ErrorKind::InvalidIdField,
                    format!("no messaging end user {id}"),
                )),
            }
        }

        if let Some(sub) = &shaped.subscription_id
            && self.store.get_subscription(tenant, sub).await?.is_none()
        {
            violations.push(Violation::new(
                "communicationSubscriptionId",
                ErrorKind::InvalidIdField,
                format!("no communication subscription {sub}"),
            ));
        }

        let send_at_ms = match crate::domain::schedule::check_send_at(shaped.send_at_ms, self.now()) {
            Ok(due) => due,
            Err(v) => {
                violations.push(v);
                None
            }
        };

        let Some(definition) = definition.filter(|_| violations.is_empty()) else {
            return Err(AppError::Invalid(violations));
        };
        let key = shaped.idempotency_key.clone();
        let request = NewSendRequest {
            message_definition_name: definition.api_name.clone(),
            message_definition_id: definition.id.clone(),
            parameters,
            request_type: shaped.request_type,
            enforce_consent: shaped.enforce_consent,
            consent_type: shaped.consent_type,
            subscription_id: shaped.subscription_id,
            allowed_session_status: shaped.allowed_session_status,
            recipients,
            idempotency_key: shaped.idempotency_key,
            trace_context: crate::telemetry::stored_context_of(&tracing::Span::current()).or(trace_context),
            priority: shaped.priority,
            send_at_ms,
            requested_send_at_ms: shaped.send_at_ms,
        };
        let outcome = self.store.accept(tenant, request, self.now()).await?;
        if let AcceptOutcome::Created(a) | AcceptOutcome::Replayed(a) = &outcome {
            // The server span (server::observe) declares the field.
            tracing::Span::current().record("convmsg.request_id", a.request_id.as_str());
        }
        match outcome {
            AcceptOutcome::Created(a) => {
                tracing::info!(request_id = %a.request_id, messages = a.message_identifiers.len(), "request accepted");
                self.events.work_available();
                Ok(a)
            }
            AcceptOutcome::Replayed(a) => {
                tracing::info!(request_id = %a.request_id, "idempotent replay");
                Ok(a)
            }
            AcceptOutcome::KeyConflict => Err(AppError::Duplicate {
                field: "idempotencyKey".into(),
                message: format!(
                    "idempotency key {:?} was already used with a different request",
                    key.unwrap_or_default()
                ),
            }),
        }
    }

    /// A messaging component by API name, through the cache.
    async fn component(&self, tenant: &str, api_name: &str) -> Result<Option<Arc<MessageDefinition>>, AppError> {
        if let Some(cached) = self.lookups.component(tenant, api_name) {
            return Ok(Some(cached));
        }
        let found = self.store.get_definition(tenant, &Key::Name(api_name.to_owned())).await?.map(Arc::new);
        if let Some(definition) = &found {
            self.lookups.remember_component(tenant, definition.clone());
        }
        Ok(found)
    }

    /// The platform keys of the tenant's end users among `ids` (unknown ids are absent).
    async fn platform_keys(
        &self,
        tenant: &str,
        ids: &[RecordId],
    ) -> Result<std::collections::HashMap<RecordId, String>, AppError> {
        let (mut known, unknown) = self.lookups.end_users(tenant, ids);
        if !unknown.is_empty() {
            let found: Vec<(RecordId, String)> = self
                .store
                .find_end_users(tenant, &unknown)
                .await?
                .into_iter()
                .map(|u| (u.id, u.platform_key))
                .collect();
            self.lookups.remember_end_users(tenant, found.iter().cloned());
            known.extend(found);
        }
        Ok(known)
    }
}
