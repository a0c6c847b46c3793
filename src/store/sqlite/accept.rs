//! The accept writer: one task owns SQLite's write side for accepts and records every
//! accept waiting (up to `max_batch`) in ONE transaction and one fsync (group commit).
//! A batch is written set-wise — one idempotency lookup, one sequence update per tenant,
//! multi-row inserts — so its cost hardly grows with its size. Should any of those
//! statements fail, the batch is rolled back and recorded again one request at a time,
//! each in its own savepoint, so one failing request never takes the others with it.
//! Callers that went away (cancelled calls) are not waited for: what committed stays
//! committed and is delivered.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, QueryBuilder, Sqlite};
use tokio::sync::{mpsc, oneshot};

use crate::domain::RecordId;
use crate::domain::ids::{IdKind, new_message_identifier, request_name};
use crate::domain::model::{MessageState, RequestStatus};
use crate::domain::send::NewSendRequest;
use crate::store::{AcceptOutcome, Accepted, StoreError, StoreResult};

/// Rows per multi-row INSERT, well under SQLite's 32,766 bound parameters.
const REQUEST_ROWS_PER_INSERT: usize = 500;
const MESSAGE_ROWS_PER_INSERT: usize = 2_000;
const KEYS_PER_LOOKUP: usize = 1_000;

pub struct AcceptJob {
    pub tenant: String,
    pub request: NewSendRequest,
    pub now_ms: i64,
    pub reply: oneshot::Sender<StoreResult<AcceptOutcome>>,
}

/// Takes every accept waiting (up to `max_batch`), records them in one transaction,
/// answers each. Ends when the store is dropped.
///
/// After a batch that met an unavailable database (an I/O error, a full disk, a lock
/// past its timeout) the connection is closed and a new one opened for the next batch:
/// SQLite may have rolled the transaction back behind the driver's back, and a
/// connection whose transaction state is in doubt must not take the next batch.
pub async fn run_writer_until_closed(
    options: SqliteConnectOptions,
    conn: SqliteConnection,
    mut rx: mpsc::Receiver<AcceptJob>,
    max_batch: usize,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        if conn.is_none() {
            match SqliteConnection::connect_with(&options).await {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    tracing::warn!(error = %crate::error::error_chain(&e), "reopening the accept writer's connection failed")
                }
            }
        }
        let results = match conn.as_mut() {
            Some(c) => commit_batch(c, &batch).await,
            None => batch.iter().map(|_| Err(StoreError::Unavailable(Arc::new(sqlx::Error::PoolClosed)))).collect(),
        };
        if results.iter().any(|r| matches!(r, Err(StoreError::Unavailable(_))))
            && let Some(old) = conn.take()
        {
            let _ = old.close().await;
        }
        for (job, result) in batch.drain(..).zip(results) {
            // The caller may have gone (cancelled RPC); what committed stays committed.
            let _ = job.reply.send(result);
        }
    }
}

async fn commit_batch(conn: &mut SqliteConnection, jobs: &[AcceptJob]) -> Vec<StoreResult<AcceptOutcome>> {
    match commit_set(conn, jobs).await {
        Ok(results) => results,
        // An unavailable database fails one by one too: refuse the batch at once.
        Err(e @ StoreError::Unavailable(_)) => jobs.iter().map(|_| Err(e.clone())).collect(),
        Err(e) => {
            tracing::warn!(error = %crate::error::error_chain(&e), requests = jobs.len(), "batched accept failed; recording one by one");
            commit_one_by_one(conn, jobs).await
        }
    }
}

/// What one job of a batch comes to.
enum Plan {
    /// A new request: its id, message identifiers, and its place in the batch's new requests.
    New { id: RecordId, identifiers: Vec<String> },
    /// The key was used before with the same request: answer as then.
    Replay(Accepted),
    /// The key was used before with another request.
    Conflict,
    /// The key is first used by an earlier job of this batch (`index`).
    SameBatch { index: usize },
}

/// Records the whole batch in one transaction.
async fn commit_set(conn: &mut SqliteConnection, jobs: &[AcceptJob]) -> StoreResult<Vec<StoreResult<AcceptOutcome>>> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let results = write_set(&mut tx, jobs).await?;
    tx.commit().await?;
    Ok(results)
}

