//! The PostgreSQL backend, for several replicas sharing one database. Behaviour matches
//! SQLite (the same shared SQL, the same integration suite); what differs is how
//! concurrency between processes is made safe:
//! - each replica runs two group-commit writers on connections of their own — accepts,
//!   and the dispatcher's writes — so neither waits for a pool connection behind
//!   callers; the per-tenant name sequence is bumped set-wise with `INSERT … ON CONFLICT
//!   … DO UPDATE … RETURNING`, whose row lock makes names unique across replicas;
//! - claims are short transactions with `FOR UPDATE SKIP LOCKED` under a
//!   transaction-scoped advisory lock, so the global in-progress limit holds across
//!   replicas: claimers run one at a time, each counting after the previous one
//!   committed (the lock is released only at commit), and nothing else raises the count;
//! - every write after a claim locks the request rows and checks the lease first, so a
//!   replica that lost its lease can no longer change the request.
//!
//! Connection failures, an administrator shutdown and the like map to
//! `StoreError::Unavailable`; pools and writers reconnect by themselves once the server
//! is back.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use super::shared::{Backend, SqlStore};
use super::sql::counts::Deltas;
use super::sql::{Conn, Dialect, Sql, counts, queue};
use super::writer::{Connect, Writer};
use super::*;

/// Settings for the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user@host:port/database`.
    pub url: String,
    /// Connections in this replica's pool for the doors (the writers and the dispatcher
    /// have their own).
    pub max_connections: u32,
    /// How long a caller waits for a connection before UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Longest one statement may run (`statement_timeout`), including waits for row
    /// locks; 0 = no limit.
    pub statement_timeout: Duration,
    /// Most writes one group commit takes.
    pub max_batch: usize,
}

/// The advisory lock key that serialises claiming (any constant, shared by all
/// replicas; "convmsg" in ASCII).
const CLAIM_LOCK: i64 = 0x0063_6f6e_766d_7367;
/// Connections of the dispatcher's pool (claims, reading work).
const DISPATCH_CONNECTIONS: u32 = 4;

pub type PgStore = SqlStore<PgBackend>;

pub struct PgBackend {
    /// For the health probe's fresh connections.
    options: PgConnectOptions,
    /// The doors' reads and provisioning writes.
    pool: PgPool,
    /// The dispatcher's claims and reads.
    dispatch_pool: PgPool,
    accepts: Writer<PgConnection>,
    deliveries: Writer<PgConnection>,
    /// This process's queue-count rows: `shard` for the accept writer, `+ 1` for the
    /// dispatch writer, `+ 2` for claims and other writes.
    shard: i64,
}

impl SqlStore<PgBackend> {
    /// Connects and migrates (the migrator holds an advisory lock, so replicas starting
    /// together migrate once), recounts the queue, and starts the writers.
    pub async fn open(settings: &PgSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(&settings.url)?
            .options([("statement_timeout", settings.statement_timeout.as_millis().to_string())])
            .application_name("convmsg");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let dispatch_pool = PgPoolOptions::new()
            .max_connections(DISPATCH_CONNECTIONS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let mut tx = pool.begin().await?;
        counts::recount(&mut *tx).await?;
        tx.commit().await?;

        let shard = i64::from(rand::rng().random::<u16>()) * 4 + 4;
        let probe_options = options.clone().application_name("convmsg-probe");
        let connect: Connect<PgConnection> = Arc::new(move || {
            let options = options.clone();
            Box::pin(async move { Ok(PgConnection::connect_with(&options).await?) })
        });
        let accepts = Writer::start(connect().await?, connect.clone(), settings.max_batch, shard);
        let deliveries = Writer::start(connect().await?, connect, settings.max_batch, shard + 1);
        Ok(SqlStore::new(PgBackend { options: probe_options, pool, dispatch_pool, accepts, deliveries, shard }))
    }
}

#[async_trait]
impl Backend for PgBackend {
    type Conn = PgConnection;
    type WriteConn = PgConnection;
    type Read = PoolConnection<Postgres>;
    type Write = Transaction<'static, Postgres>;

    async fn read(&self) -> StoreResult<Self::Read> {
        Ok(self.pool.acquire().await?)
    }

    async fn read_for_dispatch(&self) -> StoreResult<Self::Read> {
        Ok(self.dispatch_pool.acquire().await?)
    }

    async fn begin_write(&self) -> StoreResult<Self::Write> {
        Ok(self.pool.begin().await?)
    }

    async fn commit(&self, tx: Self::Write) -> StoreResult<()> {
        Ok(tx.commit().await?)
    }

    async fn begin_dispatch_write(&self) -> StoreResult<Self::Write> {
        Ok(self.dispatch_pool.begin().await?)
    }

    async fn claim(&self, ask: ClaimAsk) -> StoreResult<Vec<Claim>> {
        let mut tx = self.dispatch_pool.begin().await?;
        let mut lock = Sql::new(Dialect::Postgres, "SELECT pg_advisory_xact_lock(");
        lock.bind(CLAIM_LOCK).push(")");
        Conn::execute(&mut *tx, lock).await?;
        let mut deltas = Deltas::default();
        let claims = queue::claim(&mut *tx, &ask, &mut deltas).await?;
        counts::apply(&mut *tx, self.shard + 2, &deltas).await?;
        tx.commit().await?;
        Ok(claims)
    }

    fn accept_writer(&self) -> &Writer<PgConnection> {
        &self.accepts
    }

    fn delivery_writer(&self) -> &Writer<PgConnection> {
        &self.deliveries
    }

    fn shard(&self) -> i64 {
        self.shard + 2
    }

    fn shares_rate_limits(&self) -> bool {
        true
    }

    async fn probe(&self) -> StoreResult<()> {
        let mut conn = PgConnection::connect_with(&self.options).await?;
        let _: (i64,) = conn.fetch_one(Sql::new(Dialect::Postgres, "SELECT CAST(1 AS BIGINT)")).await?;
        let _ = conn.close().await;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats::of(&self.pool)
    }
}
