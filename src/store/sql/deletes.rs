//! Deleting provisioned records, both backends, each in one write transaction that
//! locks the record first. A record still needed is refused, naming what needs it:
//! a channel while end users or subscriptions belong to it; a messaging end user while
//! messages not yet final are addressed to it; a messaging component while requests not
//! yet completed use it. Finished requests keep what they recorded (the end user's id,
//! the component's API name), so history stays readable.
//!
//! Open requests are found through the queue's partial indexes (ready, delayed,
//! leased), never by a scan over every request.

use super::{Conn, Sql};
use crate::domain::RecordId;
use crate::store::{DeleteOutcome, StoreResult};

/// The open (not completed) requests, as a condition on `r` that each arm of which
/// matches one of the queue's partial indexes.
const OPEN: &str = "((r.status = 'Pending' AND r.waiting = FALSE) OR (r.status = 'Pending' AND r.waiting = TRUE) \
                    OR r.status = 'InProgress')";

/// How a refusal lists what refers to a record: the first few, and how many in all.
fn listing(what: &str, ids: &[String], total: i64) -> String {
    let shown = ids.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if total as usize > ids.len().min(3) {
        format!("{total} {what} ({shown}, …)")
    } else {
        format!("{total} {what} ({shown})")
    }
}

async fn count_and_first<C: Conn>(conn: &mut C, first: Sql, count: Sql) -> StoreResult<(i64, Vec<String>)> {
    let (n,): (i64,) = conn.fetch_one(count).await?;
    if n == 0 {
        return Ok((0, Vec::new()));
    }
    let ids: Vec<(String,)> = conn.fetch_all(first).await?;
    Ok((n, ids.into_iter().map(|(id,)| id).collect()))
}

/// Deletes the tenant's channel unless end users or subscriptions belong to it.
pub async fn delete_channel<C: Conn>(conn: &mut C, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome> {
    let d = conn.dialect();
    let mut lock = Sql::new(d, "SELECT id FROM channels WHERE id = ");
    lock.bind(id.as_str()).push(" AND tenant = ").bind(tenant).push(d.for_update());
    if conn.fetch_optional::<(String,)>(lock).await?.is_none() {
        return Ok(DeleteOutcome::NotFound);
    }
    let mut first = Sql::new(d, "SELECT id FROM end_users WHERE channel_id = $1 ORDER BY id LIMIT 3");
    first.arg(id.as_str());
    let mut count = Sql::new(d, "SELECT CAST(COUNT(*) AS BIGINT) FROM end_users WHERE channel_id = $1");
    count.arg(id.as_str());
    let (users, ids) = count_and_first(conn, first, count).await?;
    if users > 0 {
        return Ok(DeleteOutcome::Referenced(format!(
            "channel {id} has {}; delete them first",
            listing("messaging end users", &ids, users)
        )));
    }
    let mut first = Sql::new(d, "SELECT id FROM subscriptions WHERE channel_id = $1 ORDER BY id LIMIT 3");
    first.arg(id.as_str());
    let mut count = Sql::new(d, "SELECT CAST(COUNT(*) AS BIGINT) FROM subscriptions WHERE channel_id = $1");
    count.arg(id.as_str());
    let (subscriptions, ids) = count_and_first(conn, first, count).await?;
    if subscriptions > 0 {
        return Ok(DeleteOutcome::Referenced(format!(
            "channel {id} has {}",
            listing("communication subscriptions", &ids, subscriptions)
        )));
    }
    for table in ["channel_slots WHERE channel_id = $1", "channels WHERE id = $1"] {
        let mut sql = Sql::new(d, &format!("DELETE FROM {table}"));
        sql.arg(id.as_str());
        conn.execute(sql).await?;
    }
    Ok(DeleteOutcome::Deleted)
}

/// Deletes the tenant's messaging end user, with its sessions and subscription consents,
/// unless messages not yet final are addressed to it.
pub async fn delete_end_user<C: Conn>(conn: &mut C, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome> {
    let d = conn.dialect();
    let mut lock = Sql::new(d, "SELECT id FROM end_users WHERE id = ");
    lock.bind(id.as_str()).push(" AND tenant = ").bind(tenant).push(d.for_update());
    if conn.fetch_optional::<(String,)>(lock).await?.is_none() {
        return Ok(DeleteOutcome::NotFound);
    }
    let open = format!(
        "FROM messages m JOIN send_requests r ON r.id = m.request_id WHERE m.end_user_id = $1 \
         AND m.status IN ('Pending', 'InProgress') AND {OPEN}"
    );
    let mut first = Sql::new(d, &format!("SELECT DISTINCT m.request_id {open} ORDER BY m.request_id LIMIT 3"));
    first.arg(id.as_str());
    let mut count = Sql::new(d, &format!("SELECT CAST(COUNT(*) AS BIGINT) {open}"));
    count.arg(id.as_str());
    let (pending, requests) = count_and_first(conn, first, count).await?;
    if pending > 0 {
        return Ok(DeleteOutcome::Referenced(format!(
            "messaging end user {id} has {pending} messages not yet final, of requests {}{}; cancel them or let \
             them finish first",
            requests.join(", "),
            if requests.len() == 3 { ", …" } else { "" }
        )));
    }
    for table in
        ["subscription_consents WHERE end_user_id = $1", "sessions WHERE end_user_id = $1", "end_users WHERE id = $1"]
    {
        let mut sql = Sql::new(d, &format!("DELETE FROM {table}"));
        sql.arg(id.as_str());
        conn.execute(sql).await?;
    }
    Ok(DeleteOutcome::Deleted)
}

/// Deletes the tenant's messaging component unless requests not yet completed use it.
pub async fn delete_definition<C: Conn>(conn: &mut C, tenant: &str, id: &RecordId) -> StoreResult<DeleteOutcome> {
    let d = conn.dialect();
    let mut lock = Sql::new(d, "SELECT id FROM message_definitions WHERE id = ");
    lock.bind(id.as_str()).push(" AND tenant = ").bind(tenant).push(d.for_update());
    if conn.fetch_optional::<(String,)>(lock).await?.is_none() {
        return Ok(DeleteOutcome::NotFound);
    }
    let open = format!("FROM send_requests r WHERE r.definition_id = $1 AND {OPEN}");
    let mut first = Sql::new(d, &format!("SELECT r.id {open} ORDER BY r.id LIMIT 3"));
    first.arg(id.as_str());
    let mut count = Sql::new(d, &format!("SELECT CAST(COUNT(*) AS BIGINT) {open}"));
    count.arg(id.as_str());
    let (open_requests, ids) = count_and_first(conn, first, count).await?;
    if open_requests > 0 {
        return Ok(DeleteOutcome::Referenced(format!(
            "messaging component {id} is used by {}; cancel them or let them complete first",
            listing("requests not yet completed", &ids, open_requests)
        )));
    }
    let mut sql = Sql::new(d, "DELETE FROM message_definitions WHERE id = $1");
    sql.arg(id.as_str());
    conn.execute(sql).await?;
    Ok(DeleteOutcome::Deleted)
}
