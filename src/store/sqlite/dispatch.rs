//! The delivery queue in SQLite. Claiming counts leased `InProgress` requests and
//! claims at most the remainder inside one `BEGIN IMMEDIATE` transaction — SQLite has one
//! writer, so the count and the claim cannot interleave with another claimer's and the
//! global limit holds. Every write after a claim is fenced on the lease owner, so a
//! replica that lost its lease can no longer change the request.

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{QueryBuilder, Sqlite};

use super::admin::find_end_users_in;
use super::rows::*;
use crate::domain::RecordId;
use crate::store::*;

pub async fn claim_requests(
    pool: &SqlitePool,
    owner: &str,
    now: i64,
    lease_ms: i64,
    max_in_progress: u32,
    batch: u32,
) -> StoreResult<Vec<Claim>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let leased: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM send_requests WHERE status = 'InProgress' AND locked_until_ms > ?")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
    let room = (i64::from(max_in_progress) - leased).clamp(0, i64::from(batch));
    if room == 0 {
        return Ok(Vec::new());
    }
    let claims: Vec<ClaimRow> = sqlx::query_as(
        "SELECT id, tenant, accepted_ms, status = 'InProgress' AS takeover, trace_context FROM send_requests \
         WHERE (status = 'Pending' AND due_ms <= ?1) OR (status = 'InProgress' AND locked_until_ms <= ?1) \
         ORDER BY accepted_ms, rowid LIMIT ?2",
    )
    .bind(now)
    .bind(room)
    .fetch_all(&mut *tx)
    .await?;
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let mut update: QueryBuilder<Sqlite> =
        QueryBuilder::new("UPDATE send_requests SET status = 'InProgress', locked_by = ");
    update
        .push_bind(owner.to_owned())
        .push(", locked_until_ms = ")
        .push_bind(now + lease_ms)
        .push(", updated_ms = ")
        .push_bind(now)
        .push(" WHERE id IN (");
    let mut ids = update.separated(", ");
    for claim in &claims {
        ids.push_bind(claim.id.clone());
    }
    update.push(")");
    update.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(claims.into_iter().map(|c| c.into_claim(owner)).collect())
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    tenant: String,
    accepted_ms: i64,
    /// Was `InProgress` (under an expired lease) before this claim.
    takeover: bool,
    trace_context: Option<String>,
}

impl ClaimRow {
    fn into_claim(self, lease: &str) -> Claim {
        Claim {
            request_id: RecordId::from_trusted(self.id),
            tenant: self.tenant,
            lease: lease.to_owned(),
            accepted_ms: self.accepted_ms,
            takeover: self.takeover,
            trace_context: self.trace_context,
        }
    }
}

#[derive(sqlx::FromRow)]
struct WorkRow {
    definition_id: String,
    definition_name: String,
    parameters: String,
    enforce_consent: bool,
    consent_type: String,
    subscription_id: Option<String>,
    allowed_session_status: String,
    trace_context: Option<String>,
}

#[derive(sqlx::FromRow)]
struct DueMessage {
    identifier: String,
    end_user_id: String,
    platform_key: String,
    attempts: i64,
    waiting_since_ms: Option<i64>,
}

