//! SQL written once for both backends. Shared store code builds statements with `Sql`
//! (placeholders `$1…`, which sqlx-sqlite accepts too) and runs them on any `Conn` — a
//! SQLite or a PostgreSQL connection. What truly differs between the two is asked of
//! the `Dialect`: how a list or a set of rows is passed in one parameter (PostgreSQL
//! arrays and `UNNEST`, SQLite JSON and `json_each`), the insertion-order column, row
//! locks, how a write transaction begins. Everything else — the statements themselves,
//! the row shapes, the rules — exists once, in the modules below.
//!
//! Transactions are the caller's: a shared function runs inside whatever transaction
//! its connection is in (the backend begins and commits it).

use crate::store::StoreResult;

pub mod accept;
pub mod admin;
mod conn;
pub mod control;
pub mod counts;
pub mod declared;
pub mod deletes;
pub mod delivery;
pub mod lite;
pub mod outbox;
pub mod queue;
pub mod rates;
pub mod receipts;
pub mod requests;
pub mod soql;
pub mod tokens;

pub use conn::{AnyRow, Conn, FromAnyRow, is_unique_violation};

/// The two SQL dialects convmsg speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The column that orders rows by insertion (FIFO among rows of one millisecond):
    /// SQLite's rowid, PostgreSQL's identity column.
    pub fn seq(self) -> &'static str {
        match self {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }

    /// Appended to a `SELECT` that must lock the rows it reads until the transaction
    /// ends. SQLite has one writer: its write transaction already excludes the others.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The smaller of two values.
    pub fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }
}

/// One bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Float(f64),
    Bool(bool),
    OptBool(Option<bool>),
    /// A list or a set of rows as SQLite receives it: JSON text for `json_each`.
    Json(String),
    /// Columns as PostgreSQL receives them: one array each.
    Texts(Vec<String>),
    OptTexts(Vec<Option<String>>),
    Ints(Vec<i64>),
    OptInts(Vec<Option<i64>>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_owned())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::OptText(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::OptText(v.map(str::to_owned))
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Float(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

/// One column of a set of rows passed in one go (`Rows`).
#[derive(Debug, Clone)]
enum Column {
    Text(Vec<String>),
    OptText(Vec<Option<String>>),
    Int(Vec<i64>),
    OptInt(Vec<Option<i64>>),
    Float(Vec<f64>),
    Bool(Vec<bool>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::OptText(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::OptInt(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Bool(v) => v.len(),
        }
    }

    fn pg_type(&self) -> &'static str {
        match self {
            Column::Text(_) | Column::OptText(_) => "text[]",
            Column::Int(_) | Column::OptInt(_) => "bigint[]",
            Column::Float(_) => "float8[]",
            Column::Bool(_) => "boolean[]",
        }
    }

    fn json(&self, row: usize) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Column::Text(v) => Value::from(v[row].as_str()),
            Column::OptText(v) => v[row].as_deref().map(Value::from).unwrap_or(Value::Null),
            Column::Int(v) => Value::from(v[row]),
            Column::OptInt(v) => v[row].map(Value::from).unwrap_or(Value::Null),
            Column::Float(v) => Value::from(v[row]),
            // SQLite stores booleans as 0/1.
            Column::Bool(v) => Value::from(i64::from(v[row])),
        }
    }

    /// Whether every value is present (no `NULL`s possible).
    fn is_required(&self) -> bool {
        matches!(self, Column::Text(_) | Column::Int(_) | Column::Float(_) | Column::Bool(_))
    }

    /// The values as single arguments, in row order.
    fn into_scalars(self) -> Vec<Arg> {
        match self {
            Column::Text(v) => v.into_iter().map(Arg::Text).collect(),
            Column::OptText(v) => v.into_iter().map(Arg::OptText).collect(),
            Column::Int(v) => v.into_iter().map(Arg::Int).collect(),
            Column::OptInt(v) => v.into_iter().map(Arg::OptInt).collect(),
            Column::Float(v) => v.into_iter().map(Arg::Float).collect(),
            Column::Bool(v) => v.into_iter().map(Arg::Bool).collect(),
        }
    }

    fn into_arg(self) -> Arg {
        match self {
            Column::Text(v) => Arg::Texts(v),
            Column::OptText(v) => Arg::OptTexts(v),
            Column::Int(v) => Arg::Ints(v),
            Column::OptInt(v) => Arg::OptInts(v),
            Column::Float(v) => Arg::Floats(v),
            Column::Bool(v) => Arg::Bools(v),
        }
    }
}

/// A set of rows passed to one statement in one or a few parameters, so a batch of any
/// size is one statement with a fixed text (prepared once): PostgreSQL receives one
/// array per column and reads them with `UNNEST`; SQLite receives one JSON array of rows
/// and reads it with `json_each`.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    columns: Vec<(&'static str, Column)>,
}

impl Rows {
    pub fn new() -> Self {
        Rows::default()
    }

    pub fn text(mut self, name: &'static str, values: Vec<String>) -> Self {
        self.columns.push((name, Column::Text(values)));
        self
    }

