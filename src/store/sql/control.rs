//! Delivery control, both backends: cancelling a request, and redriving failed messages. Runs in one write transaction
//! that first locks the request row — the row every dispatcher write locks and checks
//! (`delivery::held_leases`) — so a cancel and a message start on any replica are
//! ordered: a message started before the cancel is in flight and finishes; any start
//! after it finds the message final and sends nothing.

use super::counts::{self, Deltas};
use super::outbox::{self, NewEvent};
use super::{Conn, Sql};
use crate::domain::RecordId;
use crate::domain::model::{Picklist, RequestStatus};
use crate::domain::reason::FailureReason;
use crate::store::{CancelOutcome, RedriveScope, Redriven, StoreError, StoreResult};

/// Cancels the tenant's request `id`: its `Pending` messages fail `Canceled`; when no
/// message is in flight the request completes now (its lease, if any, ends with it),
/// else the dispatcher completes it once the in-flight ones are final. A request
/// cancelled before answers `Canceled` again and changes nothing. The status events
/// (`message.failed` for each message it ends, `request.completed` when it completes the
/// request) are written in the same transaction, as the dispatcher's are.
pub async fn cancel_request<C: Conn>(
    conn: &mut C,
    tenant: &str,
    id: &RecordId,
    now: i64,
    shard: i64,
) -> StoreResult<CancelOutcome> {
    let d = conn.dialect();
    let mut sql = Sql::new(d, "SELECT status, canceled_ms FROM send_requests WHERE id = ");
    sql.bind(id.as_str()).push(" AND tenant = ").bind(tenant).push(d.for_update());
    let Some((status, canceled)) = conn.fetch_optional::<(String, Option<i64>)>(sql).await? else {
        return Ok(CancelOutcome::NotFound);
    };
    let status = RequestStatus::parse_api(&status)
        .ok_or_else(|| StoreError::Corrupt(format!("send_requests.status: {status:?}")))?;
    if canceled.is_some() {
        return Ok(CancelOutcome::Canceled);
    }
    if status == RequestStatus::Completed {
        return Ok(CancelOutcome::AlreadyCompleted);
    }
    let mut fail = Sql::new(
        d,
        "UPDATE messages SET status = 'Failed', reason = $1, waiting_reason = NULL, waiting_since_ms = NULL, \
         next_attempt_ms = NULL, updated_ms = $2 WHERE request_id = $3 AND status = 'Pending' RETURNING identifier",
    );
    fail.arg(FailureReason::Canceled.as_str()).arg(now).arg(id.as_str());
    let ended: Vec<(String,)> = conn.fetch_all(fail).await?;
    let mut events: Vec<NewEvent> = ended
        .into_iter()
        .map(|(identifier,)| NewEvent::message_failed(tenant, id.as_str(), &identifier, FailureReason::Canceled, now))
        .collect();
    let mut in_flight =
        Sql::new(d, "SELECT CAST(COUNT(*) AS BIGINT) FROM messages WHERE status = 'InProgress' AND request_id = ");
    in_flight.bind(id.as_str());
    let (in_flight,): (i64,) = conn.fetch_one(in_flight).await?;
    if in_flight > 0 {
        let mut mark = Sql::new(d, "UPDATE send_requests SET canceled_ms = $1, updated_ms = $1 WHERE id = $2");
        mark.arg(now).arg(id.as_str());
        conn.execute(mark).await?;
        outbox::enqueue(conn, events).await?;
        return Ok(CancelOutcome::Canceled);
    }
    let mut complete = Sql::new(
        d,
        "UPDATE send_requests SET status = 'Completed', canceled_ms = $1, completed_ms = $1, updated_ms = $1, \
         waiting = FALSE, locked_by = NULL, locked_until_ms = NULL WHERE id = $2",
    );
    complete.arg(now).arg(id.as_str());
    conn.execute(complete).await?;
    let mut deltas = Deltas::default();
    deltas.moved(status, RequestStatus::Completed, 1);
    counts::apply(conn, shard, &deltas).await?;
    events.push(NewEvent::request_completed(tenant, id.as_str(), now));
    outbox::enqueue(conn, events).await?;
    Ok(CancelOutcome::Canceled)
}

