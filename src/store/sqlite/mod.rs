//! The embedded SQLite store: one file in WAL mode with `synchronous=FULL`, so an
//! acknowledged request has reached the disk (fsync of the WAL) before the caller hears
//! of it. Accepts go through one writer task that groups whatever is waiting into one
//! transaction and one fsync (group commit); each request keeps its own savepoint, so one
//! failing request never takes others with it. Reads use a separate pool.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::auth::{parse_scopes, scopes_to_string};

mod accept;
mod admin;
mod dispatch;
mod reads;

use accept::{AcceptJob, run_writer_until_closed};

use super::rows;

use rows::{MessageRow, RequestRow};

/// Settings for the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// `sqlite://path/to/file.db`; created if missing.
    pub url: String,
    /// Read connections (the writer has its own).
    pub max_connections: u32,
    /// How long a caller waits for a connection or a lock before UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Most accepts one group commit takes.
    pub max_batch: usize,
}

pub struct SqliteStore {
    pool: SqlitePool,
    /// Accept jobs for the group-commit writer.
    writer: mpsc::Sender<AcceptJob>,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database, and starts the writer.
    pub async fn open(settings: &SqliteSettings) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(settings.acquire_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let conn = SqliteConnection::connect_with(&options).await?;
        let (tx, rx) = mpsc::channel(settings.max_batch.max(1) * 4);
        tokio::spawn(run_writer_until_closed(conn, rx, settings.max_batch.max(1)));
        Ok(SqliteStore { pool, writer: tx })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_token(&self, sha256: &str, principal: &Principal, label: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tokens (token_sha256, tenant, scopes, label, created_ms) VALUES (?, ?, ?, ?, ?) \
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
        let row: Option<RequestRow> = sqlx::query_as("SELECT * FROM send_requests WHERE id = ? AND tenant = ?")
            .bind(id.as_str())
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let messages: Vec<MessageRow> = sqlx::query_as("SELECT * FROM messages WHERE request_id = ? ORDER BY position")
            .bind(id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let messages = messages.into_iter().map(MessageRow::into_record).collect::<StoreResult<Vec<_>>>()?;
        Ok(Some(row.into_record(messages)?))
    }
}
