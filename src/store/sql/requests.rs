//! Reading send requests, the queue's health for the metrics, and the retention purge
//! (a request with its messages, idempotency key and status events).
//! Every query here is indexed: the metrics read maintained counts and the heads of
//! partial indexes, never a count over all requests.

use super::counts::{self, Deltas};
use super::{Conn, Dialect, Sql};
use crate::domain::RecordId;
use crate::domain::model::{Priority, RequestRecord, RequestStatus};
use crate::store::rows::{MessageRow, RequestRow, parse_pick};
use crate::store::{QueueStats, StoreResult};

pub async fn get_request<C: Conn>(conn: &mut C, tenant: &str, id: &RecordId) -> StoreResult<Option<RequestRecord>> {
    let mut sql = Sql::new(conn.dialect(), "SELECT * FROM send_requests WHERE id = ");
    sql.bind(id.as_str()).push(" AND tenant = ").bind(tenant);
    let Some(row) = conn.fetch_optional::<RequestRow>(sql).await? else { return Ok(None) };
    let mut sql = Sql::new(conn.dialect(), "SELECT * FROM messages WHERE request_id = ");
    sql.bind(id.as_str()).push(" ORDER BY position");
    let messages = conn.fetch_all::<MessageRow>(sql).await?;
    let messages = messages.into_iter().map(MessageRow::into_record).collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(row.into_record(messages)?))
}

/// Requests by status (maintained counts) and the queue's health at `now`.
pub async fn queue_stats<C: Conn>(conn: &mut C, now: i64) -> StoreResult<QueueStats> {
    let mut stats = counts::totals(conn).await?;
    let d = conn.dialect();
    let mut sql = Sql::new(
        d,
        "SELECT CAST(COALESCE(SUM(CASE WHEN locked_until_ms > $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN locked_until_ms <= $1 THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM send_requests WHERE status = 'InProgress'",
    );
    sql.arg(now);
    let (leased, expired): (i64, i64) = conn.fetch_one(sql).await?;
    stats.leased = leased as u64;
    stats.expired_leases = expired as u64;

    // The heads of the ready queue's lanes (what is claimed next; each an index range
    // scan) and the earliest due request not yet moved to it: how long the oldest due
    // work has waited.
    let mut head: Option<(i64,)> = None;
    for priority in [Priority::Transactional, Priority::Bulk] {
        let mut lane =
            Sql::new(d, "SELECT due_ms FROM send_requests WHERE status = 'Pending' AND waiting = FALSE AND lane = ");
        lane.bind(priority.lane()).push(&format!(" ORDER BY accepted_ms, {} LIMIT 1", d.seq()));
        if let Some((due,)) = conn.fetch_optional::<(i64,)>(lane).await? {
            head = Some((head.map_or(due, |(h,)| h.min(due)),));
        }
    }
    let mut delayed =
        Sql::new(d, "SELECT MIN(due_ms) FROM send_requests WHERE status = 'Pending' AND waiting = TRUE AND due_ms <= ");
    delayed.bind(now);
    let (delayed,): (Option<i64>,) = conn.fetch_one(delayed).await?;
    stats.oldest_due_ms = [head.map(|(t,)| t), delayed].into_iter().flatten().min();

    let held = Sql::new(
        d,
        "SELECT waiting_reason, CAST(COUNT(*) AS BIGINT) FROM messages \
         WHERE status = 'Pending' AND waiting_reason IS NOT NULL GROUP BY waiting_reason",
    );
    stats.held_by_reason = conn
        .fetch_all::<(String, i64)>(held)
        .await?
        .into_iter()
        .map(|(r, n)| Ok((parse_pick("messages.waiting_reason", &r)?, n.max(0) as u64)))
        .collect::<StoreResult<_>>()?;
    Ok(stats)
}

/// Deletes up to `limit` requests completed before `before_ms`, with their messages and
/// idempotency keys, in the caller's transaction; returns how many requests went. On
/// PostgreSQL rows another replica is purging are skipped.
pub async fn purge_completed<C: Conn>(conn: &mut C, before_ms: i64, limit: u32, shard: i64) -> StoreResult<u64> {
    let d = conn.dialect();
    let mut pick = Sql::new(d, "SELECT id FROM send_requests WHERE status = 'Completed' AND completed_ms < ");
    pick.bind(before_ms).push(" ORDER BY completed_ms LIMIT ").bind(i64::from(limit));
    if d == Dialect::Postgres {
        pick.push(" FOR UPDATE SKIP LOCKED");
    }
    let ids: Vec<String> = conn.fetch_all::<(String,)>(pick).await?.into_iter().map(|(id,)| id).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    // A purged request's status events go with it (delivered or not: receipts and
    // replays can no longer refer to it).
    for (table, column) in [
        ("idempotency_keys", "request_id"),
        ("event_deliveries", "request_id"),
        ("event_outbox", "request_id"),
        ("messages", "request_id"),
        ("send_requests", "id"),
    ] {
        let mut delete = Sql::new(d, &format!("DELETE FROM {table} WHERE "));
        delete.in_list(column, ids.clone());
        let n = conn.execute(delete).await?;
        if table == "send_requests" {
            let mut deltas = Deltas::default();
            deltas.add(RequestStatus::Completed, -(n as i64));
            counts::apply(conn, shard, &deltas).await?;
            return Ok(n);
        }
    }
    unreachable!("the loop returns after deleting the requests")
}