/// Queues again up to `limit` of the tenant's messages in `scope` that failed for a
/// transient reason (`RetriesExhausted`), skipping cancelled requests. Each keeps its
/// identifier and starts a fresh retry schedule (attempts 0, due now). Their requests'
/// rows are locked first (as every dispatcher write locks them), then: a `Completed`
/// request is `Pending` and ready again, its CompletedDate cleared (it gets a new one
/// when it completes again); a `Pending` one is due now; an `InProgress` one is left to
/// its claim, whose end finds the message due and queues the request again.
pub async fn redrive<C: Conn>(
    conn: &mut C,
    tenant: &str,
    scope: &RedriveScope,
    now: i64,
    limit: u32,
    shard: i64,
) -> StoreResult<Option<Redriven>> {
    let d = conn.dialect();
    let reason = FailureReason::RetriesExhausted.as_str();
    let candidates = match scope {
        RedriveScope::Request(id) => {
            let mut exists = Sql::new(d, "SELECT id FROM send_requests WHERE id = ");
            exists.bind(id.as_str()).push(" AND tenant = ").bind(tenant);
            if conn.fetch_optional::<(String,)>(exists).await?.is_none() {
                return Ok(None);
            }
            let mut sql = Sql::new(
                d,
                "SELECT m.identifier, m.request_id FROM messages m JOIN send_requests r ON r.id = m.request_id \
                 WHERE m.request_id = $1 AND m.tenant = $2 AND m.status = 'Failed' AND m.reason = $3 \
                 AND r.canceled_ms IS NULL ORDER BY m.position LIMIT $4",
            );
            sql.arg(id.as_str()).arg(tenant).arg(reason).arg(i64::from(limit) + 1);
            sql
        }
        RedriveScope::Channel { channel, from_ms, before_ms } => {
            let mut sql = Sql::new(
                d,
                "SELECT m.identifier, m.request_id FROM messages m JOIN end_users e ON e.id = m.end_user_id \
                 JOIN send_requests r ON r.id = m.request_id \
                 WHERE m.tenant = $1 AND m.status = 'Failed' AND m.reason = $2 \
                 AND m.updated_ms >= $3 AND m.updated_ms < $4 AND e.channel_id = $5 AND r.canceled_ms IS NULL \
                 ORDER BY m.updated_ms, m.identifier LIMIT $6",
            );
            sql.arg(tenant).arg(reason).arg(*from_ms).arg(*before_ms).arg(channel.as_str()).arg(i64::from(limit) + 1);
            sql
        }
    };
    let mut found: Vec<(String, String)> = conn.fetch_all(candidates).await?;
    let has_more = found.len() > limit as usize;
    found.truncate(limit as usize);
    if found.is_empty() {
        return Ok(Some(Redriven::default()));
    }
    let mut request_ids: Vec<String> = found.iter().map(|(_, r)| r.clone()).collect();
    request_ids.sort();
    request_ids.dedup();

    // Lock the requests (sorted: no deadlock with the dispatcher's writes), then
    // re-check each message under the lock.
    let mut lock = Sql::new(d, "SELECT id, status FROM send_requests WHERE canceled_ms IS NULL AND ");
    lock.in_list("id", request_ids.clone()).push(" ORDER BY id").push(d.for_update());
    let statuses: Vec<(String, String)> = conn.fetch_all(lock).await?;
    let locked: Vec<String> = statuses.iter().map(|(id, _)| id.clone()).collect();
    let identifiers: Vec<String> =
        found.into_iter().filter(|(_, r)| locked.binary_search(r).is_ok()).map(|(i, _)| i).collect();
    if identifiers.is_empty() {
        return Ok(Some(Redriven::default()));
    }
    let mut requeue = Sql::new(
        d,
        "UPDATE messages SET status = 'Pending', reason = NULL, attempts = 0, next_attempt_ms = NULL, \
         waiting_reason = NULL, waiting_since_ms = NULL, updated_ms = $1 WHERE status = 'Failed' AND reason = $2 AND ",
    );
    requeue.arg(now).arg(reason).in_list("identifier", identifiers.clone());
    let messages = conn.execute(requeue).await?;

    let mut touched: Vec<RecordId> = Vec::new();
    let (mut completed, mut pending) = (Vec::new(), Vec::new());
    for (id, status) in &statuses {
        match RequestStatus::parse_api(status) {
            Some(RequestStatus::Completed) => completed.push(id.clone()),
            Some(RequestStatus::Pending) => pending.push(id.clone()),
            Some(RequestStatus::InProgress) => {}
            None => return Err(StoreError::Corrupt(format!("send_requests.status: {status:?}"))),
        }
        touched.push(RecordId::from_trusted(id.clone()));
    }
    if !completed.is_empty() {
        let mut sql = Sql::new(
            d,
            "UPDATE send_requests SET status = 'Pending', completed_ms = NULL, waiting = FALSE, due_ms = $1, \
             updated_ms = $1 WHERE ",
        );
        sql.arg(now).in_list("id", completed.clone());
        conn.execute(sql).await?;
    }
    if !pending.is_empty() {
        let mut sql = Sql::new(d, "UPDATE send_requests SET waiting = FALSE, due_ms = $1, updated_ms = $1 WHERE ");
        sql.arg(now).in_list("id", pending);
        conn.execute(sql).await?;
    }
    let mut deltas = Deltas::default();
    deltas.moved(RequestStatus::Completed, RequestStatus::Pending, completed.len() as i64);
    counts::apply(conn, shard, &deltas).await?;
    Ok(Some(Redriven { messages, requests: touched, has_more }))
}
