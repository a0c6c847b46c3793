//! A `RequestQuery` → one parametrised SQL statement, the same text for SQLite and
//! PostgreSQL (`$1`-style placeholders, which sqlx's SQLite driver accepts too). The
//! only dialect switch is PostgreSQL's `COLLATE "C"` on text that is sorted or compared
//! by order, so both backends order text byte-wise (SQLite's default).
//!
//! Always `r.tenant = $1`. Conditions compile to predicates that are never NULL (nullable
//! columns are guarded), so `NOT` is plain negation and `!=` matches nulls, as SOQL's.
//! Message counts are correlated counts over `messages (request_id, …)`, at most 100
//! rows each. Pages resume after the last record by a keyset condition on the sort keys
//! (`Id` last, so the order is total), never by `OFFSET` beyond the query's own.

use super::{Arg, Dialect, Sql};
use crate::domain::model::MessageState;
use crate::domain::query::{CmpOp, Condition, Field, OrderKey, RequestQuery, Selection, SortValue, Source, Value};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    Int(i64),
    Real(f64),
    Bool(bool),
}

/// How a sort key's column is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Text,
    Int,
    Bool,
}

/// A statement and its parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Compiled {
    /// The statement, ready to run on a connection of `dialect`.
    pub fn into_sql(self, dialect: Dialect) -> Sql {
        let args = self
            .binds
            .into_iter()
            .map(|b| match b {
                Bind::Text(s) => Arg::Text(s),
                Bind::Int(n) => Arg::Int(n),
                Bind::Real(x) => Arg::Float(x),
                Bind::Bool(b) => Arg::Bool(b),
            })
            .collect();
        Sql::from_parts(dialect, self.text, args)
    }
}

struct Builder {
    dialect: Dialect,
    text: String,
    binds: Vec<Bind>,
}

impl Builder {
    fn new(dialect: Dialect, tenant: &str) -> Builder {
        Builder { dialect, text: String::new(), binds: vec![Bind::Text(tenant.to_owned())] }
    }

    /// The placeholder of a new parameter.
    fn bind(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn push(&mut self, sql: &str) {
        self.text.push_str(sql);
    }

    /// `expr` compared byte-wise on both backends.
    fn bytewise(&self, expr: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => expr.to_owned(),
            Dialect::Postgres => format!("{expr} COLLATE \"C\""),
        }
    }

    fn finish(self) -> Compiled {
        Compiled { text: self.text, binds: self.binds }
    }
}

/// How a field's value is written in SQL (`r` is `send_requests`).
fn expr(field: Field) -> String {
    let count = |state: Option<MessageState>| match state {
        None => "(SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id)".to_owned(),
        Some(s) => {
            format!("(SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id AND m.status = '{}')", s.as_str())
        }
    };
    match field.info().source {
        Source::AlwaysNull | Source::MessageList => return "NULL".into(),
        Source::AlwaysFalse => return "FALSE".into(),
        Source::MessageCount(state) => return count(state),
        Source::Stored => {}
    }
    match field {
        Field::Id => "r.id",
        Field::Name => "r.name",
        Field::CreatedDate => "r.accepted_ms",
        Field::LastModifiedDate | Field::SystemModstamp => "r.updated_ms",
        Field::MessageDefinition => "r.definition_name",
        Field::MessageDefinitionParameters => "r.parameters",
        Field::RequestType => "r.request_type",
        Field::RequestStatus => "r.status",
        Field::CompletedDate => "r.completed_ms",
        Field::ShouldEnforceChannelConsent => "r.enforce_consent",
        Field::AllowExistingSessionStatus => "r.allowed_session_status",
        // `Custom` has no picklist value: the record shows null.
        Field::RequestConsentType => "NULLIF(r.consent_type, 'Custom')",
        Field::CommSubscriptionId => "r.subscription_id",
        _ => "NULL",
    }
    .to_owned()
}

/// The field's value as text compares case-insensitively: upper-cased. `Name` is
/// stored upper-case already (`MSJ-00000001`) and ids compare exactly, so those stay as
/// they are and keep their indexes.
fn folded(field: Field) -> String {
    match field {
        Field::Name | Field::Id | Field::CommSubscriptionId => expr(field),
        _ => format!("UPPER({})", expr(field)),
    }
}

/// The expression a sort key orders by (and pages resume on). Text sorts
/// case-insensitively, as Salesforce's; ids sort as stored (they are case-sensitive
/// values); picklists sort by their stored values, whose order is the same under any
/// collation (fixed ASCII words differing in their first letters).
fn sort_expr(b: &Builder, field: Field) -> String {
    match field {
        Field::MessageDefinition => b.bytewise(&folded(field)),
        Field::Id | Field::Name | Field::CommSubscriptionId => b.bytewise(&expr(field)),
        f => expr(f),
    }
}

fn key_kind(field: Field) -> KeyKind {
    use crate::domain::query::FieldType as T;
    match field.kind() {
        T::Boolean => KeyKind::Bool,
        T::DateTime | T::Int => KeyKind::Int,
        _ => KeyKind::Text,
    }
}

