//! The syntax tree → a checked `RequestQuery`: the object must be
//! `ConvMessageSendRequest`, every name one of its fields (optionally prefixed by the
//! object's name or alias), filters and sorts only on fields that allow them, values of
//! the field's type, date literals evaluated at the query's moment. Salesforce's rules
//! and error codes throughout; every refusal names its token and position.

use super::error::{Code, SoqlError};
use super::lexer::Pos;
use super::parser::{Expr, FieldsKind, Literal, OrderItem, Path, Query, SelectItem, Value as Lit};
use crate::domain::ids::RecordId;
use crate::domain::query::dates::{self, DateLiteral, Lookup};
use crate::domain::query::{
    Aggregate, CmpOp, Condition, Field, FieldType, OrderKey, RequestQuery, Selection, Source, Value,
};

/// The object this bridge serves.
pub const OBJECT: &str = "ConvMessageSendRequest";
/// Salesforce's largest `OFFSET`.
pub const MAX_OFFSET: u64 = 2000;
/// The largest `LIMIT` with `FIELDS(ALL)` (Salesforce's rule for unbounded field lists).
pub const FIELDS_ALL_LIMIT: u64 = 200;
/// Most values one query may compare with (each becomes a bound parameter; databases
/// cap those, SQLite near 32,766).
pub const MAX_VALUES: usize = 10_000;

/// Refuses a condition comparing with more than `MAX_VALUES` values, naming the first
/// value past the limit.
fn check_value_count(expr: &Expr, seen: &mut usize) -> Result<(), SoqlError> {
    let values: &[Lit] = match expr {
        Expr::And(items) | Expr::Or(items) => {
            return items.iter().try_for_each(|e| check_value_count(e, seen));
        }
        Expr::Not(inner) => return check_value_count(inner, seen),
        Expr::Compare { value, .. } | Expr::Like { value, .. } => std::slice::from_ref(value),
        Expr::In { values, .. } => values,
    };
    for value in values {
        *seen += 1;
        if *seen > MAX_VALUES {
            return Err(SoqlError::detailed(
                Code::MalformedQuery,
                value.pos,
                value.text.clone(),
                format!("a query may compare with at most {MAX_VALUES} values: '{}'", value.text),
            ));
        }
    }
    Ok(())
}

pub fn resolve(query: Query, now_ms: i64) -> Result<RequestQuery, SoqlError> {
    if !query.object.value.eq_ignore_ascii_case(OBJECT) {
        return Err(SoqlError::detailed(
            Code::InvalidType,
            query.object.pos,
            query.object.text.clone(),
            format!("sObject type '{}' is not supported.", query.object.value),
        ));
    }
    if let Some(expr) = &query.condition {
        check_value_count(expr, &mut 0)?;
    }
    let names = Names { alias: query.alias.as_ref().map(|a| a.value.clone()) };
    let selection = selection(&names, &query)?;
    let condition = match &query.condition {
        Some(expr) => condition(&names, expr, now_ms)?,
        None => Condition::Const(true),
    };
    let order = order(&names, &selection, &query.order)?;
    if let Some(offset) = &query.offset
        && offset.value > MAX_OFFSET
    {
        return Err(SoqlError::detailed(
            Code::NumberOutsideValidRange,
            offset.pos,
            offset.text.clone(),
            format!("Maximum SOQL offset allowed is {MAX_OFFSET}: '{}'", offset.text),
        ));
    }
    Ok(RequestQuery {
        selection,
        condition,
        order,
        limit: query.limit.map(|l| l.value),
        offset: query.offset.map_or(0, |o| o.value),
    })
}

/// How field paths may be prefixed.
struct Names {
    alias: Option<String>,
}

impl Names {
    fn field(&self, path: &Path) -> Result<Field, SoqlError> {
        let name = match path.parts.as_slice() {
            [only] => only,
            [prefix, name]
                if prefix.value.eq_ignore_ascii_case(OBJECT)
                    || self.alias.as_ref().is_some_and(|a| a.eq_ignore_ascii_case(&prefix.value)) =>
            {
                name
            }
            [relationship, ..] => {
                return Err(SoqlError::detailed(
                    Code::InvalidField,
                    relationship.pos,
                    path.text(),
                    format!(
                        "Didn't understand relationship '{}' in field path. ConvMessageSendRequest has no \
                         relationship fields.",
                        relationship.value
                    ),
                ));
            }
            [] => unreachable!("a path has at least one part"),
        };
        Field::parse(&name.value).ok_or_else(|| {
            SoqlError::detailed(
                Code::InvalidField,
                name.pos,
                name.text.clone(),
                format!("No such column '{}' on entity '{OBJECT}'.", name.value),
            )
        })
    }

