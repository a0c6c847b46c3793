//! Running a built `Sql` on either backend's connection: the `Conn` trait both
//! backends implement (binding each `Arg` the way the dialect takes it), the row types
//! both can decode, and the one database error the shared code asks about.

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, FromRow};

use super::lite::{FromLiteRow, LiteRow};
use super::{Arg, Dialect, Sql};
use crate::store::StoreResult;

/// Row types every connection can decode: the driver's rows (the derive of `FromRow` is
/// generic over rows) and the SQLite writer's (`lite::row!` derives both).
pub trait FromAnyRow: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + FromLiteRow + Send + Unpin {}
impl<T> FromAnyRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + FromLiteRow + Send + Unpin
{
}

/// A row of either backend, for statements whose columns are only known at run time
/// (the SOQL compiler's sort keys).
pub enum AnyRow {
    Sqlite(SqliteRow),
    Postgres(PgRow),
    /// A row of the SQLite writer's connection.
    Lite(LiteRow),
}

impl AnyRow {
    /// The row as a `FromRow` type.
    pub fn decode<T: FromAnyRow>(&self) -> StoreResult<T> {
        Ok(match self {
            AnyRow::Sqlite(r) => T::from_row(r)?,
            AnyRow::Postgres(r) => T::from_row(r)?,
            AnyRow::Lite(r) => T::from_lite(r)?,
        })
    }

    pub fn opt_i64(&self, column: &str) -> StoreResult<Option<i64>> {
        use sqlx::Row;
        Ok(match self {
            AnyRow::Sqlite(r) => r.try_get(column)?,
            AnyRow::Postgres(r) => r.try_get(column)?,
            AnyRow::Lite(r) => r.get(column)?,
        })
    }

    pub fn opt_text(&self, column: &str) -> StoreResult<Option<String>> {
        use sqlx::Row;
        Ok(match self {
            AnyRow::Sqlite(r) => r.try_get(column)?,
            AnyRow::Postgres(r) => r.try_get(column)?,
            AnyRow::Lite(r) => r.get(column)?,
        })
    }

    pub fn opt_bool(&self, column: &str) -> StoreResult<Option<bool>> {
        use sqlx::Row;
        Ok(match self {
            AnyRow::Sqlite(r) => r.try_get(column)?,
            AnyRow::Postgres(r) => r.try_get(column)?,
            AnyRow::Lite(r) => r.get(column)?,
        })
    }

    /// Every column, in order, as integers (aggregate rows).
    pub fn all_i64(&self) -> StoreResult<Vec<i64>> {
        use sqlx::Row;
        Ok(match self {
            AnyRow::Sqlite(r) => (0..r.len()).map(|i| r.try_get::<i64, _>(i)).collect::<Result<_, _>>()?,
            AnyRow::Postgres(r) => (0..r.len()).map(|i| r.try_get::<i64, _>(i)).collect::<Result<_, _>>()?,
            AnyRow::Lite(r) => (0..r.len()).map(|i| r.get_at::<i64>(i)).collect::<Result<_, _>>()?,
        })
    }
}

/// A connection of either backend, inside or outside a transaction.
#[async_trait]
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    /// Rows whose shape is only known at run time.
    async fn fetch_rows(&mut self, sql: Sql) -> StoreResult<Vec<AnyRow>>;
    /// Rows affected.
    async fn execute(&mut self, sql: Sql) -> StoreResult<u64>;
    async fn fetch_all<R: FromAnyRow>(&mut self, sql: Sql) -> StoreResult<Vec<R>>;
    async fn fetch_optional<R: FromAnyRow>(&mut self, sql: Sql) -> StoreResult<Option<R>>;

    async fn fetch_one<R: FromAnyRow>(&mut self, sql: Sql) -> StoreResult<R> {
        let text = sql.text.clone();
        self.fetch_optional(sql).await?.ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!("a statement that always returns a row returned none: {text}"))
        })
    }

    /// Runs a statement that takes no values (`BEGIN`, `COMMIT`, a pragma).
    async fn run(&mut self, text: &'static str) -> StoreResult<()>;
}

macro_rules! bind_args {
    ($query:expr, $args:expr, $json_ok:tt) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::OptInt(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::OptBool(v) => q.bind(v),
                other => bind_collection!(q, other, $json_ok),
            };
        }
        q
    }};
}

macro_rules! bind_collection {
    ($q:expr, $arg:expr, true) => {
        match $arg {
            Arg::Json(v) => $q.bind(v),
            other => unreachable!("SQLite statements receive lists as JSON, not {other:?}"),
        }
    };
    ($q:expr, $arg:expr, false) => {
        match $arg {
            Arg::Texts(v) => $q.bind(v),
            Arg::OptTexts(v) => $q.bind(v),
            Arg::Ints(v) => $q.bind(v),
            Arg::OptInts(v) => $q.bind(v),
            Arg::Floats(v) => $q.bind(v),
            Arg::Bools(v) => $q.bind(v),
            other => unreachable!("PostgreSQL statements receive lists as arrays, not {other:?}"),
        }
    };
}

/// `Conn` for one backend's connection: the same statements, bound the backend's way
/// (lists as JSON text for SQLite, as arrays for PostgreSQL).
macro_rules! impl_conn {
    ($conn:ty, $dialect:ident, $json_lists:tt) => {
        #[async_trait]
        impl Conn for $conn {
            fn dialect(&self) -> Dialect {
                Dialect::$dialect
            }

            async fn fetch_rows(&mut self, sql: Sql) -> StoreResult<Vec<AnyRow>> {
                let q = bind_args!(sqlx::query(AssertSqlSafe(sql.text)), sql.args, $json_lists);
                Ok(q.fetch_all(&mut *self).await?.into_iter().map(AnyRow::$dialect).collect())
            }

            async fn execute(&mut self, sql: Sql) -> StoreResult<u64> {
                let q = bind_args!(sqlx::query(AssertSqlSafe(sql.text)), sql.args, $json_lists);
                Ok(q.execute(&mut *self).await?.rows_affected())
            }

            async fn fetch_all<R: FromAnyRow>(&mut self, sql: Sql) -> StoreResult<Vec<R>> {
                let q = bind_args!(sqlx::query_as::<_, R>(AssertSqlSafe(sql.text)), sql.args, $json_lists);
                Ok(q.fetch_all(&mut *self).await?)
            }

            async fn fetch_optional<R: FromAnyRow>(&mut self, sql: Sql) -> StoreResult<Option<R>> {
                let q = bind_args!(sqlx::query_as::<_, R>(AssertSqlSafe(sql.text)), sql.args, $json_lists);
                Ok(q.fetch_optional(&mut *self).await?)
            }

            async fn run(&mut self, text: &'static str) -> StoreResult<()> {
                sqlx::query(text).execute(&mut *self).await?;
                Ok(())
            }
        }
    };
}

impl_conn!(SqliteConnection, Sqlite, true);
impl_conn!(PgConnection, Postgres, false);

/// A unique-constraint failure (another record already has this key).
pub fn is_unique_violation(e: &crate::store::StoreError) -> bool {
    match e {
        crate::store::StoreError::Database(e) => {
            matches!(&**e, sqlx::Error::Database(db) if db.is_unique_violation())
        }
        _ => false,
    }
}