/// Writes a batch with a handful of statements, inside the caller's transaction, and
/// returns each job's answer (valid once that transaction commits).
async fn write_set(tx: &mut SqliteConnection, jobs: &[AcceptJob]) -> StoreResult<Vec<StoreResult<AcceptOutcome>>> {
    let existing = existing_keys(tx, jobs).await?;

    // Decide every job, in order: a key seen before, seen earlier in this batch, or new.
    let mut plans: Vec<Plan> = Vec::with_capacity(jobs.len());
    let mut first_use: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let key = job.request.idempotency_key.as_deref();
        let plan = match key.map(|k| (job.tenant.as_str(), k)) {
            Some(k) if existing.contains_key(&(k.0.to_owned(), k.1.to_owned())) => {
                let (fingerprint, accepted) = &existing[&(k.0.to_owned(), k.1.to_owned())];
                if *fingerprint == job.request.fingerprint() { Plan::Replay(accepted.clone()) } else { Plan::Conflict }
            }
            Some(k) if first_use.contains_key(&k) => Plan::SameBatch { index: first_use[&k] },
            other => {
                if let Some(k) = other {
                    first_use.insert(k, i);
                }
                Plan::New {
                    id: RecordId::generate(IdKind::SendRequest),
                    identifiers: job.request.recipients.iter().map(|_| new_message_identifier()).collect(),
                }
            }
        };
        plans.push(plan);
    }

    // Names: one sequence step per tenant for all its new requests, handed out in order.
    let mut new_per_tenant: HashMap<&str, i64> = HashMap::new();
    for (job, plan) in jobs.iter().zip(&plans) {
        if matches!(plan, Plan::New { .. }) {
            *new_per_tenant.entry(job.tenant.as_str()).or_default() += 1;
        }
    }
    let mut next_name: HashMap<&str, i64> = HashMap::new();
    for (tenant, count) in &new_per_tenant {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO tenant_sequences (tenant, last_value) VALUES (?, ?) \
             ON CONFLICT (tenant) DO UPDATE SET last_value = last_value + excluded.last_value RETURNING last_value",
        )
        .bind(*tenant)
        .bind(*count)
        .fetch_one(&mut *tx)
        .await?;
        next_name.insert(tenant, last - count + 1);
    }

    let new_jobs: Vec<(&AcceptJob, &RecordId, &Vec<String>, String)> = jobs
        .iter()
        .zip(&plans)
        .filter_map(|(job, plan)| match plan {
            Plan::New { id, identifiers } => {
                let sequence = next_name.get_mut(job.tenant.as_str()).expect("counted above");
                let name = request_name(*sequence);
                *sequence += 1;
                Some((job, id, identifiers, name))
            }
            _ => None,
        })
        .collect();

    for chunk in new_jobs.chunks(REQUEST_ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO send_requests (id, tenant, name, definition_name, definition_id, request_type, \
             enforce_consent, consent_type, subscription_id, allowed_session_status, status, parameters, \
             trace_context, accepted_ms, updated_ms, due_ms) ",
        );
        q.push_values(chunk, |mut row, (job, id, _, name)| {
            let r = &job.request;
            row.push_bind(id.as_str().to_owned())
                .push_bind(job.tenant.clone())
                .push_bind(name.clone())
                .push_bind(r.message_definition_name.clone())
                .push_bind(r.message_definition_id.as_str().to_owned())
                .push_bind(r.request_type.as_str())
                .push_bind(r.enforce_consent)
                .push_bind(r.consent_type.as_str())
                .push_bind(r.subscription_id.as_ref().map(|s| s.as_str().to_owned()))
                .push_bind(r.allowed_session_status.as_str())
                .push_bind(RequestStatus::Pending.as_str())
                .push_bind(r.parameters_json())
                .push_bind(r.trace_context.clone())
                .push_bind(job.now_ms)
                .push_bind(job.now_ms)
                .push_bind(job.now_ms);
        });
        q.build().execute(&mut *tx).await?;
    }

    let messages: Vec<(&AcceptJob, &RecordId, usize, &RecordId, &String, &String)> = new_jobs
        .iter()
        .flat_map(|(job, id, identifiers, _)| {
            job.request
                .recipients
                .iter()
                .zip(identifiers.iter())
                .enumerate()
                .map(move |(position, ((user, key), identifier))| (*job, *id, position, user, key, identifier))
        })
        .collect();
    for chunk in messages.chunks(MESSAGE_ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO messages (identifier, tenant, request_id, position, end_user_id, platform_key, status, \
             attempts, created_ms, updated_ms) ",
        );
        q.push_values(chunk, |mut row, (job, id, position, user, key, identifier)| {
            row.push_bind((*identifier).clone())
                .push_bind(job.tenant.clone())
                .push_bind(id.as_str().to_owned())
                .push_bind(*position as i64)
                .push_bind(user.as_str().to_owned())
                .push_bind((*key).clone())
                .push_bind(MessageState::Pending.as_str())
                .push_bind(0i64)
                .push_bind(job.now_ms)
                .push_bind(job.now_ms);
        });
        q.build().execute(&mut *tx).await?;
    }

    let keyed: Vec<&(&AcceptJob, &RecordId, &Vec<String>, String)> =
        new_jobs.iter().filter(|(job, ..)| job.request.idempotency_key.is_some()).collect();
    for chunk in keyed.chunks(REQUEST_ROWS_PER_INSERT) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO idempotency_keys (tenant, key, fingerprint, request_id, created_ms) ");
        q.push_values(chunk, |mut row, (job, id, _, _)| {
            row.push_bind(job.tenant.clone())
                .push_bind(job.request.idempotency_key.clone())
                .push_bind(job.request.fingerprint())
                .push_bind(id.as_str().to_owned())
                .push_bind(job.now_ms);
        });
        q.build().execute(&mut *tx).await?;
    }

    // Answers, in job order.
    let accepted = |plan: &Plan| match plan {
        Plan::New { id, identifiers } => {
            Some(Accepted { request_id: id.clone(), message_identifiers: identifiers.clone() })
        }
        _ => None,
    };
    Ok(jobs
        .iter()
        .zip(&plans)
        .map(|(job, plan)| match plan {
            Plan::New { .. } => Ok(AcceptOutcome::Created(accepted(plan).expect("new"))),
            Plan::Replay(a) => Ok(AcceptOutcome::Replayed(a.clone())),
            Plan::Conflict => Ok(AcceptOutcome::KeyConflict),
            Plan::SameBatch { index } => {
                let first = &jobs[*index];
                if first.request.fingerprint() == job.request.fingerprint() {
                    Ok(AcceptOutcome::Replayed(accepted(&plans[*index]).expect("the first use is new")))
                } else {
                    Ok(AcceptOutcome::KeyConflict)
                }
            }
        })
        .collect())
}