    fn filterable(&self, path: &Path) -> Result<Field, SoqlError> {
        let field = self.field(path)?;
        if !field.is_filterable() {
            return Err(SoqlError::detailed(
                Code::InvalidField,
                path.pos(),
                path.text(),
                format!("field '{}' can not be filtered in a query call", field.name()),
            ));
        }
        Ok(field)
    }
}

fn selection(names: &Names, query: &Query) -> Result<Selection, SoqlError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut aggregates: Vec<Aggregate> = Vec::new();
    let mut count_rows = None;
    let mut first_field: Option<(Pos, String)> = None;
    for item in &query.select {
        match item {
            SelectItem::Field(path) => {
                let field = names.field(path)?;
                if fields.contains(&field) {
                    return Err(SoqlError::at(
                        Code::MalformedQuery,
                        path.pos(),
                        path.text(),
                        "duplicate field selected",
                    ));
                }
                first_field.get_or_insert((path.pos(), path.text()));
                fields.push(field);
            }
            SelectItem::Fields { pos, kind } => {
                if *kind == FieldsKind::Custom {
                    return Err(SoqlError::detailed(
                        Code::MalformedQuery,
                        *pos,
                        "FIELDS",
                        "FIELDS(CUSTOM): ConvMessageSendRequest has no custom fields",
                    ));
                }
                if *kind == FieldsKind::All && query.limit.as_ref().is_none_or(|l| l.value > FIELDS_ALL_LIMIT) {
                    return Err(SoqlError::detailed(
                        Code::MalformedQuery,
                        *pos,
                        "FIELDS",
                        format!("The SOQL FIELDS function must have a LIMIT of at most {FIELDS_ALL_LIMIT}"),
                    ));
                }
                first_field.get_or_insert((*pos, "FIELDS".into()));
                fields.extend(Field::ALL.into_iter().filter(|f| !fields.contains(f)).collect::<Vec<_>>());
            }
            SelectItem::Count { pos, field: None, .. } => {
                count_rows = Some(*pos);
            }
            SelectItem::Count { field: Some(path), alias, .. } => {
                let field = names.field(path)?;
                if !field.is_filterable() {
                    return Err(SoqlError::detailed(
                        Code::InvalidField,
                        path.pos(),
                        path.text(),
                        format!("field '{}' does not support aggregate operator COUNT", field.name()),
                    ));
                }
                let alias = match alias {
                    Some(a) if aggregates.iter().any(|g| g.alias.eq_ignore_ascii_case(&a.value)) => {
                        return Err(SoqlError::at(Code::MalformedQuery, a.pos, a.text.clone(), "duplicate alias"));
                    }
                    Some(a) => a.value.clone(),
                    None => format!("expr{}", aggregates.len()),
                };
                aggregates.push(Aggregate { alias, field });
            }
        }
    }
    if let Some(pos) = count_rows {
        if query.select.len() > 1 {
            return Err(SoqlError::detailed(
                Code::MalformedQuery,
                pos,
                "COUNT",
                "COUNT() must be the only element in the SELECT list",
            ));
        }
        return Ok(Selection::Count);
    }
    if !aggregates.is_empty() {
        if let Some((pos, text)) = first_field {
            return Err(SoqlError::detailed(
                Code::MalformedQuery,
                pos,
                text.clone(),
                format!("Field must be grouped or aggregated: {text}"),
            ));
        }
        return Ok(Selection::Aggregates(aggregates));
    }
    Ok(Selection::Records(fields))
}

fn order(names: &Names, selection: &Selection, items: &[OrderItem]) -> Result<Vec<OrderKey>, SoqlError> {
    let mut keys = Vec::with_capacity(items.len());
    for item in items {
        let pos = item.field.pos();
        match selection {
            Selection::Count => {
                return Err(SoqlError::detailed(
                    Code::MalformedQuery,
                    pos,
                    item.field.text(),
                    "ORDER BY is not allowed with COUNT()",
                ));
            }
            Selection::Aggregates(_) => {
                return Err(SoqlError::detailed(
                    Code::MalformedQuery,
                    pos,
                    item.field.text(),
                    format!("Ordered field must be grouped or aggregated: {}", item.field.text()),
                ));
            }
            Selection::Records(_) => {}
        }
        let field = names.field(&item.field)?;
        if !field.is_sortable() {
            return Err(SoqlError::detailed(
                Code::InvalidField,
                pos,
                item.field.text(),
                format!("field '{}' can not be sorted in a query call", field.name()),
            ));
        }
        keys.push(OrderKey { field, descending: item.descending, nulls_first: item.nulls_first.unwrap_or(true) });
    }
    Ok(keys)
}

