//! The delivery queue in PostgreSQL, shared by every replica.
//!
//! Claiming is one short transaction: take the claim lock
//! (`pg_advisory_xact_lock(CLAIM_LOCK)`), count the leased `InProgress` requests, and
//! claim at most the remainder with `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
//! LOCKED)`. The advisory lock makes count-and-claim atomic across replicas: claimers
//! run one at a time, each one's count is a fresh READ COMMITTED snapshot taken after
//! the previous claimer committed (the lock is released only at commit), so it includes
//! every claim made so far. Nothing else raises the count (finishing, releasing and
//! expiry only lower it), so a count that races with them is at worst too high — the
//! claimer takes fewer, never more. Hence the number of leased requests never exceeds
//! `max_in_progress`, however many replicas claim. `SKIP LOCKED` keeps a claimer from
//! waiting on rows that other transactions (finishing, session changes) hold briefly.
//!
//! Every write after a claim locks the request row (`FOR UPDATE`) and checks the lease
//! owner first, so a replica that lost its lease can no longer change the request, and
//! a takeover cannot slip in between the check and the write. No transaction is held
//! across a provider call: the dispatcher calls these between sends.

use sqlx::postgres::{PgConnection, PgPool};

use super::admin::find_end_users_in;
use super::rows::*;
use crate::domain::RecordId;
use crate::store::*;

/// The advisory lock key that serialises claiming (any constant, shared by all
/// replicas; "convmsg" in ASCII).
const CLAIM_LOCK: i64 = 0x0063_6f6e_766d_7367;

