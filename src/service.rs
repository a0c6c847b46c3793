//! The use cases both doors call: send, read status, provision, and (in `reads`) the
//! reads over many requests. Each checks the caller's scope, turns caller mistakes into
//! field-named violations, and leaves storage to the `Store`. gRPC and REST are thin
//! adapters over these functions.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::{Principal, Scope};
use crate::clock::SharedClock;
use crate::domain::admin::*;
use crate::domain::ids::IdKind;
use crate::domain::model::*;
use crate::domain::params::check_params;
use crate::domain::send::{NewSendRequest, SendInput};
use crate::domain::{ErrorKind, RecordId, Violation};
use crate::error::AppError;
use crate::events::Events;
use crate::lookups::Lookups;
use crate::store::{AcceptOutcome, Accepted, Key, Page, Store};

mod reads;

pub use reads::{Cursor, Deleted, QueryPage, Updated};

/// How often a status stream re-reads the record when no in-process change arrives
/// (changes made by other replicas reach it this way).
const WATCH_POLL: Duration = Duration::from_secs(1);

/// Default and largest page sizes of the listings.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    /// The accept path's lookups, cached (see `lookups`).
    lookups: Arc<Lookups>,
    clock: SharedClock,
    events: Events,
}

/// A listing request as both doors give it.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub page_size: i32,
    pub page_token: String,
}

impl PageRequest {
    fn parse(&self) -> Result<(Option<RecordId>, u32), AppError> {
        let size = match self.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 || n as u32 > MAX_PAGE_SIZE => {
                return Err(AppError::invalid(Violation::new(
                    "page_size",
                    ErrorKind::InvalidInput,
                    format!("page_size must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})"),
                )));
            }
            n => n as u32,
        };
        let after = if self.page_token.is_empty() {
            None
        } else {
            Some(RecordId::parse_any(&self.page_token).map_err(|_| {
                AppError::invalid(Violation::new(
                    "page_token",
                    ErrorKind::InvalidInput,
                    "page_token is not one this server returned",
                ))
            })?)
        };
        Ok((after, size))
    }
}

/// Parses a caller-given id, naming the field when it is malformed.
pub fn parse_id(field: &str, raw: &str, kind: IdKind) -> Result<RecordId, AppError> {
    RecordId::parse(raw.trim(), kind).map_err(|e| {
        AppError::invalid(Violation::new(field, ErrorKind::MalformedId, format!("{raw:?} is not a valid id: {e}")))
    })
}

/// An id or a unique name: ids are recognised by their key prefix and shape.
fn id_or_name(raw: &str, kind: IdKind) -> Key {
    match RecordId::parse(raw.trim(), kind) {
        Ok(id) => Key::Id(id),
        Err(_) => Key::Name(raw.trim().to_owned()),
    }
}

