//! The PostgreSQL store, for several replicas sharing one database. Behaviour matches
//! the SQLite store (same trait, same integration suite); what differs is how
//! concurrency between processes is made safe:
//! - accepts go through one writer task per replica that groups whatever is waiting
//!   into one transaction (one commit, one WAL flush), each request in its own
//!   savepoint so one failure never takes the others with it; the per-tenant name
//!   sequence is bumped with `INSERT … ON CONFLICT … DO UPDATE … RETURNING`, whose row
//!   lock makes names unique across replicas;
//! - claims are short transactions with `FOR UPDATE SKIP LOCKED` under a
//!   transaction-scoped advisory lock, so the global in-progress limit holds across
//!   replicas (see `dispatch`);
//! - every write after a claim locks the request row and checks the lease owner.
//!
//! Connection failures, an administrator shutdown and the like map to
//! `StoreError::Unavailable`; the pool reconnects by itself once the server is back.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Acquire, Postgres, QueryBuilder};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::auth::{parse_scopes, scopes_to_string};
use crate::domain::ids::{IdKind, new_message_identifier, request_name};

mod admin;
mod dispatch;
mod reads;

use super::rows;
use rows::{MessageRow, RequestRow};

/// Settings for the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user@host:port/database`.
    pub url: String,
    /// Connections in this replica's pool (the accept writer borrows one per batch).
    pub max_connections: u32,
    /// How long a caller waits for a connection before UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Longest one statement may run (`statement_timeout`), including waits for row
    /// locks; 0 = no limit.
    pub statement_timeout: Duration,
    /// Most accepts one group commit takes.
    pub max_batch: usize,
}

pub struct PgStore {
    pool: PgPool,
    /// Accept jobs for the group-commit writer.
    writer: mpsc::Sender<AcceptJob>,
}

struct AcceptJob {
    tenant: String,
    request: NewSendRequest,
    now_ms: i64,
    reply: oneshot::Sender<StoreResult<AcceptOutcome>>,
}

impl PgStore {
    /// Connects and migrates (the migrator holds an advisory lock, so replicas starting
    /// together migrate once), and starts the writer.
    pub async fn open(settings: &PgSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(&settings.url)?
            .options([("statement_timeout", settings.statement_timeout.as_millis().to_string())])
            .application_name("convmsg");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let (tx, rx) = mpsc::channel(settings.max_batch.max(1) * 4);
        tokio::spawn(run_writer_until_closed(pool.clone(), rx, settings.max_batch.max(1)));
        Ok(PgStore { pool, writer: tx })
    }
}

/// Takes every accept waiting (up to `max_batch`), records them in one transaction,
/// answers each. Ends when the store is dropped. A connection is taken from the pool
/// per batch, so a database restart costs the batches in flight, not the writer.
async fn run_writer_until_closed(pool: PgPool, mut rx: mpsc::Receiver<AcceptJob>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let results = commit_batch(&pool, &batch).await;
        for (job, result) in batch.drain(..).zip(results) {
            // The caller may have gone (cancelled RPC); what committed stays committed.
            let _ = job.reply.send(result);
        }
    }
}

async fn commit_batch(pool: &PgPool, jobs: &[AcceptJob]) -> Vec<StoreResult<AcceptOutcome>> {
    let fail_all = |e: StoreError| jobs.iter().map(|_| Err(e.clone())).collect();
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(e.into()),
    };
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(accept_in_savepoint(&mut tx, job).await);
    }
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => fail_all(e.into()),
    }
}

/// Records one request in its own savepoint. If another replica recorded the same
/// idempotency key meanwhile, this attempt is rolled back and run once more: the second
/// run sees the other's row (READ COMMITTED) and replays or reports the conflict.
async fn accept_in_savepoint(conn: &mut PgConnection, job: &AcceptJob) -> StoreResult<AcceptOutcome> {
    for _ in 0..2 {
        let mut savepoint = conn.begin().await?;
        match accept_one(&mut savepoint, &job.tenant, &job.request, job.now_ms).await {
            Ok(Some(outcome)) => {
                savepoint.commit().await?;
                return Ok(outcome);
            }
            Ok(None) => savepoint.rollback().await?,
            Err(e) => {
                savepoint.rollback().await?;
                return Err(e);
            }
        }
    }
    Err(StoreError::Corrupt("an idempotency key was taken and is still not visible".into()))
}