fn condition(names: &Names, expr: &Expr, now_ms: i64) -> Result<Condition, SoqlError> {
    let all = |items: &[Expr]| items.iter().map(|e| condition(names, e, now_ms)).collect::<Result<Vec<_>, _>>();
    match expr {
        Expr::And(items) => Ok(Condition::And(all(items)?)),
        Expr::Or(items) => Ok(Condition::Or(all(items)?)),
        Expr::Not(inner) => Ok(Condition::Not(Box::new(condition(names, inner, now_ms)?))),
        Expr::Compare { field, op, value } => {
            let field = names.filterable(field)?;
            compare(field, op.value, op.pos, value, now_ms)
        }
        Expr::In { field, op_pos, negated, values } => {
            let field = names.filterable(field)?;
            let equal =
                values.iter().map(|v| compare(field, CmpOp::Eq, *op_pos, v, now_ms)).collect::<Result<Vec<_>, _>>()?;
            let any = merge_in(field, equal);
            Ok(if *negated { Condition::Not(Box::new(any)) } else { any })
        }
        Expr::Like { field, op_pos, value } => {
            let field = names.filterable(field)?;
            like(field, *op_pos, value)
        }
    }
}

/// `field IN (a, b, …)` as one condition: the equalities' values in one list where
/// they are plain values, nulls and date ranges alongside.
fn merge_in(field: Field, equalities: Vec<Condition>) -> Condition {
    let mut values = Vec::new();
    let mut others = Vec::new();
    for c in equalities {
        match c {
            Condition::Compare { op: CmpOp::Eq, value, .. } => values.push(value),
            other => others.push(other),
        }
    }
    if !values.is_empty() {
        others.insert(0, Condition::In { field, values, negated: false });
    }
    Condition::or(others)
}

fn type_error(field: Field, value: &Lit) -> SoqlError {
    let kind = field.kind();
    let quotes = match kind {
        FieldType::Id | FieldType::Reference | FieldType::String | FieldType::Picklist | FieldType::TextArea => {
            "should be enclosed in quotes"
        }
        _ => "should not be enclosed in quotes",
    };
    SoqlError::detailed(
        Code::InvalidField,
        value.pos,
        value.text.clone(),
        format!(
            "value of filter criterion for field '{}' must be of type {} and {quotes}: {}",
            field.name(),
            kind.soql_name(),
            value.text
        ),
    )
}

fn operator_error(field: Field, pos: Pos, token: &str, why: &str) -> SoqlError {
    SoqlError::detailed(Code::InvalidQueryFilterOperator, pos, token, format!("{why} on field '{}'", field.name()))
}

/// One comparison, typed for its field.
fn compare(field: Field, op: CmpOp, op_pos: Pos, value: &Lit, now_ms: i64) -> Result<Condition, SoqlError> {
    let kind = field.kind();
    if value.literal == Literal::Null {
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(operator_error(field, op_pos, &value.text, "null can only be compared with = and !="));
        }
        return Ok(null_test(field, op == CmpOp::Ne));
    }
    if kind == FieldType::Boolean {
        let Literal::Bool(b) = value.literal else { return Err(type_error(field, value)) };
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(operator_error(field, op_pos, &value.text, "only = and != apply to a boolean"));
        }
        return Ok(boolean(field, op, b));
    }
    let typed = match (kind, &value.literal) {
        (FieldType::Id | FieldType::Reference, Literal::Str { value: raw, .. }) => {
            let id = RecordId::parse_any(raw.trim()).map_err(|_| {
                SoqlError::detailed(
                    Code::InvalidQueryFilterOperator,
                    value.pos,
                    value.text.clone(),
                    format!("invalid ID field: {raw}"),
                )
            })?;
            Value::Id(id.into_string())
        }
        (FieldType::String, Literal::Str { value: raw, .. }) => Value::Text(raw.to_ascii_uppercase()),
        (FieldType::Picklist, Literal::Str { value: raw, .. }) => match op {
            CmpOp::Eq | CmpOp::Ne => match field.picklist_value(raw) {
                Some(canonical) => Value::Pick(canonical),
                // Not a value of the picklist: no record has it.
                None => return Ok(Condition::Const(op == CmpOp::Ne)),
            },
            _ => Value::Text(raw.to_ascii_uppercase()),
        },
        (FieldType::Int, Literal::Number(text)) => match text.parse::<i64>() {
            Ok(n) => Value::Int(n),
            Err(_) => Value::Real(text.parse::<f64>().map_err(|_| type_error(field, value))?),
        },
        (FieldType::DateTime, Literal::DateTime(text)) => Value::Time(dates::parse_instant(text).ok_or_else(|| {
            SoqlError::at(Code::MalformedQuery, value.pos, value.text.clone(), "not a valid date-time")
        })?),
        (FieldType::DateTime, Literal::Relative { name, n }) => {
            let (start, end) = date_literal(name, n.as_ref(), value)?.range(now_ms);
            return Ok(range(field, op, start, end));
        }
        (_, Literal::Relative { .. }) => {
            return Err(SoqlError::at(Code::MalformedQuery, value.pos, value.text.clone(), "unexpected token"));
        }
        _ => return Err(type_error(field, value)),
    };
    Ok(constant_or(field, Condition::Compare { field, op, value: typed }))
}

