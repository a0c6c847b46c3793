//! A query over the caller's `ConvMessageSendRequest` records, as both doors build it:
//! the REST bridge from SOQL text (`domain::soql`), gRPC's `ListRequests` from its typed
//! filter. It is already checked and typed — fields exist and may be filtered or sorted,
//! values have the field's type, date literals are evaluated to instants — so a store
//! only translates it, never judges it. Pure: no SQL here.
//!
//! Semantics the store must keep (they are Salesforce's):
//! - text compares ASCII-case-insensitively: `Text` values arrive upper-cased and are
//!   compared with the field's upper-cased value; `Pick` values are canonical picklist
//!   values compared exactly; `Id` values are 18-character ids compared exactly;
//! - `Ne` and negated `In` are true where the field is null (SOQL's `!=`), every other
//!   comparison is false there, and no condition is ever "unknown": `Not` is plain
//!   boolean negation;
//! - sorting puts nulls first unless told otherwise, and text sorts case-insensitively.

pub mod dates;
pub mod fields;

pub use fields::{Field, FieldType, Source};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A typed, non-null value to compare a field with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// For string and picklist fields under range comparisons and for `MessageDefinition`
    /// and `Name`: upper-cased ASCII.
    Text(String),
    /// A canonical picklist value, for equality.
    Pick(&'static str),
    /// An 18-character record id.
    Id(String),
    Int(i64),
    Real(f64),
    Bool(bool),
    /// An instant, Unix milliseconds (UTC).
    Time(i64),
}

/// A condition on a record. See the module documentation for null handling.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Const(bool),
    Compare {
        field: Field,
        op: CmpOp,
        value: Value,
    },
    IsNull {
        field: Field,
        negated: bool,
    },
    In {
        field: Field,
        values: Vec<Value>,
        negated: bool,
    },
    /// A SQL `LIKE` pattern (`%`, `_`, `\` escapes), upper-cased, on a text field.
    Like {
        field: Field,
        pattern: String,
    },
    Not(Box<Condition>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

impl Condition {
    pub fn and(conditions: Vec<Condition>) -> Condition {
        match conditions.len() {
            0 => Condition::Const(true),
            1 => conditions.into_iter().next().unwrap_or(Condition::Const(true)),
            _ => Condition::And(conditions),
        }
    }

    pub fn or(conditions: Vec<Condition>) -> Condition {
        match conditions.len() {
            0 => Condition::Const(false),
            1 => conditions.into_iter().next().unwrap_or(Condition::Const(false)),
            _ => Condition::Or(conditions),
        }
    }
}

/// One sort key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderKey {
    pub field: Field,
    pub descending: bool,
    pub nulls_first: bool,
}

impl OrderKey {
    pub fn asc(field: Field) -> OrderKey {
        OrderKey { field, descending: false, nulls_first: true }
    }

    pub fn desc(field: Field) -> OrderKey {
        OrderKey { field, descending: true, nulls_first: true }
    }
}

/// `COUNT(field)` under an alias (`expr0`, … unless given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub alias: String,
    pub field: Field,
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Records with these fields, in this order (no duplicates).
    Records(Vec<Field>),
    /// `COUNT()`: only the number of matching records.
    Count,
    /// `COUNT(field), …`: one aggregate row.
    Aggregates(Vec<Aggregate>),
}

impl Selection {
    /// Whether rendering the records needs their messages (the comma-joined lists).
    pub fn needs_messages(&self) -> bool {
        matches!(self, Selection::Records(fields) if fields.iter().any(|f| f.needs_messages()))
    }
}

/// A checked query over the caller's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestQuery {
    pub selection: Selection,
    pub condition: Condition,
    /// As given; see `sort_keys` for the order actually used.
    pub order: Vec<OrderKey>,
    pub limit: Option<u64>,
    pub offset: u64,
}

/// The value of one sort key on one record: where a page ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SortValue {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
}

impl RequestQuery {
    /// Every record with these fields: `SELECT <fields> FROM ConvMessageSendRequest`.
    pub fn records(fields: Vec<Field>) -> RequestQuery {
        RequestQuery {
            selection: Selection::Records(fields),
            condition: Condition::Const(true),
            order: Vec::new(),
            limit: None,
            offset: 0,
        }
    }

    /// The keys records are sorted by: those asked for (constant fields dropped), then
    /// `Id` — in the direction of the last key, so one index can serve both — so that the
    /// order is total and pages can resume after a record. Without an order, creation
    /// order: `CreatedDate, Id`.
    pub fn sort_keys(&self) -> Vec<OrderKey> {
        let mut keys: Vec<OrderKey> = self
            .order
            .iter()
            .copied()
            .filter(|k| matches!(k.field.info().source, Source::Stored | Source::MessageCount(_)))
            .collect();
        if keys.is_empty() {
            keys.push(OrderKey::asc(Field::CreatedDate));
        }
        if !keys.iter().any(|k| k.field == Field::Id) {
            let descending = keys.last().is_some_and(|k| k.descending);
            keys.push(OrderKey { field: Field::Id, descending, nulls_first: true });
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_sorted_by_creation_then_id_unless_asked_and_id_always_breaks_ties() {
        let mut q = RequestQuery::records(vec![Field::Id]);
        assert_eq!(q.sort_keys(), [OrderKey::asc(Field::CreatedDate), OrderKey::asc(Field::Id)]);
        q.order = vec![OrderKey::desc(Field::FailedMessageCount), OrderKey::asc(Field::IsDeleted)];
        assert_eq!(q.sort_keys(), [OrderKey::desc(Field::FailedMessageCount), OrderKey::desc(Field::Id)]);
        q.order = vec![OrderKey::desc(Field::CompletedDate), OrderKey::asc(Field::Name)];
        assert_eq!(q.sort_keys()[2], OrderKey::asc(Field::Id));
        q.order = vec![OrderKey::desc(Field::Id)];
        assert_eq!(q.sort_keys(), [OrderKey::desc(Field::Id)]);
    }

    #[test]
    fn one_condition_is_itself_and_none_is_a_constant() {
        let c = Condition::IsNull { field: Field::CompletedDate, negated: false };
        assert_eq!(Condition::and(vec![c.clone()]), c);
        assert_eq!(Condition::and(vec![]), Condition::Const(true));
        assert_eq!(Condition::or(vec![]), Condition::Const(false));
    }

    #[test]
    fn only_message_lists_need_the_messages() {
        assert!(!Selection::Records(vec![Field::Id, Field::FailedMessageCount]).needs_messages());
        assert!(Selection::Records(vec![Field::FailedMeuPlatformKeys]).needs_messages());
        assert!(!Selection::Count.needs_messages());
    }
}