/// `None` when the idempotency key was recorded concurrently by another transaction.
async fn accept_one(
    conn: &mut PgConnection,
    tenant: &str,
    req: &NewSendRequest,
    now_ms: i64,
) -> StoreResult<Option<AcceptOutcome>> {
    let fingerprint = req.fingerprint();
    if let Some(key) = &req.idempotency_key {
        let existing: Option<(String, String)> =
            sqlx::query_as("SELECT fingerprint, request_id FROM idempotency_keys WHERE tenant = $1 AND key = $2")
                .bind(tenant)
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some((stored, request_id)) = existing {
            if stored != fingerprint {
                return Ok(Some(AcceptOutcome::KeyConflict));
            }
            let identifiers: Vec<String> =
                sqlx::query_scalar("SELECT identifier FROM messages WHERE request_id = $1 ORDER BY position")
                    .bind(&request_id)
                    .fetch_all(&mut *conn)
                    .await?;
            return Ok(Some(AcceptOutcome::Replayed(Accepted {
                request_id: RecordId::from_trusted(request_id),
                message_identifiers: identifiers,
            })));
        }
    }

    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO tenant_sequences (tenant, last_value) VALUES ($1, 1) ON CONFLICT (tenant) \
         DO UPDATE SET last_value = tenant_sequences.last_value + 1 RETURNING last_value",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await?;
    let request_id = RecordId::generate(IdKind::SendRequest);
    sqlx::query(
        "INSERT INTO send_requests (id, tenant, name, definition_name, definition_id, request_type, enforce_consent, \
         consent_type, subscription_id, allowed_session_status, status, parameters, trace_context, accepted_ms, \
         updated_ms, due_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14, $14)",
    )
    .bind(request_id.as_str())
    .bind(tenant)
    .bind(request_name(sequence))
    .bind(&req.message_definition_name)
    .bind(req.message_definition_id.as_str())
    .bind(req.request_type.as_str())
    .bind(req.enforce_consent)
    .bind(req.consent_type.as_str())
    .bind(req.subscription_id.as_ref().map(|id| id.as_str().to_owned()))
    .bind(req.allowed_session_status.as_str())
    .bind(RequestStatus::Pending.as_str())
    .bind(req.parameters_json())
    .bind(req.trace_context.clone())
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;

    let identifiers: Vec<String> = req.recipients.iter().map(|_| new_message_identifier()).collect();
    let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
        "INSERT INTO messages (identifier, tenant, request_id, position, end_user_id, platform_key, status, \
         attempts, created_ms, updated_ms) ",
    );
    insert.push_values(req.recipients.iter().zip(&identifiers).enumerate(), |mut row, (i, ((user, key), ident))| {
        row.push_bind(ident.clone())
            .push_bind(tenant.to_owned())
            .push_bind(request_id.as_str().to_owned())
            .push_bind(i as i64)
            .push_bind(user.as_str().to_owned())
            .push_bind(key.clone())
            .push_bind(MessageState::Pending.as_str())
            .push_bind(0i64)
            .push_bind(now_ms)
            .push_bind(now_ms);
    });
    insert.build().execute(&mut *conn).await?;

    if let Some(key) = &req.idempotency_key {
        // Waits for a concurrent insert of the same key to commit, then does nothing.
        let recorded = sqlx::query(
            "INSERT INTO idempotency_keys (tenant, key, fingerprint, request_id, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, key) DO NOTHING",
        )
        .bind(tenant)
        .bind(key)
        .bind(&fingerprint)
        .bind(request_id.as_str())
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        if recorded.rows_affected() == 0 {
            return Ok(None);
        }
    }
    Ok(Some(AcceptOutcome::Created(Accepted { request_id, message_identifiers: identifiers })))
}