pub async fn claim_requests(
    pool: &PgPool,
    owner: &str,
    now: i64,
    lease_ms: i64,
    max_in_progress: u32,
    batch: u32,
) -> StoreResult<Vec<Claim>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK).execute(&mut *tx).await?;
    let leased: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM send_requests WHERE status = 'InProgress' AND locked_until_ms > $1")
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
    let room = (i64::from(max_in_progress) - leased).clamp(0, i64::from(batch));
    if room == 0 {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    // The CTE sees each row before the update, so it tells takeovers (still
    // `InProgress`, lease expired) from pending requests.
    let mut claims: Vec<ClaimRow> = sqlx::query_as(
        "WITH picked AS (SELECT id, status = 'InProgress' AS takeover FROM send_requests \
         WHERE (status = 'Pending' AND due_ms <= $3) OR (status = 'InProgress' AND locked_until_ms <= $3) \
         ORDER BY accepted_ms, seq LIMIT $4 FOR UPDATE SKIP LOCKED) \
         UPDATE send_requests s SET status = 'InProgress', locked_by = $1, locked_until_ms = $2, updated_ms = $3 \
         FROM picked WHERE s.id = picked.id \
         RETURNING s.id, s.tenant, s.accepted_ms, s.seq, picked.takeover, s.trace_context",
    )
    .bind(owner)
    .bind(now + lease_ms)
    .bind(now)
    .bind(room)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    // RETURNING does not keep the subquery's order: restore FIFO.
    claims.sort_by_key(|c| (c.accepted_ms, c.seq));
    Ok(claims
        .into_iter()
        .map(|c| Claim {
            request_id: RecordId::from_trusted(c.id),
            tenant: c.tenant,
            lease: owner.to_owned(),
            accepted_ms: c.accepted_ms,
            takeover: c.takeover,
            trace_context: c.trace_context,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct ClaimRow {
    id: String,
    tenant: String,
    accepted_ms: i64,
    seq: i64,
    /// Was `InProgress` (under an expired lease) before this claim.
    takeover: bool,
    trace_context: Option<String>,
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

pub async fn load_work(pool: &PgPool, claim: &Claim, now: i64) -> StoreResult<Work> {
    let mut conn = pool.acquire().await?;
    let row: WorkRow = sqlx::query_as(
        "SELECT definition_id, definition_name, parameters, enforce_consent, consent_type, subscription_id, \
         allowed_session_status, trace_context FROM send_requests WHERE id = $1",
    )
    .bind(claim.request_id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let definition: Option<DefinitionRow> = sqlx::query_as("SELECT * FROM message_definitions WHERE id = $1")
        .bind(&row.definition_id)
        .fetch_optional(&mut *conn)
        .await?;
    let due: Vec<DueMessage> = sqlx::query_as(
        "SELECT identifier, end_user_id, platform_key, attempts, waiting_since_ms FROM messages \
         WHERE request_id = $1 AND status IN ('Pending', 'InProgress') \
         AND (next_attempt_ms IS NULL OR next_attempt_ms <= $2) ORDER BY position",
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
        let channel: ChannelRow = sqlx::query_as("SELECT * FROM channels WHERE id = $1")
            .bind(end_user.channel_id.as_str())
            .fetch_one(&mut *conn)
            .await?;
        let session_status = latest_session_status(&mut conn, &m.end_user_id).await?;
        let subscription_consent = match &row.subscription_id {
            Some(sub) => {
                let status: Option<String> = sqlx::query_scalar(
                    "SELECT status FROM subscription_consents WHERE subscription_id = $1 AND end_user_id = $2",
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

async fn latest_session_status(conn: &mut PgConnection, end_user: &str) -> StoreResult<Option<SessionStatus>> {
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM sessions WHERE end_user_id = $1 ORDER BY created_ms DESC, seq DESC LIMIT 1",
    )
    .bind(end_user)
    .fetch_optional(&mut *conn)
    .await?;
    status.map(|s| parse_pick("sessions.status", &s)).transpose()
}

/// Whether `owner` still holds the lease on `request`; locks the request row until the
/// caller's transaction ends, so the lease cannot change hands before its write.
async fn holds_lease(conn: &mut PgConnection, owner: &str, request: &RecordId, now: i64) -> StoreResult<bool> {
    let holder: Option<Option<String>> = sqlx::query_scalar(
        "SELECT locked_by FROM send_requests WHERE id = $1 AND status = 'InProgress' AND locked_until_ms > $2 \
             FOR UPDATE",
    )
    .bind(request.as_str())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(holder.flatten().as_deref() == Some(owner))
}

pub async fn renew_lease(pool: &PgPool, owner: &str, request: &RecordId, now: i64, until: i64) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE send_requests SET locked_until_ms = $1 WHERE id = $2 AND locked_by = $3 AND status = 'InProgress' \
         AND locked_until_ms > $4",
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
    pool: &PgPool,
    owner: &str,
    request: &RecordId,
    identifier: &str,
    now: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    if !holds_lease(&mut tx, owner, request, now).await? {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE messages SET status = 'InProgress', attempts = attempts + 1, waiting_reason = NULL, \
         waiting_since_ms = NULL, sent_by = $1, \
         updated_ms = $2 WHERE identifier = $3 AND request_id = $4",
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

async fn touch_request(conn: &mut PgConnection, request: &RecordId, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE send_requests SET updated_ms = $1 WHERE id = $2")
        .bind(now)
        .bind(request.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn record_outcome(
    pool: &PgPool,
    owner: &str,
    request: &RecordId,
    identifier: &str,
    outcome: &MessageOutcome,
    now: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    if !holds_lease(&mut tx, owner, request, now).await? {
        return Ok(false);
    }
    // A held message whose end user's session changed after the work was read is due
    // again at once: the change's wake-up found it not yet marked as waiting.
    let wait_next = match outcome {
        MessageOutcome::Wait { recheck_at_ms, loaded_at_ms, .. } => {
            let changed: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(s.updated_ms) FROM sessions s JOIN messages m ON m.end_user_id = s.end_user_id \
                 WHERE m.identifier = $1",
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
            "UPDATE messages SET status = 'Success', provider_message_id = $1, reason = NULL, waiting_reason = NULL, \
             next_attempt_ms = NULL, waiting_since_ms = NULL, updated_ms = $2 WHERE identifier = $3",
        )
        .bind(provider_message_id.clone()),
        MessageOutcome::Failed { reason } => sqlx::query(
            "UPDATE messages SET status = 'Failed', reason = $1, waiting_reason = NULL, next_attempt_ms = NULL, \
             waiting_since_ms = NULL, updated_ms = $2 WHERE identifier = $3",
        )
        .bind(reason.clone()),
        MessageOutcome::Retry { at_ms, error } => sqlx::query(
            "UPDATE messages SET status = 'Pending', next_attempt_ms = $1, last_error = $2, waiting_reason = NULL, \
             updated_ms = $3 WHERE identifier = $4",
        )
        .bind(*at_ms)
        .bind(error.clone()),
        MessageOutcome::Wait { reason, since_ms, .. } => sqlx::query(
            "UPDATE messages SET status = 'Pending', waiting_reason = $1, waiting_since_ms = $2, next_attempt_ms = $3, \
             updated_ms = $4 WHERE identifier = $5",
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
    pool: &PgPool,
    owner: &str,
    request: &RecordId,
    now: i64,
) -> StoreResult<Option<RequestStatus>> {
    let mut tx = pool.begin().await?;
    if !holds_lease(&mut tx, owner, request, now).await? {
        return Ok(None);
    }
    // A message left InProgress (its send was interrupted) is due again.
    sqlx::query(
        "UPDATE messages SET status = 'Pending', next_attempt_ms = NULL WHERE request_id = $1 AND status = 'InProgress'",
    )
    .bind(request.as_str())
    .execute(&mut *tx)
    .await?;
    let (open, next_due): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(COALESCE(next_attempt_ms, $1)) FROM messages \
         WHERE request_id = $2 AND status NOT IN ('Success', 'Failed')",
    )
    .bind(now)
    .bind(request.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let status = if open == 0 {
        sqlx::query(
            "UPDATE send_requests SET status = 'Completed', completed_ms = $1, updated_ms = $2, locked_by = NULL, \
             locked_until_ms = NULL WHERE id = $3",
        )
        .bind(now)
        .bind(now)
        .bind(request.as_str())
        .execute(&mut *tx)
        .await?;
        RequestStatus::Completed
    } else {
        sqlx::query(
            "UPDATE send_requests SET status = 'Pending', due_ms = $1, updated_ms = $2, locked_by = NULL, \
             locked_until_ms = NULL WHERE id = $3",
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

pub async fn release_leases(pool: &PgPool, owner: &str, now: i64) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE messages SET status = 'Pending', next_attempt_ms = NULL WHERE status = 'InProgress' AND request_id IN \
         (SELECT id FROM send_requests WHERE starts_with(locked_by, $1 || '#') AND status = 'InProgress')",
    )
    .bind(owner)
    .execute(&mut *tx)
    .await?;
    let released = sqlx::query(
        "UPDATE send_requests SET status = 'Pending', due_ms = $1, locked_by = NULL, locked_until_ms = NULL, \
         updated_ms = $2 WHERE starts_with(locked_by, $3 || '#') AND status = 'InProgress'",
    )
    .bind(now)
    .bind(now)
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}

pub async fn queue_stats(pool: &PgPool, now: i64) -> StoreResult<QueueStats> {
    let (pending, in_progress, completed): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE status = 'Pending' OR (status = 'InProgress' AND locked_until_ms <= $1)), \
         COUNT(*) FILTER (WHERE status = 'InProgress' AND locked_until_ms > $1), \
         COUNT(*) FILTER (WHERE status = 'Completed') FROM send_requests",
    )
    .bind(now)
    .fetch_one(pool)
    .await?;
    Ok(QueueStats { pending: pending as u64, in_progress: in_progress as u64, completed: completed as u64 })
}

/// After an end user's session changed: their held messages are due now, and so are
/// the requests holding them.
pub async fn wake_held_messages(
    conn: &mut PgConnection,
    tenant: &str,
    end_user: &RecordId,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE send_requests SET due_ms = LEAST(due_ms, $1) WHERE status = 'Pending' AND id IN \
         (SELECT request_id FROM messages WHERE tenant = $2 AND end_user_id = $3 AND status = 'Pending' \
         AND waiting_reason IS NOT NULL)",
    )
    .bind(now)
    .bind(tenant)
    .bind(end_user.as_str())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE messages SET next_attempt_ms = $1 WHERE tenant = $2 AND end_user_id = $3 AND status = 'Pending' \
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
/// and idempotency keys, in one short transaction. Rows another replica is touching
/// are skipped (and purged next time). Returns how many requests went.
pub async fn purge_completed(pool: &PgPool, before_ms: i64, limit: u32) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM send_requests WHERE status = 'Completed' AND completed_ms < $1 \
         ORDER BY completed_ms LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(before_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    sqlx::query("DELETE FROM idempotency_keys WHERE request_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM messages WHERE request_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    let purged =
        sqlx::query("DELETE FROM send_requests WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?.rows_affected();
    tx.commit().await?;
    Ok(purged)
}
