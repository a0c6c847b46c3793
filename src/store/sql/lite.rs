//! The SQLite writer's connection: statements run on the calling thread, not handed to
//! a worker thread and back as sqlx's SQLite driver does for each statement (two thread
//! wake-ups, ~250 µs measured on this class of machine, against ~50 µs of SQLite work). The
//! group-commit writer runs on a thread of its own, so a batch's statements, its commit
//! and its fsync run back to back there; a borrower on the shared runtime runs its
//! statements in `block_in_place`, so no runtime worker stalls behind an fsync.
//!
//! Rows come back as owned values (`LiteRow`) and decode by column name like sqlx's
//! `FromRow` (`FromLiteRow`; the `row!` macro derives both). Errors are sqlx errors, so
//! the store classifies them (busy, down, a unique violation) as it does the driver's.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Value, ValueRef};

use super::{Arg, Sql};
use crate::store::StoreResult;

/// Prepared statements the writer keeps (its statements are a few dozen shapes).
const STATEMENT_CACHE: usize = 256;

/// A connection to the SQLite file that runs its statements where it is called.
pub struct LiteConn {
    conn: rusqlite::Connection,
}

/// How the writer's connection is opened: the same settings as the driver's.
#[derive(Debug, Clone)]
pub struct LiteOptions {
    /// The file, or the name of a shared in-memory database (`in_memory`).
    pub path: std::path::PathBuf,
    /// `sqlite::memory:`: the database lives in memory, shared with the driver's
    /// connections of this process by name (its shared cache), as sqlx opens it.
    pub in_memory: bool,
    pub busy_timeout: Duration,
    /// `cache_size` (KiB when negative).
    pub cache_size: &'static str,
}

impl LiteConn {
    /// Opens the (already migrated) database file in WAL mode with `synchronous=FULL`.
    pub fn open(options: &LiteOptions) -> StoreResult<Self> {
        let conn = open(options).map_err(to_sqlx)?;
        conn.busy_timeout(options.busy_timeout).map_err(to_sqlx)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut lite = LiteConn { conn };
        for pragma in [
            "PRAGMA journal_mode = WAL".to_owned(),
            "PRAGMA synchronous = FULL".to_owned(),
            "PRAGMA foreign_keys = ON".to_owned(),
            "PRAGMA temp_store = MEMORY".to_owned(),
            format!("PRAGMA cache_size = {}", options.cache_size),
        ] {
            lite.statement(&pragma, Vec::new(), false)?;
        }
        Ok(lite)
    }

    /// Runs one statement: its rows when `rows`, and the rows it changed.
    fn statement(&mut self, text: &str, args: Vec<Arg>, rows: bool) -> StoreResult<(Vec<LiteRow>, u64)> {
        blocking(|| {
            let mut stmt = self.conn.prepare_cached(text)?;
            bind_all(&mut stmt, args)?;
            // Column names only for a statement whose rows are read.
            let names: Option<Arc<[String]>> =
                rows.then(|| stmt.column_names().into_iter().map(str::to_owned).collect());
            let mut out = Vec::new();
            let mut cursor = stmt.raw_query();
            while let Some(row) = cursor.next()? {
                if let Some(names) = &names {
                    let values = (0..names.len()).map(|i| row.get_ref(i).map(owned)).collect::<Result<_, _>>()?;
                    out.push(LiteRow { names: names.clone(), values });
                }
            }
            drop(cursor);
            Ok::<_, rusqlite::Error>((out, self.conn.changes()))
        })
        .map_err(|e| to_sqlx(e).into())
    }
}

fn owned(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(text) => Value::Text(text.to_owned()),
            Err(_) => Value::Blob(t.to_vec()),
        },
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn open(options: &LiteOptions) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags as F;
    let mut flags = F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_NO_MUTEX | F::SQLITE_OPEN_URI;
    if options.in_memory {
        flags |= F::SQLITE_OPEN_CREATE | F::SQLITE_OPEN_MEMORY | F::SQLITE_OPEN_SHARED_CACHE;
    }
    rusqlite::Connection::open_with_flags(&options.path, flags)
}

/// Runs SQLite work here: inline on a thread of its own (the writer's) or a
/// current-thread runtime; inside `block_in_place` on the shared multi-thread runtime.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Binds each placeholder to its value: `$n` (and `?n`) to the n-th, a bare `?` to the
/// next, as sqlx does (a `$n` used twice is one parameter).
fn bind_all(stmt: &mut rusqlite::Statement<'_>, args: Vec<Arg>) -> rusqlite::Result<()> {
    let mut args: Vec<Option<Arg>> = args.into_iter().map(Some).collect();
    let mut next = 0;
    for p in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(p) {
            Some(name) => name[1..]
                .parse::<usize>()
                .map_err(|_| rusqlite::Error::InvalidParameterName(format!("{name}: placeholders are $n, ?n or ?")))?,
            None => {
                next += 1;
                next
            }
        };
        // Unbound placeholders are NULL, as in sqlx.
        if let Some(arg) = n.checked_sub(1).and_then(|i| args.get_mut(i)).and_then(Option::take) {
            bind(stmt, p, arg)?;
        }
    }
    Ok(())
}