impl Service {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, events: Events) -> Self {
        Service { store, clock, events, lookups: Arc::default() }
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

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
                    format!("no messaging component named {:?}", shaped.message_definition_name),
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
        };
        let outcome = self.store.accept(tenant, request, self.now()).await?;
        if let AcceptOutcome::Created(a) | AcceptOutcome::Replayed(a) = &outcome {
            // The server span (telemetry::server) declares the field.
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

    /// The request record; another tenant's request is NOT_FOUND, as is an unknown one.
    pub async fn get_request(&self, principal: &Principal, raw_id: &str) -> Result<RequestRecord, AppError> {
        principal.require(Scope::Read)?;
        let id = parse_id("requestId", raw_id, IdKind::SendRequest)?;
        self.store
            .get_request(&principal.tenant, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no ConvMessageSendRequest {id}")))
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

    /// The record now, then every change, ending after `Completed`. Fed by in-process
    /// change signals, with the store as the truth (and polled, for other replicas).
    pub async fn watch_request(
        &self,
        principal: &Principal,
        raw_id: &str,
    ) -> Result<impl Stream<Item = Result<RequestRecord, AppError>> + Send + 'static, AppError> {
        let changes = self.events.subscribe();
        let first = self.get_request(principal, raw_id).await?;
        struct Watch {
            store: Arc<dyn Store>,
            tenant: String,
            changes: tokio::sync::broadcast::Receiver<RecordId>,
            next: Option<RequestRecord>,
            last: Option<RequestRecord>,
            done: bool,
        }
        let state = Watch {
            store: self.store.clone(),
            tenant: principal.tenant.clone(),
            changes,
            next: Some(first),
            last: None,
            done: false,
        };
        Ok(futures_util::stream::unfold(state, |mut w| async move {
            if w.done {
                return None;
            }
            if let Some(record) = w.next.take() {
                w.done = record.status == RequestStatus::Completed;
                w.last = Some(record.clone());
                return Some((Ok(record), w));
            }
            let id = w.last.as_ref().map(|r| r.id.clone())?;
            loop {
                tokio::select! {
                    change = w.changes.recv() => match change {
                        Ok(changed) if changed != id => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => {
                            // Coalesce a burst of changes into one read.
                            while w.changes.try_recv().is_ok() {}
                        }
                        Err(RecvError::Closed) => tokio::time::sleep(WATCH_POLL).await,
                    },
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                }
                match w.store.get_request(&w.tenant, &id).await {
                    Ok(Some(record)) if Some(&record) != w.last.as_ref() => {
                        w.done = record.status == RequestStatus::Completed;
                        w.last = Some(record.clone());
                        return Some((Ok(record), w));
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => {
                        w.done = true;
                        return Some((Err(AppError::NotFound(format!("no ConvMessageSendRequest {id}"))), w));
                    }
                    Err(e) => {
                        w.done = true;
                        return Some((Err(e.into()), w));
                    }
                }
            }
        }))
    }

    pub async fn upsert_channel(&self, principal: &Principal, spec: ChannelSpec) -> Result<(Channel, bool), AppError> {
        principal.require(Scope::Admin)?;
        let upsert = spec.check().map_err(AppError::Invalid)?;
        Ok(self.store.upsert_channel(&principal.tenant, upsert, self.now()).await?)
    }

    pub async fn get_channel(&self, principal: &Principal, key: &str) -> Result<Channel, AppError> {
        principal.require(Scope::Admin)?;
        self.store
            .get_channel(&principal.tenant, &id_or_name(key, IdKind::MessagingChannel))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no channel {key:?}")))
    }

    pub async fn list_channels(&self, principal: &Principal, page: PageRequest) -> Result<Page<Channel>, AppError> {
        principal.require(Scope::Admin)?;
        let (after, size) = page.parse()?;
        Ok(self.store.list_channels(&principal.tenant, after.as_ref(), size).await?)
    }

    pub async fn upsert_definition(
        &self,
        principal: &Principal,
        spec: DefinitionSpec,
    ) -> Result<(MessageDefinition, bool), AppError> {
        principal.require(Scope::Admin)?;
        let upsert = spec.check().map_err(AppError::Invalid)?;
        let result = self.store.upsert_definition(&principal.tenant, upsert, self.now()).await?;
        self.lookups.forget_components();
        Ok(result)
    }

    pub async fn get_definition(&self, principal: &Principal, key: &str) -> Result<MessageDefinition, AppError> {
        principal.require(Scope::Admin)?;
        self.store
            .get_definition(&principal.tenant, &id_or_name(key, IdKind::MessageDefinition))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no messaging component {key:?}")))
    }

    pub async fn list_definitions(
        &self,
        principal: &Principal,
        page: PageRequest,
    ) -> Result<Page<MessageDefinition>, AppError> {
        principal.require(Scope::Admin)?;
        let (after, size) = page.parse()?;
        Ok(self.store.list_definitions(&principal.tenant, after.as_ref(), size).await?)
    }

    pub async fn upsert_end_users(
        &self,
        principal: &Principal,
        specs: Vec<EndUserSpec>,
    ) -> Result<Vec<EndUser>, AppError> {
        principal.require(Scope::Admin)?;
        let users = check_end_users(specs).map_err(AppError::Invalid)?;
        Ok(self.store.upsert_end_users(&principal.tenant, users, self.now()).await?)
    }

    pub async fn get_end_user(&self, principal: &Principal, raw_id: &str) -> Result<EndUser, AppError> {
        principal.require(Scope::Admin)?;
        let id = parse_id("id", raw_id, IdKind::MessagingEndUser)?;
        self.store
            .find_end_users(&principal.tenant, std::slice::from_ref(&id))
            .await?
            .pop()
            .ok_or_else(|| AppError::NotFound(format!("no messaging end user {id}")))
    }

    pub async fn list_end_users(
        &self,
        principal: &Principal,
        channel: &str,
        page: PageRequest,
    ) -> Result<Page<EndUser>, AppError> {
        principal.require(Scope::Admin)?;
        let (after, size) = page.parse()?;
        let channel = match channel.trim() {
            "" => None,
            raw => Some(parse_id("messaging_channel_id", raw, IdKind::MessagingChannel)?),
        };
        Ok(self.store.list_end_users(&principal.tenant, channel.as_ref(), after.as_ref(), size).await?)
    }

    pub async fn set_session_status(
        &self,
        principal: &Principal,
        raw_end_user: &str,
        status: Option<SessionStatus>,
    ) -> Result<Session, AppError> {
        principal.require(Scope::Admin)?;
        let end_user = parse_id("messaging_end_user_id", raw_end_user, IdKind::MessagingEndUser)?;
        let status = status.ok_or_else(|| {
            AppError::invalid(Violation::new(
                "status",
                ErrorKind::RequiredFieldMissing,
                format!("status is required ({})", SessionStatus::allowed()),
            ))
        })?;
        let session = self
            .store
            .set_session_status(&principal.tenant, &end_user, status, self.now())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no messaging end user {end_user}")))?;
        // Messages held for this end user may be sendable now.
        self.events.work_available();
        Ok(session)
    }

    pub async fn upsert_subscription(
        &self,
        principal: &Principal,
        spec: SubscriptionSpec,
    ) -> Result<(Subscription, bool), AppError> {
        principal.require(Scope::Admin)?;
        let upsert = spec.check().map_err(AppError::Invalid)?;
        Ok(self.store.upsert_subscription(&principal.tenant, upsert, self.now()).await?)
    }

    pub async fn set_subscription_consent(
        &self,
        principal: &Principal,
        raw_subscription: &str,
        raw_end_users: &[String],
        status: Option<SubscriptionConsentStatus>,
    ) -> Result<u32, AppError> {
        principal.require(Scope::Admin)?;
        let subscription = parse_id("communication_subscription_id", raw_subscription, IdKind::CommSubscription)?;
        let status = status.ok_or_else(|| {
            AppError::invalid(Violation::new(
                "status",
                ErrorKind::RequiredFieldMissing,
                "status is required (OPTED_IN or OPTED_OUT)",
            ))
        })?;
        if raw_end_users.is_empty() || raw_end_users.len() > MAX_END_USERS_PER_UPSERT {
            return Err(AppError::invalid(Violation::new(
                "messaging_end_user_ids",
                ErrorKind::InvalidInput,
                format!("give 1 to {MAX_END_USERS_PER_UPSERT} end user ids"),
            )));
        }
        let end_users = raw_end_users
            .iter()
            .enumerate()
            .map(|(i, raw)| parse_id(&format!("messaging_end_user_ids[{i}]"), raw, IdKind::MessagingEndUser))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .store
            .set_subscription_consent(&principal.tenant, &subscription, &end_users, status, self.now())
            .await?)
    }
}