fn nullable(field: Field) -> bool {
    field.info().nillable && field.info().source == Source::Stored
}

fn bind_value(value: &Value) -> Bind {
    match value {
        Value::Text(s) | Value::Id(s) => Bind::Text(s.clone()),
        Value::Pick(s) => Bind::Text((*s).to_owned()),
        Value::Int(n) | Value::Time(n) => Bind::Int(*n),
        Value::Real(x) => Bind::Real(*x),
        Value::Bool(v) => Bind::Bool(*v),
    }
}

/// The expression a value is compared with under `op`: byte-wise for order comparisons
/// of text, and always for `MessageDefinition` (its index is on the byte-wise upper-cased
/// name); as stored otherwise, so equality keeps the columns' own indexes.
fn compared(b: &Builder, field: Field, value: &Value, op: CmpOp) -> String {
    let ordered = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    match value {
        Value::Text(_) if ordered || field == Field::MessageDefinition => b.bytewise(&folded(field)),
        Value::Text(_) => folded(field),
        Value::Id(_) if ordered => b.bytewise(&expr(field)),
        _ => expr(field),
    }
}

/// `e` with a guard that makes a comparison false (never NULL) where `e` is null.
fn guarded(field: Field, e: &str, test: String) -> String {
    if nullable(field) { format!("({e} IS NOT NULL AND {test})") } else { test }
}

fn condition(b: &mut Builder, c: &Condition) -> String {
    match c {
        Condition::Const(true) => "TRUE".into(),
        Condition::Const(false) => "FALSE".into(),
        Condition::And(items) => join(b, items, " AND ", "TRUE"),
        Condition::Or(items) => join(b, items, " OR ", "FALSE"),
        Condition::Not(inner) => format!("NOT ({})", condition(b, inner)),
        Condition::IsNull { field, negated } => {
            format!("{} IS {}NULL", expr(*field), if *negated { "NOT " } else { "" })
        }
        Condition::Compare { field, op, value } => {
            let e = compared(b, *field, value, *op);
            let placeholder = b.bind(bind_value(value));
            let sql_op = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "<>",
                CmpOp::Lt => "<",
                CmpOp::Le => "<=",
                CmpOp::Gt => ">",
                CmpOp::Ge => ">=",
            };
            if *op == CmpOp::Ne {
                let equal = guarded(*field, &e, format!("{e} = {placeholder}"));
                return format!("NOT {equal}");
            }
            guarded(*field, &e, format!("{e} {sql_op} {placeholder}"))
        }
        Condition::In { field, values, negated } => {
            let Some(first) = values.first() else { return if *negated { "TRUE" } else { "FALSE" }.into() };
            let e = compared(b, *field, first, CmpOp::Eq);
            let list: Vec<String> = values.iter().map(|v| b.bind(bind_value(v))).collect();
            let test = guarded(*field, &e, format!("{e} IN ({})", list.join(", ")));
            if *negated { format!("NOT {test}") } else { test }
        }
        Condition::Like { field, pattern } => {
            let e = folded(*field);
            let placeholder = b.bind(Bind::Text(pattern.clone()));
            guarded(*field, &e, format!("{e} LIKE {placeholder} ESCAPE '\\'"))
        }
    }
}

fn join(b: &mut Builder, items: &[Condition], joiner: &str, empty: &str) -> String {
    if items.is_empty() {
        return empty.into();
    }
    let parts: Vec<String> = items.iter().map(|c| format!("({})", condition(b, c))).collect();
    parts.join(joiner)
}

/// `WHERE` of every statement: the tenant, then the query's condition.
fn where_clause(b: &mut Builder, query: &RequestQuery) {
    let filter = condition(b, &query.condition);
    b.push(" WHERE r.tenant = $1 AND (");
    b.push(&filter);
    b.push(")");
}

/// "After `position` in `keys` order": the first key past its value, or equal and the
/// next key past, and so on. Nulls sit where the key puts them.
fn after(b: &mut Builder, keys: &[OrderKey], position: &[SortValue]) -> String {
    let Some((key, rest)) = keys.split_first() else { return "FALSE".into() };
    let Some((value, rest_values)) = position.split_first() else { return "FALSE".into() };
    let e = sort_expr(b, key.field);
    let (beyond, equal) = match value {
        SortValue::Null if key.nulls_first => (format!("{e} IS NOT NULL"), format!("{e} IS NULL")),
        SortValue::Null => ("FALSE".to_owned(), format!("{e} IS NULL")),
        value => {
            let placeholder = b.bind(sort_bind(value));
            let op = if key.descending { "<" } else { ">" };
            let past = format!("{e} {op} {placeholder}");
            let beyond = match (nullable(key.field), key.nulls_first) {
                (true, true) => format!("({e} IS NOT NULL AND {past})"),
                (true, false) => format!("({e} IS NULL OR {past})"),
                (false, _) => past,
            };
            (beyond, format!("{e} = {placeholder}"))
        }
    };
    if rest.is_empty() {
        return beyond;
    }
    let deeper = after(b, rest, rest_values);
    format!("({beyond} OR ({equal} AND {deeper}))")
}