/// The stored fingerprint and first answer of every idempotency key the batch uses.
async fn existing_keys(
    conn: &mut SqliteConnection,
    jobs: &[AcceptJob],
) -> StoreResult<HashMap<(String, String), (String, Accepted)>> {
    let keyed: Vec<(&str, &str)> =
        jobs.iter().filter_map(|j| j.request.idempotency_key.as_deref().map(|k| (j.tenant.as_str(), k))).collect();
    let mut found: HashMap<(String, String), (String, Accepted)> = HashMap::new();
    for chunk in keyed.chunks(KEYS_PER_LOOKUP) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT k.tenant, k.key, k.fingerprint, k.request_id, m.identifier FROM idempotency_keys k \
             JOIN messages m ON m.request_id = k.request_id WHERE (k.tenant, k.key) IN (VALUES ",
        );
        let mut values = q.separated(", ");
        for (tenant, key) in chunk {
            values.push("(").push_bind_unseparated(tenant.to_string()).push_unseparated(", ");
            values.push_bind_unseparated(key.to_string()).push_unseparated(")");
        }
        q.push(") ORDER BY k.request_id, m.position");
        let rows: Vec<(String, String, String, String, String)> = q.build_query_as().fetch_all(&mut *conn).await?;
        for (tenant, key, fingerprint, request_id, identifier) in rows {
            found
                .entry((tenant, key))
                .or_insert_with(|| {
                    (
                        fingerprint,
                        Accepted { request_id: RecordId::from_trusted(request_id), message_identifiers: vec![] },
                    )
                })
                .1
                .message_identifiers
                .push(identifier);
        }
    }
    Ok(found)
}

/// The fallback: each request in its own savepoint, so a failing one is refused alone.
/// A failure of the transaction itself — a savepoint not taken, released or rolled
/// back, or the database unavailable (I/O error, disk full: SQLite may then have rolled
/// the whole transaction back) — refuses the whole batch: nothing in it is acknowledged
/// unless its commit succeeds.
async fn commit_one_by_one(conn: &mut SqliteConnection, jobs: &[AcceptJob]) -> Vec<StoreResult<AcceptOutcome>> {
    let fail_all = |e: StoreError| jobs.iter().map(|_| Err(e.clone())).collect();
    let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return fail_all(e.into()),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let outcome: StoreResult<StoreResult<AcceptOutcome>> = async {
            let mut savepoint = tx.begin().await?;
            match write_set(&mut savepoint, std::slice::from_ref(job)).await {
                Ok(mut one) => {
                    savepoint.commit().await?;
                    Ok(one.pop().unwrap_or_else(|| Err(StoreError::Corrupt("no outcome for an accept".into()))))
                }
                Err(e @ StoreError::Unavailable(_)) => Err(e),
                Err(e) => {
                    savepoint.rollback().await?;
                    Ok(Err(e))
                }
            }
        }
        .await;
        match outcome {
            Ok(result) => results.push(result),
            Err(broken) => return fail_all(broken),
        }
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => fail_all(e.into()),
    }
}
