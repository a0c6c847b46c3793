//! The database each test gets: a SQLite file in a temporary directory or a new
//! PostgreSQL database with a random name (`CONVMSG_TEST_DATABASE`), dropped with it;
//! and statements and locks from outside the server.

/// Which database the integration suite runs against (`CONVMSG_TEST_DATABASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("CONVMSG_TEST_DATABASE").as_deref() {
        Ok("postgres") | Ok("postgresql") => Backend::Postgres,
        Ok("sqlite") | Ok("") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("CONVMSG_TEST_DATABASE={other:?}: use sqlite or postgres"),
    }
}

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("CONVMSG_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database for one test; removed when dropped.
pub struct TestDatabase {
    /// What `database_url` to give the server.
    pub url: String,
    pub backend: Backend,
    /// PostgreSQL: the database's name, dropped (WITH FORCE) on drop.
    pg_name: Option<String>,
    /// SQLite: the directory holding the file.
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// On the backend `CONVMSG_TEST_DATABASE` names.
    pub async fn create() -> TestDatabase {
        match backend() {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("convmsg.db").display());
        TestDatabase { url, backend: Backend::Sqlite, pg_name: None, _dir: Some(dir) }
    }

    /// A new database with a random name on the test PostgreSQL server.
    pub async fn postgres() -> TestDatabase {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let name = format!("convmsg_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL tests need a server at {admin} (set CONVMSG_TEST_POSTGRES_URL): {e}")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map(|(base, _)| base).expect("a URL with a database path");
        TestDatabase { url: format!("{base}/{name}"), backend: Backend::Postgres, pg_name: Some(name), _dir: None }
    }

    /// An existing PostgreSQL database (a private cluster's), left in place when dropped.
    pub fn at(url: &str) -> TestDatabase {
        TestDatabase { url: url.to_owned(), backend: Backend::Postgres, pg_name: None, _dir: None }
    }

    /// Rows of `sql` as (text, number, number) triples, on either backend.
    pub async fn fetch_triples(&self, sql: &str) -> Vec<(String, i64, i64)> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
                pool.close().await;
                rows
            }
        }
    }

    /// Runs one statement from outside the server (a change no API makes), either backend.
    pub async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    /// Takes, from outside the server, the lock an accept needs, so accepts wait
    /// inside the server until the blocker is released. SQLite: the write lock
    /// (`BEGIN IMMEDIATE`). PostgreSQL: `LOCK TABLE tenant_sequences IN ACCESS
    /// EXCLUSIVE MODE`, which the name sequence's upsert waits on.
    pub async fn block_accepts(&self) -> AcceptBlocker {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                AcceptBlocker::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await.unwrap())
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                let mut tx = pool.begin().await.unwrap();
                sqlx::query("LOCK TABLE tenant_sequences IN ACCESS EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
                AcceptBlocker::Postgres(tx)
            }
        }
    }
}

/// A lock held from outside the server; see `TestDatabase::block_accepts`.
pub enum AcceptBlocker {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl AcceptBlocker {
    pub async fn release(self) {
        match self {
            AcceptBlocker::Sqlite(tx) => tx.rollback().await.unwrap(),
            AcceptBlocker::Postgres(tx) => tx.rollback().await.unwrap(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop runs inside the test's runtime: drop the database from a thread of its own.
        let admin = postgres_admin_url();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}