#[async_trait]
impl Store for PgStore {
    async fn upsert_token(&self, sha256: &str, principal: &Principal, label: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (token_sha256, tenant, scopes, label, created_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (token_sha256) DO UPDATE SET tenant = excluded.tenant, scopes = excluded.scopes, \
             label = excluded.label",
        )
        .bind(sha256)
        .bind(&principal.tenant)
        .bind(scopes_to_string(&principal.scopes))
        .bind(label)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn load_tokens(&self) -> StoreResult<Vec<(String, Principal)>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT token_sha256, tenant, scopes FROM tokens").fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|(hash, tenant, scopes)| {
                let scopes = parse_scopes([scopes.as_str()]).map_err(StoreError::Corrupt)?;
                Ok((hash, Principal { tenant, scopes }))
            })
            .collect()
    }

    async fn upsert_channel(&self, tenant: &str, c: ChannelUpsert, now_ms: i64) -> StoreResult<(Channel, bool)> {
        admin::upsert_channel(&self.pool, tenant, c, now_ms).await
    }

    async fn get_channel(&self, tenant: &str, key: &Key) -> StoreResult<Option<Channel>> {
        admin::get_channel(&self.pool, tenant, key).await
    }

    async fn list_channels(&self, tenant: &str, after: Option<&RecordId>, limit: u32) -> StoreResult<Page<Channel>> {
        admin::list_channels(&self.pool, tenant, after, limit).await
    }

    async fn upsert_definition(
        &self,
        tenant: &str,
        d: DefinitionUpsert,
        now_ms: i64,
    ) -> StoreResult<(MessageDefinition, bool)> {
        admin::upsert_definition(&self.pool, tenant, d, now_ms).await
    }

    async fn get_definition(&self, tenant: &str, key: &Key) -> StoreResult<Option<MessageDefinition>> {
        admin::get_definition(&self.pool, tenant, key).await
    }

    async fn list_definitions(
        &self,
        tenant: &str,
        after: Option<&RecordId>,
        limit: u32,
    ) -> StoreResult<Page<MessageDefinition>> {
        admin::list_definitions(&self.pool, tenant, after, limit).await
    }

    async fn upsert_end_users(
        &self,
        tenant: &str,
        users: Vec<EndUserUpsert>,
        now_ms: i64,
    ) -> StoreResult<Vec<EndUser>> {
        admin::upsert_end_users(&self.pool, tenant, users, now_ms).await
    }

    async fn find_end_users(&self, tenant: &str, ids: &[RecordId]) -> StoreResult<Vec<EndUser>> {
        admin::find_end_users(&self.pool, tenant, ids).await
    }

    async fn list_end_users(
        &self,
        tenant: &str,
        channel: Option<&RecordId>,
        after: Option<&RecordId>,
        limit: u32,
    ) -> StoreResult<Page<EndUser>> {
        admin::list_end_users(&self.pool, tenant, channel, after, limit).await
    }

    async fn set_session_status(
        &self,
        tenant: &str,
        end_user: &RecordId,
        status: SessionStatus,
        now_ms: i64,
    ) -> StoreResult<Option<Session>> {
        admin::set_session_status(&self.pool, tenant, end_user, status, now_ms).await
    }

    async fn upsert_subscription(
        &self,
        tenant: &str,
        s: SubscriptionUpsert,
        now_ms: i64,
    ) -> StoreResult<(Subscription, bool)> {
        admin::upsert_subscription(&self.pool, tenant, s, now_ms).await
    }

    async fn get_subscription(&self, tenant: &str, id: &RecordId) -> StoreResult<Option<Subscription>> {
        admin::get_subscription(&self.pool, tenant, id).await
    }

    async fn set_subscription_consent(
        &self,
        tenant: &str,
        subscription: &RecordId,
        end_users: &[RecordId],
        status: SubscriptionConsentStatus,
        now_ms: i64,
    ) -> StoreResult<u32> {
        admin::set_subscription_consent(&self.pool, tenant, subscription, end_users, status, now_ms).await
    }

    async fn claim_requests(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max_in_progress: u32,
        batch: u32,
    ) -> StoreResult<Vec<Claim>> {
        dispatch::claim_requests(&self.pool, owner, now_ms, lease_ms, max_in_progress, batch).await
    }

    async fn load_work(&self, claim: &Claim, now_ms: i64) -> StoreResult<Work> {
        dispatch::load_work(&self.pool, claim, now_ms).await
    }

    async fn renew_lease(&self, owner: &str, request: &RecordId, now_ms: i64, until_ms: i64) -> StoreResult<bool> {
        dispatch::renew_lease(&self.pool, owner, request, now_ms, until_ms).await
    }

    async fn start_message(&self, owner: &str, request: &RecordId, identifier: &str, now_ms: i64) -> StoreResult<bool> {
        dispatch::start_message(&self.pool, owner, request, identifier, now_ms).await
    }

    async fn record_outcome(
        &self,
        owner: &str,
        request: &RecordId,
        identifier: &str,
        outcome: &MessageOutcome,
        now_ms: i64,
    ) -> StoreResult<bool> {
        dispatch::record_outcome(&self.pool, owner, request, identifier, outcome, now_ms).await
    }

    async fn finish_request(&self, owner: &str, request: &RecordId, now_ms: i64) -> StoreResult<Option<RequestStatus>> {
        dispatch::finish_request(&self.pool, owner, request, now_ms).await
    }

    async fn release_leases(&self, owner: &str, now_ms: i64) -> StoreResult<u64> {
        dispatch::release_leases(&self.pool, owner, now_ms).await
    }

    async fn queue_stats(&self, now_ms: i64) -> StoreResult<QueueStats> {
        dispatch::queue_stats(&self.pool, now_ms).await
    }

    fn pool_stats(&self) -> PoolStats {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX).min(size);
        PoolStats { idle, in_use: size - idle }
    }

    async fn purge_completed(&self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        dispatch::purge_completed(&self.pool, before_ms, limit).await
    }

    async fn accept(&self, tenant: &str, request: NewSendRequest, now_ms: i64) -> StoreResult<AcceptOutcome> {
        let (reply, answer) = oneshot::channel();
        let job = AcceptJob { tenant: tenant.to_owned(), request, now_ms, reply };
        let closed = || StoreError::Unavailable(Arc::new(sqlx::Error::PoolClosed));
        self.writer.send(job).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    async fn get_request(&self, tenant: &str, id: &RecordId) -> StoreResult<Option<RequestRecord>> {
        let row: Option<RequestRow> = sqlx::query_as("SELECT * FROM send_requests WHERE id = $1 AND tenant = $2")
            .bind(id.as_str())
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let messages: Vec<MessageRow> =
            sqlx::query_as("SELECT * FROM messages WHERE request_id = $1 ORDER BY position")
                .bind(id.as_str())
                .fetch_all(&self.pool)
                .await?;
        let messages = messages.into_iter().map(MessageRow::into_record).collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(row.into_record(messages)?))
    }
}