/// A date literal from its name and `:n`.
fn date_literal(name: &str, n: Option<&super::parser::Spanned<String>>, value: &Lit) -> Result<DateLiteral, SoqlError> {
    match (dates::lookup(name), n) {
        (Lookup::Plain(literal), None) => Ok(literal),
        (Lookup::NeedsN(unit, make), Some(n)) => {
            let count = n.value.parse::<u32>().ok().filter(|c| *c <= dates::MAX_N).ok_or_else(|| {
                SoqlError::detailed(
                    Code::MalformedQuery,
                    n.pos,
                    n.text.clone(),
                    format!("{name}:n needs a whole number n from 0 to {}: '{}'", dates::MAX_N, n.text),
                )
            })?;
            Ok(DateLiteral { unit, span: make(count) })
        }
        (Lookup::NeedsN(..), None) => Err(SoqlError::detailed(
            Code::MalformedQuery,
            value.pos,
            value.text.clone(),
            format!("the date literal {name} needs a number: {name}:n"),
        )),
        (Lookup::Plain(_), Some(n)) => Err(SoqlError::detailed(
            Code::MalformedQuery,
            n.pos,
            n.text.clone(),
            format!("the date literal {name} takes no number: '{}'", n.text),
        )),
        (Lookup::NotALiteral, _) => {
            Err(SoqlError::at(Code::MalformedQuery, value.pos, value.text.clone(), "unexpected token"))
        }
    }
}

/// A comparison with a date literal's `[start, end)`.
fn range(field: Field, op: CmpOp, start: i64, end: i64) -> Condition {
    let at = |op, ms| Condition::Compare { field, op, value: Value::Time(ms) };
    let inside = Condition::And(vec![at(CmpOp::Ge, start), at(CmpOp::Lt, end)]);
    match op {
        CmpOp::Eq => inside,
        CmpOp::Ne => Condition::Not(Box::new(inside)),
        CmpOp::Lt => at(CmpOp::Lt, start),
        CmpOp::Le => at(CmpOp::Lt, end),
        CmpOp::Gt => at(CmpOp::Ge, end),
        CmpOp::Ge => at(CmpOp::Ge, start),
    }
}

/// `field = null` / `field != null`.
fn null_test(field: Field, negated: bool) -> Condition {
    match field.info().source {
        Source::AlwaysNull => Condition::Const(!negated),
        // A boolean is never null; SOQL reads `= null` on it as `= false`.
        Source::AlwaysFalse => Condition::Const(!negated),
        _ if field.kind() == FieldType::Boolean => boolean(field, CmpOp::Eq, negated),
        _ => Condition::IsNull { field, negated },
    }
}

fn boolean(field: Field, op: CmpOp, value: bool) -> Condition {
    if field.info().source == Source::AlwaysFalse {
        return Condition::Const((op == CmpOp::Eq) != value);
    }
    Condition::Compare { field, op, value: Value::Bool(value) }
}

/// A typed comparison, or its constant outcome on a field that is always null.
fn constant_or(field: Field, comparison: Condition) -> Condition {
    match (field.info().source, &comparison) {
        (Source::AlwaysNull, Condition::Compare { op, .. }) => Condition::Const(*op == CmpOp::Ne),
        (Source::AlwaysNull, _) => Condition::Const(false),
        _ => comparison,
    }
}

fn like(field: Field, op_pos: Pos, value: &Lit) -> Result<Condition, SoqlError> {
    if !matches!(field.kind(), FieldType::String | FieldType::Picklist) {
        return Err(operator_error(field, op_pos, "LIKE", "LIKE applies only to text"));
    }
    let Literal::Str { like: pattern, .. } = &value.literal else { return Err(type_error(field, value)) };
    if field.info().source == Source::AlwaysNull {
        return Ok(Condition::Const(false));
    }
    Ok(Condition::Like { field, pattern: pattern.to_ascii_uppercase() })
}