fn bind(stmt: &mut rusqlite::Statement<'_>, i: usize, arg: Arg) -> rusqlite::Result<()> {
    match arg {
        Arg::Text(v) | Arg::Json(v) => stmt.raw_bind_parameter(i, v),
        Arg::OptText(v) => stmt.raw_bind_parameter(i, v),
        Arg::Int(v) => stmt.raw_bind_parameter(i, v),
        Arg::OptInt(v) => stmt.raw_bind_parameter(i, v),
        Arg::Float(v) => stmt.raw_bind_parameter(i, v),
        Arg::Bool(v) => stmt.raw_bind_parameter(i, v),
        Arg::OptBool(v) => stmt.raw_bind_parameter(i, v),
        other => unreachable!("SQLite statements receive lists as JSON, not {other:?}"),
    }
}

#[async_trait::async_trait]
impl super::Conn for LiteConn {
    fn dialect(&self) -> super::Dialect {
        super::Dialect::Sqlite
    }

    async fn fetch_rows(&mut self, sql: Sql) -> StoreResult<Vec<super::AnyRow>> {
        let (rows, _) = self.statement(&sql.text, sql.args, true)?;
        Ok(rows.into_iter().map(super::AnyRow::Lite).collect())
    }

    async fn execute(&mut self, sql: Sql) -> StoreResult<u64> {
        Ok(self.statement(&sql.text, sql.args, false)?.1)
    }

    async fn fetch_all<R: super::FromAnyRow>(&mut self, sql: Sql) -> StoreResult<Vec<R>> {
        let (rows, _) = self.statement(&sql.text, sql.args, true)?;
        Ok(rows.iter().map(R::from_lite).collect::<Result<_, _>>()?)
    }

    async fn fetch_optional<R: super::FromAnyRow>(&mut self, sql: Sql) -> StoreResult<Option<R>> {
        let (rows, _) = self.statement(&sql.text, sql.args, true)?;
        Ok(rows.first().map(R::from_lite).transpose()?)
    }

    async fn run(&mut self, text: &'static str) -> StoreResult<()> {
        self.statement(text, Vec::new(), false).map(|_| ())
    }
}

/// A row, owned: its column names (shared by the statement's rows) and values.
#[derive(Debug, Clone)]
pub struct LiteRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl LiteRow {
    fn index(&self, column: &str) -> Result<usize, sqlx::Error> {
        self.names.iter().position(|n| n == column).ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_owned()))
    }

    /// The named column as `T`.
    pub fn get<T: LiteValue>(&self, column: &str) -> Result<T, sqlx::Error> {
        let i = self.index(column)?;
        self.at(i, column)
    }

    /// The column at `i` as `T`.
    pub fn get_at<T: LiteValue>(&self, i: usize) -> Result<T, sqlx::Error> {
        self.at(i, &i.to_string())
    }

    fn at<T: LiteValue>(&self, i: usize, name: &str) -> Result<T, sqlx::Error> {
        let value =
            self.values.get(i).ok_or_else(|| sqlx::Error::ColumnIndexOutOfBounds { index: i, len: self.len() })?;
        T::from_value(value).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: format!("{name:?}"),
            source: format!("expected {}, found {}", T::EXPECTED, kind(value)).into(),
        })
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "INTEGER",
        Value::Real(_) => "REAL",
        Value::Text(_) => "TEXT",
        Value::Blob(_) => "BLOB",
    }
}

/// A column value as a Rust type, with the conversions sqlx's SQLite driver makes.
pub trait LiteValue: Sized {
    const EXPECTED: &'static str;
    fn from_value(v: &Value) -> Option<Self>;
}

impl LiteValue for String {
    const EXPECTED: &'static str = "TEXT";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            Value::Blob(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }
}

impl LiteValue for i64 {
    const EXPECTED: &'static str = "INTEGER";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Integer(n) => Some(*n),
            Value::Real(f) if f.fract() == 0.0 => Some(*f as i64),
            _ => None,
        }
    }
}

impl LiteValue for f64 {
    const EXPECTED: &'static str = "REAL";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            Value::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }
}

impl LiteValue for bool {
    const EXPECTED: &'static str = "BOOLEAN";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Integer(n) => Some(*n != 0),
            _ => None,
        }
    }
}

