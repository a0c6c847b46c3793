//! The embedded SQLite backend: one file in WAL mode with `synchronous=FULL`, so an
//! acknowledged request has reached the disk (fsync of the WAL) before the caller hears
//! of it. SQLite has one write lock, so one writer does every write of the process on
//! its own connection, on a thread of its own where its statements run without a
//! hand-off (`sql::lite`): accepts and the dispatcher's writes (claims too) are
//! group-committed, many to a transaction and one fsync; every other write (provisioning,
//! retention) borrows that connection between batches. Reads use two pools of their own — the
//! doors', and the dispatcher's — so neither starves the other and no read waits on a
//! write (WAL).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::shared::{Backend, SqlStore};
use super::sql::lite::{LiteConn, LiteOptions};
use super::sql::{Conn, counts};
use super::writer::{Connect, Loaned, Writer};
use super::*;

/// Settings for the SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteSettings {
    /// `sqlite://path/to/file.db`; created if missing.
    pub url: String,
    /// Read connections for the doors (the writer and the dispatcher have their own).
    pub max_connections: u32,
    /// How long a caller waits for a connection or a lock before UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Most writes one group commit takes.
    pub max_batch: usize,
}

/// Page cache of the writer's connection: the hot end of every index it appends to
/// stays in memory (`cache_size`, KiB when negative).
const WRITER_CACHE_KIB: &str = "-65536";
/// The writer's thread, as `top -H` and `perf` show it.
const WRITER_THREAD: &str = "convmsg-sqlite-writer";
/// Page cache of each reading connection.
const READER_CACHE_KIB: &str = "-8192";
/// Connections of the dispatcher's read pool.
const DISPATCH_READERS: u32 = 2;

pub type SqliteStore = SqlStore<SqliteBackend>;

pub struct SqliteBackend {
    /// The doors' reads.
    pub(super) pool: SqlitePool,
    /// The dispatcher's reads.
    dispatch_pool: SqlitePool,
    /// Every write.
    writer: Writer<LiteConn>,
}

impl SqlStore<SqliteBackend> {
    /// Opens (creating if needed) and migrates the database, recounts the queue, and
    /// starts the writer.
    pub async fn open(settings: &SqliteSettings) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(settings.acquire_timeout)
            .pragma("temp_store", "memory");
        let readers = options.clone().pragma("cache_size", READER_CACHE_KIB);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(readers.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Migrate(Arc::new(e)))?;
        let dispatch_pool = SqlitePoolOptions::new()
            .max_connections(DISPATCH_READERS)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(readers)
            .await?;
        // `sqlite::memory:` names a shared in-memory database; the writer joins it.
        let in_memory = names_in_memory(&settings.url);
        let writer_options = LiteOptions {
            path: options.get_filename().to_owned(),
            in_memory,
            busy_timeout: settings.acquire_timeout,
            cache_size: WRITER_CACHE_KIB,
        };
        let mut conn = LiteConn::open(&writer_options)?;
        conn.run("BEGIN IMMEDIATE").await?;
        counts::recount(&mut conn).await?;
        conn.run("COMMIT").await?;
        let connect: Connect<LiteConn> = Arc::new(move || {
            let options = writer_options.clone();
            Box::pin(async move { LiteConn::open(&options) })
        });
        let writer = Writer::start_on_thread(WRITER_THREAD, conn, connect, settings.max_batch, 0)?;
        Ok(SqlStore::new(SqliteBackend { pool, dispatch_pool, writer }))
    }
}

/// Whether the URL names an in-memory database, as sqlx reads it: `:memory:` as the
/// database, or `mode=memory` among its parameters.
fn names_in_memory(url: &str) -> bool {
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (database, query) = rest.split_once('?').unwrap_or((rest, ""));
    database == ":memory:" || query.split('&').any(|pair| pair == "mode=memory")
}

#[async_trait]
impl Backend for SqliteBackend {
    type Conn = SqliteConnection;
    type WriteConn = LiteConn;
    type Read = PoolConnection<sqlx::Sqlite>;
    type Write = Loaned<LiteConn>;

    async fn read(&self) -> StoreResult<Self::Read> {
        Ok(self.pool.acquire().await?)
    }

    async fn read_for_dispatch(&self) -> StoreResult<Self::Read> {
        Ok(self.dispatch_pool.acquire().await?)
    }

    async fn begin_write(&self) -> StoreResult<Self::Write> {
        let mut conn = self.writer.borrow().await?;
        conn.run("BEGIN IMMEDIATE").await?;
        Ok(conn)
    }

    async fn commit(&self, mut tx: Self::Write) -> StoreResult<()> {
        tx.run("COMMIT").await
    }

    async fn claim(&self, ask: ClaimAsk) -> StoreResult<Vec<Claim>> {
        // In the writer's next batch, after its finishes: the claim shares their commit
        // and takes the slots they freed.
        self.writer.claim(ask).await
    }

    fn claims_share_commits(&self) -> bool {
        true
    }

    fn accept_writer(&self) -> &Writer<LiteConn> {
        &self.writer
    }

    fn delivery_writer(&self) -> &Writer<LiteConn> {
        &self.writer
    }

    fn shard(&self) -> i64 {
        0
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats::of(&self.pool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::lite::LiteConn;
    use crate::store::sql::{Dialect, Sql};

    async fn write_then_read(url: String) -> i64 {
        let settings =
            SqliteSettings { url, max_connections: 2, acquire_timeout: Duration::from_secs(10), max_batch: 8 };
        let store = SqliteStore::open(&settings).await.expect("the store opens");
        let mut tx = store.begin_write().await.expect("the writer's connection");
        let insert = Sql::new(Dialect::Sqlite, "INSERT INTO queue_counts (shard, status, n) VALUES (99, 'Pending', 7)");
        <LiteConn as Conn>::execute(&mut tx, insert).await.expect("a write on the writer's connection");
        store.backend().commit(tx).await.expect("the commit");
        let (n,): (i64,) = sqlx::query_as("SELECT n FROM queue_counts WHERE shard = 99")
            .fetch_one(&store.backend().pool)
            .await
            .expect("the readers see the writer's commit");
        n
    }

    #[test]
    fn in_memory_urls_are_told_from_files() {
        for url in
            ["sqlite::memory:", "sqlite://:memory:", "sqlite://?mode=memory", "sqlite://x.db?mode=memory&cache=shared"]
        {
            assert!(names_in_memory(url), "{url}");
        }
        for url in ["sqlite://convmsg.db", "sqlite:data/memory.db", "sqlite://x.db?mode=rwc"] {
            assert!(!names_in_memory(url), "{url}");
        }
    }

    #[tokio::test]
    async fn the_writer_and_the_readers_share_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write_then_read(format!("sqlite://{}", dir.path().join("w.db").display())).await, 7);
    }

    #[tokio::test]
    async fn with_an_in_memory_database_the_writer_and_the_readers_share_it() {
        assert_eq!(write_then_read("sqlite::memory:".to_owned()).await, 7);
    }
}