    pub fn opt_text(mut self, name: &'static str, values: Vec<Option<String>>) -> Self {
        self.columns.push((name, Column::OptText(values)));
        self
    }

    pub fn int(mut self, name: &'static str, values: Vec<i64>) -> Self {
        self.columns.push((name, Column::Int(values)));
        self
    }

    pub fn opt_int(mut self, name: &'static str, values: Vec<Option<i64>>) -> Self {
        self.columns.push((name, Column::OptInt(values)));
        self
    }

    pub fn float(mut self, name: &'static str, values: Vec<f64>) -> Self {
        self.columns.push((name, Column::Float(values)));
        self
    }

    pub fn bool(mut self, name: &'static str, values: Vec<bool>) -> Self {
        self.columns.push((name, Column::Bool(values)));
        self
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.columns.first().map(|(_, c)| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A statement being built: text with `$n` placeholders, and the values they stand for.
#[derive(Debug, Clone)]
pub struct Sql {
    dialect: Dialect,
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(dialect: Dialect, text: &str) -> Self {
        Sql { dialect, text: text.to_owned(), args: Vec::new() }
    }

    /// A statement built elsewhere (the SOQL compiler), with its values in placeholder order.
    pub fn from_parts(dialect: Dialect, text: String, args: Vec<Arg>) -> Self {
        Sql { dialect, text, args }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    /// Appends `column IN (values)` with the whole list in one parameter.
    pub fn in_list(&mut self, column: &str, values: Vec<String>) -> &mut Self {
        self.text.push_str(column);
        match self.dialect {
            Dialect::Postgres => {
                self.text.push_str(" = ANY(");
                self.bind(Arg::Texts(values));
                self.text.push(')');
            }
            Dialect::Sqlite => {
                self.text.push_str(" IN (SELECT value FROM json_each(");
                self.bind(Arg::Json(serde_json::Value::from(values).to_string()));
                self.text.push_str("))");
            }
        }
        self
    }

    /// Appends a parenthesised subquery yielding `rows`, with their column names, to be
    /// used as `SELECT … FROM (…) AS v` or `UPDATE … FROM (…) AS v`.
    pub fn rows(&mut self, rows: Rows) -> &mut Self {
        let names: Vec<&str> = rows.columns.iter().map(|(n, _)| *n).collect();
        match self.dialect {
            Dialect::Postgres => {
                self.text.push_str("(SELECT * FROM UNNEST(");
                let count = rows.columns.len();
                for (i, (_, column)) in rows.columns.into_iter().enumerate() {
                    let pg_type = column.pg_type();
                    self.bind(column.into_arg());
                    self.text.push_str("::");
                    self.text.push_str(pg_type);
                    if i + 1 < count {
                        self.text.push_str(", ");
                    }
                }
                self.text.push_str(") AS u(");
                self.text.push_str(&names.join(", "));
                self.text.push_str("))");
            }
            Dialect::Sqlite => {
                let n = rows.len();
                let json: Vec<serde_json::Value> = (0..n)
                    .map(|row| serde_json::Value::Array(rows.columns.iter().map(|(_, c)| c.json(row)).collect()))
                    .collect();
                self.text.push_str("(SELECT ");
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        self.text.push_str(", ");
                    }
                    self.text.push_str(&format!("value ->> {i} AS {name}"));
                }
                self.text.push_str(" FROM json_each(");
                self.bind(Arg::Json(serde_json::Value::Array(json).to_string()));
                self.text.push_str("))");
            }
        }
        self
    }

    /// Adds a value without a placeholder, for a statement whose text already names
    /// `$n` (one value used twice).
    pub fn arg(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Most rows one SQLite statement of `insert_rows` takes (a power of two); a larger set
/// runs the statement again for the rest.
const SQLITE_ROWS_PER_STATEMENT: usize = 128;

/// Runs `head (rows) tail` — an `INSERT … SELECT … FROM ` whose rows do not depend on one
/// another — for a set of rows of any size, keeping their order (SQLite's rowid, the
/// queue's FIFO among rows of one millisecond). PostgreSQL takes them in one statement
/// (`UNNEST`, as `Sql::rows`). SQLite takes them as a multi-row `VALUES` of plain bound
/// values, not JSON: decoding `json_each` rows was the largest SQLite cost of an accept
/// (bench/RESULTS.md). So that each statement text is prepared once, a chunk's rows are
/// padded with `NULL` rows up to the next power of two and the padding is filtered out
/// by the first column, which must therefore never be `NULL`; `head` and `tail` take no
/// values (the rows' placeholders are positional). Returns the rows affected.
pub async fn insert_rows<C: Conn>(conn: &mut C, head: &str, rows: Rows, tail: &str) -> StoreResult<u64> {
    if conn.dialect() == Dialect::Postgres {
        let mut sql = Sql::new(Dialect::Postgres, head);
        sql.rows(rows).push(tail);
        return conn.execute(sql).await;
    }
    let total = rows.len();
    // Checked in release builds too: a NULL in a nullable first column would be taken
    // for padding and its row silently not inserted.
    assert!(rows.columns.first().is_some_and(|(_, c)| c.is_required()), "the first column filters the padding");
    assert!(!head.contains('$') && !tail.contains('$'), "the rows' placeholders are positional");
    let names: Vec<&'static str> = rows.columns.iter().map(|(n, _)| *n).collect();
    let mut cells: Vec<std::vec::IntoIter<Arg>> =
        rows.columns.into_iter().map(|(_, c)| c.into_scalars().into_iter()).collect();
    let mut affected = 0;
    let mut left = total;
    while left > 0 {
        let take = left.min(SQLITE_ROWS_PER_STATEMENT);
        let mut sql = Sql::new(Dialect::Sqlite, head);
        sql.push("(SELECT ");
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push(&format!("column{} AS {name}", i + 1));
        }
        sql.push(" FROM (VALUES ");
        for row in 0..take.next_power_of_two() {
            sql.push(if row == 0 { "(" } else { ", (" });
            for (i, column) in cells.iter_mut().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                let value = if row < take { column.next().unwrap_or(Arg::OptText(None)) } else { Arg::OptText(None) };
                // Plain `?`, bound in order: SQLite looks a named (`$n`) parameter up by
                // walking the statement's list of names, once per value — quadratic in a
                // statement of a thousand values.
                sql.push("?").arg(value);
            }
            sql.push(")");
        }
        sql.push(") WHERE column1 IS NOT NULL)").push(tail);
        affected += conn.execute(sql).await?;
        left -= take;
    }
    Ok(affected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnection;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut sql = Sql::new(Dialect::Sqlite, "SELECT * FROM t WHERE a = ");
        sql.bind("x").push(" AND b = ").bind(3i64);
        assert_eq!(sql.text(), "SELECT * FROM t WHERE a = $1 AND b = $2");
        assert_eq!(sql.args, vec![Arg::Text("x".into()), Arg::Int(3)]);
    }

    #[test]
    fn a_list_is_one_parameter_in_either_dialect() {
        let mut pg = Sql::new(Dialect::Postgres, "SELECT 1 WHERE ");
        pg.in_list("id", vec!["a".into(), "b".into()]);
        assert_eq!(pg.text(), "SELECT 1 WHERE id = ANY($1)");
        let mut lite = Sql::new(Dialect::Sqlite, "SELECT 1 WHERE ");
        lite.in_list("id", vec!["a".into(), "b".into()]);
        assert_eq!(lite.text(), "SELECT 1 WHERE id IN (SELECT value FROM json_each($1))");
        assert_eq!(lite.args, vec![Arg::Json(r#"["a","b"]"#.into())]);
    }

    #[tokio::test]
    async fn insert_rows_keeps_every_row_its_values_and_their_order_at_any_count() {
        use sqlx::Connection;
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.expect("an in-memory database");
        conn.run("CREATE TABLE t (id TEXT NOT NULL, n INTEGER, flag INTEGER NOT NULL)").await.expect("a table");
        let mut expected = Vec::new();
        for count in [0usize, 1, 3, 128, 129, 300] {
            let ids: Vec<String> = (0..count).map(|i| format!("{count}-{i}")).collect();
            let ns: Vec<Option<i64>> = (0..count).map(|i| (i % 3 != 0).then_some(i as i64)).collect();
            let flags: Vec<bool> = (0..count).map(|i| i % 2 == 0).collect();
            let rows = Rows::new().text("id", ids.clone()).opt_int("n", ns.clone()).bool("flag", flags.clone());
            let affected =
                insert_rows(&mut conn, "INSERT INTO t (id, n, flag) SELECT id, n, flag FROM ", rows, " AS v")
                    .await
                    .expect("inserted");
            assert_eq!(affected, count as u64, "{count} rows, no padding");
            expected.extend(ids.into_iter().zip(ns).zip(flags).map(|((id, n), flag)| (id, n, flag)));
        }
        let stored: Vec<(String, Option<i64>, bool)> =
            sqlx::query_as("SELECT id, n, flag FROM t ORDER BY rowid").fetch_all(&mut conn).await.expect("read back");
        assert_eq!(stored, expected);
    }

    #[test]
    fn rows_are_unnested_arrays_or_json_each_with_named_columns() {
        let rows = || Rows::new().text("id", vec!["a".into(), "b".into()]).opt_int("n", vec![Some(1), None]);
        let mut pg = Sql::new(Dialect::Postgres, "INSERT INTO t (id, n) SELECT id, n FROM ");
        pg.rows(rows());
        assert_eq!(
            pg.text(),
            "INSERT INTO t (id, n) SELECT id, n FROM (SELECT * FROM UNNEST($1::text[], $2::bigint[]) AS u(id, n))"
        );
        let mut lite = Sql::new(Dialect::Sqlite, "INSERT INTO t (id, n) SELECT id, n FROM ");
        lite.rows(rows());
        assert_eq!(
            lite.text(),
            "INSERT INTO t (id, n) SELECT id, n FROM (SELECT value ->> 0 AS id, value ->> 1 AS n FROM json_each($1))"
        );
        assert_eq!(lite.args, vec![Arg::Json(r#"[["a",1],["b",null]]"#.into())]);
    }
}
