//! Delivery control, both backends: cancelling a request. Runs in one write transaction
//! that first locks the request row — the row every dispatcher write locks and checks
//! (`delivery::held_leases`) — so a cancel and a message start on any replica are
//! ordered: a message started before the cancel is in flight and finishes; any start
//! after it finds the message final and sends nothing.

use super::counts::{self, Deltas};
use super::{Conn, Sql};
use crate::domain::RecordId;
use crate::domain::delivery::reason;
use crate::domain::model::{Picklist, RequestStatus};
use crate::store::{CancelOutcome, StoreError, StoreResult};

/// Cancels the tenant's request `id`: its `Pending` messages fail `Canceled`; when no
/// message is in flight the request completes now (its lease, if any, ends with it),
/// else the dispatcher completes it once the in-flight ones are final. A request
/// cancelled before answers `Canceled` again and changes nothing.
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
         next_attempt_ms = NULL, updated_ms = $2 WHERE request_id = $3 AND status = 'Pending'",
    );
    fail.arg(reason::CANCELED).arg(now).arg(id.as_str());
    conn.execute(fail).await?;
    let mut in_flight =
        Sql::new(d, "SELECT CAST(COUNT(*) AS BIGINT) FROM messages WHERE status = 'InProgress' AND request_id = ");
    in_flight.bind(id.as_str());
    let (in_flight,): (i64,) = conn.fetch_one(in_flight).await?;
    if in_flight > 0 {
        let mut mark = Sql::new(d, "UPDATE send_requests SET canceled_ms = $1, updated_ms = $1 WHERE id = $2");
        mark.arg(now).arg(id.as_str());
        conn.execute(mark).await?;
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
    Ok(CancelOutcome::Canceled)
}