pub async fn load_work(pool: &SqlitePool, claim: &Claim, now: i64) -> StoreResult<Work> {
    let mut conn = pool.acquire().await?;
    let row: WorkRow = sqlx::query_as(
        "SELECT definition_id, definition_name, parameters, enforce_consent, consent_type, subscription_id, \
         allowed_session_status, trace_context FROM send_requests WHERE id = ?",
    )
    .bind(claim.request_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let definition: Option<DefinitionRow> = sqlx::query_as("SELECT * FROM message_definitions WHERE id = ?")
        .bind(&row.definition_id)
        .fetch_optional(&mut *conn)
        .await?;
    let due: Vec<DueMessage> = sqlx::query_as(
        "SELECT identifier, end_user_id, platform_key, attempts, waiting_since_ms FROM messages \
         WHERE request_id = ? AND status IN ('Pending', 'InProgress') \
         AND (next_attempt_ms IS NULL OR next_attempt_ms <= ?) ORDER BY position",
    )
    .bind(claim.request_id.as_str())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let user_ids: Vec<RecordId> = due.iter().map(|m| RecordId::from_trusted(m.end_user_id.clone())).collect();
    let users = find_end_users_in(&mut conn, &claim.tenant, &user_ids).await?;
    let mut items = Vec::with_capacity(due.len());
    for m in due {
        let Some(end_user) = users.iter().find(|u| u.id.as_str() == m.end_user_id).cloned() else {
            return Err(StoreError::Corrupt(format!("message {} names a missing end user", m.identifier)));
        };
        let channel: ChannelRow = sqlx::query_as("SELECT * FROM channels WHERE id = ?")
            .bind(end_user.channel_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
        let session_status = latest_session_status(&mut conn, &m.end_user_id).await?;
        let subscription_consent = match &row.subscription_id {
            Some(sub) => {
                let status: Option<String> = sqlx::query_scalar(
                    "SELECT status FROM subscription_consents WHERE subscription_id = ? AND end_user_id = ?",
                )
                .bind(sub)
                .bind(&m.end_user_id)
                .fetch_optional(&mut *conn)
                .await?;
                status.map(|s| parse_pick("subscription_consents.status", &s)).transpose()?
            }
            None => None,
        };
        items.push(WorkItem {
            identifier: m.identifier,
            platform_key: m.platform_key,
            end_user,
            channel: channel.into_record()?,
            session_status,
            subscription_consent,
            attempts: u32::try_from(m.attempts).unwrap_or(u32::MAX),
            waiting_since_ms: m.waiting_since_ms,
        });
    }
    Ok(Work {
        request_id: claim.request_id.clone(),
        tenant: claim.tenant.clone(),
        lease: claim.lease.clone(),
        loaded_at_ms: now,
        definition_name: row.definition_name,
        definition: definition.map(DefinitionRow::into_record).transpose()?,
        parameters_json: row.parameters,
        enforce_consent: row.enforce_consent,
        consent_type: parse_pick("send_requests.consent_type", &row.consent_type)?,
        subscription_id: row.subscription_id.map(RecordId::from_trusted),
        allowed_session_status: parse_pick("send_requests.allowed_session_status", &row.allowed_session_status)?,
        trace_context: row.trace_context,
        items,
    })
}

async fn latest_session_status(conn: &mut SqliteConnection, end_user: &str) -> StoreResult<Option<SessionStatus>> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM sessions WHERE end_user_id = ? ORDER BY created_ms DESC, rowid DESC LIMIT 1",
    )
    .bind(end_user)
    .fetch_optional(&mut *conn)
    .await?;
    status.map(|s| parse_pick("sessions.status", &s)).transpose()
}

