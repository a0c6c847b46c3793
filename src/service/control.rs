//! Delivery control for operators (scope `admin`): redriving the messages that failed
//! for a transient reason once the outage behind them is over, and deleting provisioned
//! records no longer needed.

use super::{Service, id_or_name, parse_id};
use crate::domain::ids::IdKind;
use crate::domain::principal::{Principal, Scope};
use crate::domain::violation::quoted;
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::store::{DeleteOutcome, RedriveScope, Redriven};

/// Most messages one `RetryFailedMessages` call requeues (one transaction).
pub const REDRIVE_LIMIT: u32 = 10_000;

/// Which failed messages to redrive, as the caller named them.
#[derive(Debug, Clone)]
pub enum RedriveSelector {
    Request(String),
    /// A channel (id or developer name) and a failure-time window; `None` = not given.
    Channel {
        channel: String,
        from_ms: Option<i64>,
        before_ms: Option<i64>,
    },
}

impl Service {
    /// Queues again the messages of a request, or of a channel within a failure-time
    /// window, that failed `RetriesExhausted` (see `store::sql::control::redrive`).
    pub async fn retry_failed_messages(
        &self,
        principal: &Principal,
        selector: Option<RedriveSelector>,
    ) -> Result<Redriven, AppError> {
        principal.require(Scope::Admin)?;
        let tenant = principal.tenant.as_str();
        let scope = match selector {
            None => {
                return Err(AppError::invalid(Violation::new(
                    "selector",
                    ErrorKind::RequiredFieldMissing,
                    "give request_id or channel_window",
                )));
            }
            Some(RedriveSelector::Request(raw)) => {
                RedriveScope::Request(parse_id("requestId", &raw, IdKind::SendRequest)?)
            }
            Some(RedriveSelector::Channel { channel, from_ms, before_ms }) => {
                let mut v = Vec::new();
                if channel.trim().is_empty() {
                    v.push(Violation::missing("channelWindow.channel"));
                }
                if from_ms.is_none() {
                    v.push(Violation::missing("channelWindow.failedFrom"));
                }
                if before_ms.is_none() {
                    v.push(Violation::missing("channelWindow.failedBefore"));
                }
                if let (Some(from), Some(before)) = (from_ms, before_ms)
                    && before <= from
                {
                    v.push(Violation::new(
                        "channelWindow.failedBefore",
                        ErrorKind::InvalidInput,
                        "failedBefore must be after failedFrom",
                    ));
                }
                if !v.is_empty() {
                    return Err(AppError::Invalid(v));
                }
                let found = self.store.get_channel(tenant, &id_or_name(&channel, IdKind::MessagingChannel)).await?;
                let Some(found) = found else {
                    return Err(AppError::NotFound(format!("no channel {}", quoted(channel.trim()))));
                };
                RedriveScope::Channel {
                    channel: found.id,
                    from_ms: from_ms.unwrap_or_default(),
                    before_ms: before_ms.unwrap_or_default(),
                }
            }
        };
        let Some(redriven) = self.store.redrive(tenant, &scope, self.now(), REDRIVE_LIMIT).await? else {
            let RedriveScope::Request(id) = scope else { unreachable!("only a request scope can be missing") };
            return Err(AppError::NotFound(format!("no ConvMessageSendRequest {id}")));
        };
        tracing::info!(messages = redriven.messages, requests = redriven.requests.len(), "failed messages requeued");
        for id in &redriven.requests {
            self.events.request_changed(id);
        }
        if redriven.messages > 0 {
            self.events.work_available();
        }
        Ok(redriven)
    }
}

impl Service {
    /// Deletes a channel (by id or developer name) that no end user or subscription
    /// belongs to; otherwise FAILED_PRECONDITION naming them.
    pub async fn delete_channel(&self, principal: &Principal, key: &str) -> Result<(), AppError> {
        principal.require(Scope::Admin)?;
        let tenant = principal.tenant.as_str();
        let found = self.store.get_channel(tenant, &id_or_name(key, IdKind::MessagingChannel)).await?;
        let found = found.ok_or_else(|| AppError::NotFound(format!("no channel {}", quoted(key.trim()))))?;
        deleted(self.store.delete_channel(tenant, &found.id).await?, || format!("no channel {}", quoted(key.trim())))
    }

    /// Deletes a messaging component (by id or API name) that no request not yet
    /// completed uses; otherwise FAILED_PRECONDITION naming them.
    pub async fn delete_definition(&self, principal: &Principal, key: &str) -> Result<(), AppError> {
        principal.require(Scope::Admin)?;
        let tenant = principal.tenant.as_str();
        let found = self.store.get_definition(tenant, &id_or_name(key, IdKind::MessageDefinition)).await?;
        let found =
            found.ok_or_else(|| AppError::NotFound(format!("no messaging component {}", quoted(key.trim()))))?;
        let outcome = self.store.delete_definition(tenant, &found.id).await?;
        self.lookups.forget_components();
        deleted(outcome, || format!("no messaging component {}", quoted(key.trim())))
    }

    /// Deletes a messaging end user, with its sessions and consents, when no message not
    /// yet final is addressed to it; otherwise FAILED_PRECONDITION naming the requests.
    pub async fn delete_end_user(&self, principal: &Principal, raw_id: &str) -> Result<(), AppError> {
        principal.require(Scope::Admin)?;
        let id = parse_id("id", raw_id, IdKind::MessagingEndUser)?;
        let outcome = self.store.delete_end_user(&principal.tenant, &id).await?;
        if outcome == DeleteOutcome::Deleted {
            self.lookups.forget_end_user(&principal.tenant, &id);
        }
        deleted(outcome, || format!("no messaging end user {id}"))
    }
}

fn deleted(outcome: DeleteOutcome, missing: impl FnOnce() -> String) -> Result<(), AppError> {
    match outcome {
        DeleteOutcome::Deleted => Ok(()),
        DeleteOutcome::NotFound => Err(AppError::NotFound(missing())),
        DeleteOutcome::Referenced(why) => Err(AppError::FailedPrecondition(why)),
    }
}
