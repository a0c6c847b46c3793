//! Sending: look up the tenant's records a request names, let the domain check the
//! request against them (`ShapedSend::complete`: all problems at once, each naming its
//! field) and record it in one transaction.

use std::sync::Arc;

use super::Service;
use crate::domain::RecordId;
use crate::domain::model::*;
use crate::domain::principal::{Principal, Scope};
use crate::domain::send::{Found, SendInput};
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
        let definition = self.component(tenant, shaped.message_definition_name()).await?;
        let platform_keys = self.platform_keys(tenant, shaped.end_user_ids()).await?;
        let subscription_exists = match shaped.subscription_id() {
            Some(sub) => self.store.get_subscription(tenant, sub).await?.is_some(),
            None => true,
        };
        let found = Found {
            definition: definition.as_deref(),
            platform_keys: &platform_keys,
            subscription_exists,
            now_ms: self.now(),
        };
        let key = shaped.idempotency_key().map(str::to_owned);
        let trace_context = crate::telemetry::stored_context_of(&tracing::Span::current()).or(trace_context);
        let request = shaped.complete(found, trace_context).map_err(AppError::Invalid)?;
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