/// Whether `owner` still holds the lease on `request` (checked inside the caller's transaction).
async fn holds_lease(conn: &mut SqliteConnection, owner: &str, request: &RecordId, now: i64) -> StoreResult<bool> {
    let holder: Option<Option<String>> = sqlx::query_scalar(
        "SELECT locked_by FROM send_requests WHERE id = ? AND status = 'InProgress' AND locked_until_ms > ?",
    )
    .bind(request.as_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(holder.flatten().as_deref() == Some(owner))
}

pub async fn renew_lease(
    pool: &SqlitePool,
    owner: &str,
    request: &RecordId,
    now: i64,
    until: i64,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE send_requests SET locked_until_ms = ? WHERE id = ? AND locked_by = ? AND status = 'InProgress' \
         AND locked_until_ms > ?",
    )
    .bind(until)
    .bind(request.as_str())
    .bind(owner)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn start_message(
    pool: &SqlitePool,
    owner: &str,
    request: &RecordId,
    identifier: &str,
    now: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if !holds_lease(&mut tx, owner, request, now).await? {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE messages SET status = 'InProgress', attempts = attempts + 1, waiting_reason = NULL, \
         waiting_since_ms = NULL, sent_by = ?, \
         updated_ms = ? WHERE identifier = ? AND request_id = ?",
    )
    .bind(owner)
    .bind(now)
    .bind(identifier)
    .bind(request.as_str())
    .execute(&mut *tx)
    .await?;
    touch_request(&mut tx, request, now).await?;
    tx.commit().await?;
    Ok(true)
}

async fn touch_request(conn: &mut SqliteConnection, request: &RecordId, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE send_requests SET updated_ms = ? WHERE id = ?")
        .bind(now)
        .bind(request.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn record_outcome(
    pool: &SqlitePool,
    owner: &str,
    request: &RecordId,
    identifier: &str,
    outcome: &MessageOutcome,
    now: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if !holds_lease(&mut tx, owner, request, now).await? {
        return Ok(false);
    }
    // A held message whose end user's session changed after the work was read is due
    // again at once: the change's wake-up found it not yet marked as waiting.
    let wait_next = match outcome {
        MessageOutcome::Wait { recheck_at_ms, loaded_at_ms, .. } => {
            let changed: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(s.updated_ms) FROM sessions s JOIN messages m ON m.end_user_id = s.end_user_id \
                 WHERE m.identifier = ?",
            )
            .bind(identifier)
            .fetch_one(&mut *tx)
            .await?;
            if changed.is_some_and(|t| t > *loaded_at_ms) { now } else { *recheck_at_ms }
        }
        _ => now,
    };
    let query = match outcome {
        MessageOutcome::Success { provider_message_id } => sqlx::query(
            "UPDATE messages SET status = 'Success', provider_message_id = ?, reason = NULL, waiting_reason = NULL, \
             next_attempt_ms = NULL, waiting_since_ms = NULL, updated_ms = ? WHERE identifier = ?",
        )
        .bind(provider_message_id.clone()),
        MessageOutcome::Failed { reason } => sqlx::query(
            "UPDATE messages SET status = 'Failed', reason = ?, waiting_reason = NULL, next_attempt_ms = NULL, \
             waiting_since_ms = NULL, updated_ms = ? WHERE identifier = ?",
        )
        .bind(reason.clone()),
        MessageOutcome::Retry { at_ms, error } => sqlx::query(
            "UPDATE messages SET status = 'Pending', next_attempt_ms = ?, last_error = ?, waiting_reason = NULL, \
             updated_ms = ? WHERE identifier = ?",
        )
        .bind(*at_ms)
        .bind(error.clone()),
        MessageOutcome::Wait { reason, since_ms, .. } => sqlx::query(
            "UPDATE messages SET status = 'Pending', waiting_reason = ?, waiting_since_ms = ?, next_attempt_ms = ?, \
             updated_ms = ? WHERE identifier = ?",
        )
        .bind(reason.clone())
        .bind(*since_ms)
        .bind(wait_next),
    };
    query.bind(now).bind(identifier).execute(&mut *tx).await?;
    touch_request(&mut tx, request, now).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn finish_request(
    pool: &SqlitePool,
    owner: &str,
    request: &RecordId,
    now: i64,
) -> StoreResult<Option<RequestStatus>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    if !holds_lease(&mut tx, owner, request, now).await? {
        return Ok(None);
    }
    // A message left InProgress (its send was interrupted) is due again.
    sqlx::query(
        "UPDATE messages SET status = 'Pending', next_attempt_ms = NULL WHERE request_id = ? AND status = 'InProgress'",
    )
    .bind(request.as_str())
    .execute(&mut *tx)
    .await?;
    let (open, next_due): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(COALESCE(next_attempt_ms, ?)) FROM messages \
         WHERE request_id = ? AND status NOT IN ('Success', 'Failed')",
    )
    .bind(now)
    .bind(request.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let status = if open == 0 {
        sqlx::query(
            "UPDATE send_requests SET status = 'Completed', completed_ms = ?, updated_ms = ?, locked_by = NULL, \
             locked_until_ms = NULL WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(request.as_str())
        .execute(&mut *tx)
        .await?;
        RequestStatus::Completed
    } else {
        sqlx::query(
            "UPDATE send_requests SET status = 'Pending', due_ms = ?, updated_ms = ?, locked_by = NULL, \
             locked_until_ms = NULL WHERE id = ?",
        )
        .bind(next_due.unwrap_or(now))
        .bind(now)
        .bind(request.as_str())
        .execute(&mut *tx)
        .await?;
        RequestStatus::Pending
    };
    tx.commit().await?;
    Ok(Some(status))
}

pub async fn release_leases(pool: &SqlitePool, owner: &str, now: i64) -> StoreResult<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "UPDATE messages SET status = 'Pending', next_attempt_ms = NULL WHERE status = 'InProgress' AND request_id IN \
         (SELECT id FROM send_requests WHERE substr(locked_by, 1, length(?1) + 1) = ?1 || '#' \
         AND status = 'InProgress')",
    )
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    let released = sqlx::query(
        "UPDATE send_requests SET status = 'Pending', due_ms = ?1, locked_by = NULL, locked_until_ms = NULL, \
         updated_ms = ?1 WHERE substr(locked_by, 1, length(?2) + 1) = ?2 || '#' AND status = 'InProgress'",
    )
    .bind(now)
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}

pub async fn queue_stats(pool: &SqlitePool, now: i64) -> StoreResult<QueueStats> {
    let (pending, in_progress, completed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(status = 'Pending' OR (status = 'InProgress' AND locked_until_ms <= ?1)), 0), \
         COALESCE(SUM(status = 'InProgress' AND locked_until_ms > ?1), 0), COALESCE(SUM(status = 'Completed'), 0) \
         FROM send_requests",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(QueueStats { pending: pending as u64, in_progress: in_progress as u64, completed: completed as u64 })
}

/// After an end user's session changed: their held messages are due now, and so are
/// the requests holding them.
pub async fn wake_held_messages(
    conn: &mut SqliteConnection,
    tenant: &str,
    end_user: &RecordId,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE send_requests SET due_ms = MIN(due_ms, ?) WHERE status = 'Pending' AND id IN \
         (SELECT request_id FROM messages WHERE tenant = ? AND end_user_id = ? AND status = 'Pending' \
         AND waiting_reason IS NOT NULL)",
    )
    .bind(now)
    .bind(tenant)
    .bind(end_user.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE messages SET next_attempt_ms = ? WHERE tenant = ? AND end_user_id = ? AND status = 'Pending' \
         AND waiting_reason IS NOT NULL",
    )
    .bind(now)
    .bind(tenant)
    .bind(end_user.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes up to `limit` requests completed before `before_ms`, with their messages
/// and idempotency keys, in one short transaction. Returns how many requests went.
pub async fn purge_completed(pool: &SqlitePool, before_ms: i64, limit: u32) -> StoreResult<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM send_requests WHERE status = 'Completed' AND completed_ms < ? ORDER BY completed_ms LIMIT ?",
    )
    .bind(before_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    for table in ["DELETE FROM idempotency_keys WHERE request_id IN (", "DELETE FROM messages WHERE request_id IN ("] {
        let mut delete: QueryBuilder<Sqlite> = QueryBuilder::new(table);
        let mut list = delete.separated(", ");
        for id in &ids {
            list.push_bind(id.clone());
        }
        delete.push(")");
        delete.build().execute(&mut *tx).await?;
    }
    let mut delete: QueryBuilder<Sqlite> = QueryBuilder::new("DELETE FROM send_requests WHERE id IN (");
    let mut list = delete.separated(", ");
    for id in &ids {
        list.push_bind(id.clone());
    }
    delete.push(")");
    let purged = delete.build().execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(purged)
}