fn sort_bind(value: &SortValue) -> Bind {
    match value {
        SortValue::Int(n) => Bind::Int(*n),
        SortValue::Text(s) => Bind::Text(s.clone()),
        SortValue::Bool(v) => Bind::Bool(*v),
        SortValue::Null => Bind::Int(0),
    }
}

/// A page of records: every `send_requests` column, then one `k<i>` column per sort
/// key, in order; `LIMIT take OFFSET skip`.
pub fn select_page(
    dialect: Dialect,
    tenant: &str,
    query: &RequestQuery,
    after_position: Option<&[SortValue]>,
    skip: u64,
    take: u32,
) -> (Compiled, Vec<KeyKind>) {
    let mut b = Builder::new(dialect, tenant);
    let keys = query.sort_keys();
    let columns: Vec<String> =
        keys.iter().enumerate().map(|(i, k)| format!(", {} AS k{i}", sort_expr(&b, k.field))).collect();
    b.push("SELECT r.*");
    b.push(&columns.concat());
    b.push(" FROM send_requests r");
    where_clause(&mut b, query);
    if let Some(position) = after_position {
        let resume = after(&mut b, &keys, position);
        // A bound on the first key as well, so the planner can start its index range there.
        let lead = match (keys.first(), position.first()) {
            (Some(k), Some(v)) if !nullable(k.field) && *v != SortValue::Null => {
                let e = sort_expr(&b, k.field);
                let placeholder = b.bind(sort_bind(v));
                format!(" AND {e} {} {placeholder}", if k.descending { "<=" } else { ">=" })
            }
            _ => String::new(),
        };
        b.push(&format!(" AND ({resume}){lead}"));
    }
    let order: Vec<String> = keys
        .iter()
        .map(|k| {
            let nulls = if nullable(k.field) { if k.nulls_first { " NULLS FIRST" } else { " NULLS LAST" } } else { "" };
            format!("{}{}{nulls}", sort_expr(&b, k.field), if k.descending { " DESC" } else { " ASC" })
        })
        .collect();
    b.push(&format!(" ORDER BY {}", order.join(", ")));
    let limit = b.bind(Bind::Int(i64::from(take)));
    let offset = b.bind(Bind::Int(i64::try_from(skip).unwrap_or(i64::MAX)));
    b.push(&format!(" LIMIT {limit} OFFSET {offset}"));
    let kinds = keys.iter().map(|k| key_kind(k.field)).collect();
    (b.finish(), kinds)
}

/// The number of records the query returns: matches after its offset, within its limit.
pub fn count(dialect: Dialect, tenant: &str, query: &RequestQuery) -> Compiled {
    let mut b = Builder::new(dialect, tenant);
    b.push("SELECT COUNT(*) FROM (SELECT 1 AS one FROM send_requests r");
    where_clause(&mut b, query);
    let limit = b.bind(Bind::Int(query.limit.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX))));
    let offset = b.bind(Bind::Int(i64::try_from(query.offset).unwrap_or(i64::MAX)));
    b.push(&format!(" LIMIT {limit} OFFSET {offset}) q"));
    b.finish()
}

/// `COUNT(field)` of every aggregate, in order, over every match.
pub fn aggregate(dialect: Dialect, tenant: &str, query: &RequestQuery) -> Compiled {
    let mut b = Builder::new(dialect, tenant);
    let counts: Vec<String> = match &query.selection {
        Selection::Aggregates(aggregates) => aggregates.iter().map(|a| format!("COUNT({})", expr(a.field))).collect(),
        _ => vec!["COUNT(*)".into()],
    };
    b.push(&format!("SELECT {} FROM send_requests r", counts.join(", ")));
    where_clause(&mut b, query);
    b.finish()
}

/// `(tenant, start, end, limit)`.
pub const UPDATED_IDS: &str = "SELECT id FROM send_requests WHERE tenant = $1 AND updated_ms >= $2 AND updated_ms < $3 \
                               ORDER BY updated_ms LIMIT $4";
/// `(tenant, start, end, limit)`.
pub const DELETED_IDS: &str = "SELECT id, deleted_ms FROM send_request_tombstones WHERE tenant = $1 \
                               AND deleted_ms >= $2 AND deleted_ms < $3 ORDER BY deleted_ms LIMIT $4";
/// `(now)`: tombstones the trigger wrote get their deletion time.
pub const STAMP_TOMBSTONES: &str = "UPDATE send_request_tombstones SET deleted_ms = $1 WHERE deleted_ms IS NULL";
/// `(before)`: tombstones past their keeping time go.
pub const FORGET_TOMBSTONES: &str = "DELETE FROM send_request_tombstones WHERE deleted_ms < $1";

#[cfg(test)]
#[path = "soql_tests.rs"]
mod tests;