impl<T: LiteValue> LiteValue for Option<T> {
    const EXPECTED: &'static str = T::EXPECTED;
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A row type decoded from a `LiteRow`, by column name (structs) or position (tuples).
pub trait FromLiteRow: Sized {
    fn from_lite(row: &LiteRow) -> Result<Self, sqlx::Error>;
}

macro_rules! tuple_rows {
    ($(($($t:ident $i:tt),+)),+) => {$(
        impl<$($t: LiteValue),+> FromLiteRow for ($($t,)+) {
            fn from_lite(row: &LiteRow) -> Result<Self, sqlx::Error> {
                Ok(($(row.get_at::<$t>($i)?,)+))
            }
        }
    )+};
}

tuple_rows!(
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
);

/// A row struct both drivers decode: sqlx's `FromRow` and `FromLiteRow`, by field name.
macro_rules! row {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(sqlx::FromRow)]
        $vis struct $name { $($(#[$fm])* $fvis $field: $ty),* }

        impl $crate::store::sql::lite::FromLiteRow for $name {
            fn from_lite(row: &$crate::store::sql::lite::LiteRow) -> Result<Self, sqlx::Error> {
                Ok($name { $($field: row.get(stringify!($field))?),* })
            }
        }
    };
}
pub(crate) use row;

/// A SQLite error as sqlx reports one (its extended result code as the code), so the
/// store's classification and unique-violation checks apply unchanged.
#[derive(Debug)]
pub struct LiteError {
    message: String,
    code: Option<i32>,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => ErrorKind::UniqueViolation,
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn to_sqlx(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            sqlx::Error::Database(Box::new(LiteError { message, code: Some(failure.extended_code) }))
        }
        other => sqlx::Error::Database(Box::new(LiteError { message: other.to_string(), code: None })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::Conn;

    fn sql(text: &str) -> Sql {
        Sql::new(super::super::Dialect::Sqlite, text)
    }

    fn scratch() -> (tempfile::TempDir, LiteConn) {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("lite.db");
        rusqlite::Connection::open(&path).expect("a new database file");
        let options = LiteOptions { path, in_memory: false, busy_timeout: Duration::from_secs(1), cache_size: "-1024" };
        let conn = LiteConn::open(&options).expect("the writer's connection");
        (dir, conn)
    }

    row! {
        #[derive(Debug)]
        struct Pair {
            name: String,
            n: Option<i64>,
            flag: bool,
        }
    }

    #[tokio::test]
    async fn statements_bind_in_order_decode_by_name_and_count_changes() {
        let (_dir, mut conn) = scratch();
        conn.run("CREATE TABLE t (name TEXT PRIMARY KEY, n INTEGER, flag INTEGER NOT NULL)").await.unwrap();
        let insert = |name: &str, n: Option<i64>| {
            // Numbered out of the order they appear in.
            let mut sql = sql("INSERT INTO t (flag, name, n) VALUES ($2, $1, $3)");
            sql.arg(name).arg(Arg::Bool(n.is_some())).arg(Arg::OptInt(n)).clone()
        };
        assert_eq!(conn.execute(insert("a", Some(7))).await.unwrap(), 1);
        assert_eq!(conn.execute(insert("b", None)).await.unwrap(), 1);
        let rows: Vec<Pair> = conn.fetch_all(sql("SELECT flag, n, name FROM t ORDER BY name")).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].name.as_str(), rows[0].n, rows[0].flag), ("a", Some(7), true));
        assert_eq!((rows[1].name.as_str(), rows[1].n, rows[1].flag), ("b", None, false));
        let counted: (i64, String) = conn.fetch_one(sql("SELECT count(*), max(name) FROM t")).await.unwrap();
        assert_eq!(counted, (2, "b".to_owned()));
        assert_eq!(conn.execute(sql("UPDATE t SET n = 1")).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_duplicate_key_is_a_unique_violation_and_a_wrong_type_names_its_column() {
        let (_dir, mut conn) = scratch();
        conn.run("CREATE TABLE t (name TEXT PRIMARY KEY, n INTEGER)").await.unwrap();
        conn.execute(sql("INSERT INTO t (name, n) VALUES ('a', 1)")).await.unwrap();
        let dup = conn.execute(sql("INSERT INTO t (name, n) VALUES ('a', 2)")).await.unwrap_err();
        assert!(super::super::is_unique_violation(&dup), "{dup:?}");
        let wrong = conn.fetch_one::<(i64,)>(sql("SELECT name AS label FROM t")).await.unwrap_err();
        let chain = crate::error::error_chain(&wrong);
        assert!(chain.contains("expected INTEGER, found TEXT"), "{chain}");
        let missing = conn.fetch_one::<Pair>(sql("SELECT name FROM t")).await.unwrap_err();
        assert!(crate::error::error_chain(&missing).contains("n"), "{missing}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_the_shared_runtime_statements_run_in_block_in_place() {
        let (_dir, mut conn) = scratch();
        conn.run("CREATE TABLE t (n INTEGER)").await.unwrap();
        let other = tokio::spawn(async { 41 + 1 });
        conn.execute(sql("INSERT INTO t (n) VALUES (?)").arg(Arg::Int(1)).clone()).await.unwrap();
        assert_eq!(other.await.unwrap(), 42);
        let (n,): (i64,) = conn.fetch_one(sql("SELECT sum(n) FROM t")).await.unwrap();
        assert_eq!(n, 1);
    }
}
