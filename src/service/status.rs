//! Reading a request's record, and following it as a stream until it completes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{Service, parse_id};
use crate::domain::RecordId;
use crate::domain::ids::IdKind;
use crate::domain::model::*;
use crate::domain::principal::{Principal, Scope};
use crate::error::AppError;
use crate::store::{CancelOutcome, Store};

/// How often a status stream re-reads the record when no in-process change arrives
/// (changes made by other replicas reach it this way).
const WATCH_POLL: Duration = Duration::from_secs(1);

impl Service {
    /// The request record; another tenant's request is NOT_FOUND, as is an unknown one.
    pub async fn get_request(&self, principal: &Principal, raw_id: &str) -> Result<RequestRecord, AppError> {
        principal.require(Scope::Read)?;
        let id = parse_id("requestId", raw_id, IdKind::SendRequest)?;
        self.store
            .get_request(&principal.tenant, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no ConvMessageSendRequest {id}")))
    }

    /// Cancels the request's messages not yet in flight (see `store::sql::control`) and
    /// returns the record as the cancel left it. Needs the `send` scope (whoever may send
    /// may take it back); a request that completed without a cancel is
    /// FAILED_PRECONDITION.
    pub async fn cancel_request(&self, principal: &Principal, raw_id: &str) -> Result<RequestRecord, AppError> {
        principal.require(Scope::Send)?;
        let id = parse_id("requestId", raw_id, IdKind::SendRequest)?;
        match self.store.cancel_request(&principal.tenant, &id, self.now()).await? {
            CancelOutcome::NotFound => return Err(AppError::NotFound(format!("no ConvMessageSendRequest {id}"))),
            CancelOutcome::AlreadyCompleted => {
                return Err(AppError::FailedPrecondition(format!(
                    "ConvMessageSendRequest {id} is already Completed; there is nothing left to cancel"
                )));
            }
            CancelOutcome::Canceled => {}
        }
        tracing::info!(request_id = %id, "request cancelled");
        self.events.request_changed(&id);
        self.events.events_enqueued();
        self.store
            .get_request(&principal.tenant, &id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no ConvMessageSendRequest {id}")))
    }

    /// The record now, then every change (receipts included), ending after `Completed` —
    /// or, with `follow_receipts`, once no receipt can change it (`is_settled`). Fed by
    /// in-process change signals, with the store as the truth (and polled, for other
    /// replicas).
    pub async fn watch_request(
        &self,
        principal: &Principal,
        raw_id: &str,
        follow_receipts: bool,
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
            follow_receipts: bool,
        }
        let state = Watch {
            store: self.store.clone(),
            tenant: principal.tenant.clone(),
            changes,
            next: Some(first),
            last: None,
            done: false,
            follow_receipts,
        };
        Ok(futures_util::stream::unfold(state, |mut w| async move {
            if w.done {
                return None;
            }
            if let Some(record) = w.next.take() {
                w.done = is_final(&record, w.follow_receipts);
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
                        w.done = is_final(&record, w.follow_receipts);
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
}

/// Whether a watch ends with `record`: at `Completed`, or when following receipts, once
/// every message is `Failed` or its delivery is final (`Read`, `Undelivered`).
fn is_final(record: &RequestRecord, follow_receipts: bool) -> bool {
    record.status == RequestStatus::Completed && (!follow_receipts || is_settled(record))
}

/// No receipt can change the record any more.
pub fn is_settled(record: &RequestRecord) -> bool {
    record.messages.iter().all(|m| {
        m.status == MessageState::Failed
            || matches!(m.delivery.state, Some(DeliveryState::Read | DeliveryState::Undelivered))
    })
}
