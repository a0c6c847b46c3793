//! The shared SQL against a real SQLite database, checked with a reference evaluation
//! written here: for many queries, every page read after the previous one's last record
//! adds up to exactly the records the query matches, in its order, and the counts agree.
//! (The integration suite runs the same statements on PostgreSQL through the clients.)

use super::*;
use crate::domain::ids::{IdKind, request_name};
use crate::domain::query::{CmpOp, Condition, Field, FieldType, OrderKey, Selection, Source, Value};
use crate::domain::soql::parse_query;
use crate::store::sqlite::{SqliteSettings, SqliteStore};

const BASE: i64 = 1_767_225_600_000;

/// A request as the reference evaluation sees it.
#[derive(Debug, Clone)]
struct Model {
    id: String,
    name: String,
    definition: String,
    status: &'static str,
    consent: &'static str,
    enforce: bool,
    subscription: Option<String>,
    accepted_ms: i64,
    updated_ms: i64,
    completed_ms: Option<i64>,
    messages: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum V {
    Text(String),
    Num(f64),
    Bool(bool),
}

impl Model {
    fn value(&self, field: Field) -> Option<V> {
        let count = |state: Option<&str>| {
            Some(V::Num(self.messages.iter().filter(|m| state.is_none_or(|s| s == **m)).count() as f64))
        };
        match field {
            Field::Id => Some(V::Text(self.id.clone())),
            Field::Name => Some(V::Text(self.name.clone())),
            Field::MessageDefinition => Some(V::Text(self.definition.to_ascii_uppercase())),
            Field::RequestStatus => Some(V::Text(self.status.into())),
            Field::RequestType => Some(V::Text("SendNotificationMessages".into())),
            Field::AllowExistingSessionStatus => Some(V::Text("Any".into())),
            Field::RequestConsentType => (self.consent != "Custom").then(|| V::Text(self.consent.into())),
            Field::CommSubscriptionId => self.subscription.clone().map(V::Text),
            Field::ShouldEnforceChannelConsent => Some(V::Bool(self.enforce)),
            Field::CreatedDate => Some(V::Num(self.accepted_ms as f64)),
            Field::LastModifiedDate | Field::SystemModstamp => Some(V::Num(self.updated_ms as f64)),
            Field::CompletedDate => self.completed_ms.map(|ms| V::Num(ms as f64)),
            Field::TotalMessageCount => count(None),
            Field::PendingMessageCount => count(Some("Pending")),
            Field::InProgressMessageCount => count(Some("InProgress")),
            Field::SuccessMessageCount => count(Some("Success")),
            Field::FailedMessageCount => count(Some("Failed")),
            _ => None,
        }
    }

    /// The value as a condition compares it (picklists and text upper-cased for text values).
    fn compared(&self, field: Field, value: &Value) -> Option<V> {
        match (self.value(field)?, value) {
            (V::Text(s), Value::Text(_)) => Some(V::Text(s.to_ascii_uppercase())),
            (v, _) => Some(v),
        }
    }

    fn matches(&self, c: &Condition) -> bool {
        let lit = |v: &Value| match v {
            Value::Text(s) | Value::Id(s) => V::Text(s.clone()),
            Value::Pick(s) => V::Text((*s).into()),
            Value::Int(n) | Value::Time(n) => V::Num(*n as f64),
            Value::Real(x) => V::Num(*x),
            Value::Bool(b) => V::Bool(*b),
        };
        match c {
            Condition::Const(b) => *b,
            Condition::And(items) => items.iter().all(|c| self.matches(c)),
            Condition::Or(items) => items.iter().any(|c| self.matches(c)),
            Condition::Not(inner) => !self.matches(inner),
            Condition::IsNull { field, negated } => self.value(*field).is_none() != *negated,
            Condition::Compare { field, op, value } => {
                let Some(v) = self.compared(*field, value) else { return *op == CmpOp::Ne };
                let l = lit(value);
                match op {
                    CmpOp::Eq => v == l,
                    CmpOp::Ne => v != l,
                    CmpOp::Lt => v < l,
                    CmpOp::Le => v <= l,
                    CmpOp::Gt => v > l,
                    CmpOp::Ge => v >= l,
                }
            }
            Condition::In { field, values, negated } => {
                let found = values.iter().any(|value| self.compared(*field, value) == Some(lit(value)));
                found != *negated
            }
            Condition::Like { field, pattern } => match self.value(*field) {
                Some(V::Text(s)) => like(&s.to_ascii_uppercase(), pattern),
                _ => false,
            },
        }
    }
}

/// SQL `LIKE` with `\` escapes, for the reference evaluation.
fn like(text: &str, pattern: &str) -> bool {
    fn go(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('%', rest)) => (0..=t.len()).any(|i| go(&t[i..], rest)),
            Some(('_', rest)) => !t.is_empty() && go(&t[1..], rest),
            Some(('\\', rest)) if !rest.is_empty() => t.first() == Some(&rest[0]) && go(&t[1..], &rest[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(&t[1..], rest),
        }
    }
    go(&text.chars().collect::<Vec<_>>(), &pattern.chars().collect::<Vec<_>>())
}

fn order(a: &Model, b: &Model, keys: &[OrderKey]) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    for key in keys {
        let ordering = match (a.value(key.field), b.value(key.field)) {
            (None, None) => Equal,
            (None, Some(_)) => {
                if key.nulls_first {
                    Less
                } else {
                    Greater
                }
            }
            (Some(_), None) => {
                if key.nulls_first {
                    Greater
                } else {
                    Less
                }
            }
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(&y).unwrap_or(Equal);
                if key.descending { o.reverse() } else { o }
            }
        };
        if ordering != Equal {
            return ordering;
        }
    }
    Equal
}

async fn seeded() -> (tempfile::TempDir, SqliteStore, Vec<Model>) {
    let dir = tempfile::tempdir().unwrap();
    let settings = SqliteSettings {
        url: format!("sqlite://{}", dir.path().join("reads.db").display()),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(10),
        max_batch: 8,
    };
    let store = SqliteStore::open(&settings).await.unwrap();
    let definitions = ["Notice", "notice_b", "Order_Update", "alpha", "Zeta"];
    let statuses = ["Pending", "InProgress", "Completed"];
    let consents = ["MessagingEndUser", "CommunicationSubscription", "Custom"];
    let message_states = ["Pending", "InProgress", "Success", "Failed", "Failed", "Success"];
    let mut models = Vec::new();
    for (tenant, n) in [("t", 47), ("other", 6)] {
        for i in 0..n {
            let status = statuses[i % 3];
            let model = Model {
                id: RecordId::generate(IdKind::SendRequest).into_string(),
                name: request_name(i as i64 + 1),
                definition: definitions[i % 5].into(),
                status,
                consent: consents[i % 3],
                enforce: i % 2 == 0,
                subscription: (i % 4 == 1).then(|| RecordId::generate(IdKind::CommSubscription).into_string()),
                accepted_ms: BASE + (i as i64 % 7) * 60_000,
                updated_ms: BASE + i as i64 * 1000,
                completed_ms: (status == "Completed").then_some(BASE + (i as i64 % 5) * 3_600_000),
                messages: (0..i % 5).map(|k| message_states[(i + k) % 6]).collect(),
            };
            sqlx::query(
                "INSERT INTO send_requests (id, tenant, name, definition_name, definition_id, request_type, \
                 enforce_consent, consent_type, subscription_id, allowed_session_status, status, parameters, \
                 accepted_ms, updated_ms, completed_ms, due_ms) VALUES ($1, $2, $3, $4, 'd', 'SendNotificationMessages', \
                 $5, $6, $7, 'Any', $8, '[]', $9, $10, $11, $9)",
            )
            .bind(&model.id)
            .bind(tenant)
            .bind(&model.name)
            .bind(&model.definition)
            .bind(model.enforce)
            .bind(model.consent)
            .bind(&model.subscription)
            .bind(model.status)
            .bind(model.accepted_ms)
            .bind(model.updated_ms)
            .bind(model.completed_ms)
            .execute(&store.backend().pool)
            .await
            .unwrap();
            for (position, state) in model.messages.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO messages (identifier, tenant, request_id, position, end_user_id, platform_key, status, \
                     created_ms, updated_ms) VALUES ($1, $2, $3, $4, 'u', 'k', $5, 0, 0)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(tenant)
                .bind(&model.id)
                .bind(position as i64)
                .bind(*state)
                .execute(&store.backend().pool)
                .await
                .unwrap();
            }
            if tenant == "t" {
                models.push(model);
            }
        }
    }
    (dir, store, models)
}

/// Reads every page of `soql` with `take` records a page.
async fn read_all(store: &SqliteStore, query: &RequestQuery, take: u32) -> Vec<QueriedRequest> {
    let mut all: Vec<QueriedRequest> = Vec::new();
    loop {
        let page = PageSpec {
            after: all.last().map(|r| r.position.clone()),
            skip: if all.is_empty() { query.offset } else { 0 },
            take,
            with_messages: all.len().is_multiple_of(2),
        };
        let rows = store.query_requests("t", query, &page).await.unwrap();
        let done = rows.len() < take as usize;
        all.extend(rows);
        if done {
            return all;
        }
    }
}

#[tokio::test]
async fn every_page_resumes_after_the_last_one_and_all_pages_are_exactly_the_matches_in_order() {
    let (_dir, store, models) = seeded().await;
    let queries = [
        "SELECT Id FROM ConvMessageSendRequest",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY CompletedDate DESC NULLS LAST",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY CompletedDate",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY CompletedDate NULLS LAST, Name DESC",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY CompletedDate DESC",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY MessageDefinition, CreatedDate DESC",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY FailedMessageCount DESC, TotalMessageCount",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY RequestConsentType DESC NULLS FIRST, Id DESC",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY ShouldEnforceChannelConsent, CommSubscriptionId NULLS LAST",
        "SELECT Id FROM ConvMessageSendRequest WHERE RequestStatus = 'Completed' ORDER BY CompletedDate DESC",
        "SELECT Id FROM ConvMessageSendRequest WHERE RequestStatus IN ('pending', 'InProgress') AND FailedMessageCount > 0",
        "SELECT Id FROM ConvMessageSendRequest WHERE NOT (RequestStatus = 'Completed') OR TotalMessageCount = 0",
        "SELECT Id FROM ConvMessageSendRequest WHERE MessageDefinition = 'NOTICE' OR MessageDefinition LIKE 'order\\_%'",
        "SELECT Id FROM ConvMessageSendRequest WHERE MessageDefinition > 'N' AND MessageDefinition <= 'ZETA'",
        "SELECT Id FROM ConvMessageSendRequest WHERE RequestConsentType != 'MessagingEndUser'",
        "SELECT Id FROM ConvMessageSendRequest WHERE RequestConsentType NOT IN ('CommunicationSubscription')",
        "SELECT Id FROM ConvMessageSendRequest WHERE CompletedDate = null OR CompletedDate < 2026-01-01T02:00:00Z",
        "SELECT Id FROM ConvMessageSendRequest WHERE CompletedDate != 2026-01-01T01:00:00Z",
        "SELECT Id FROM ConvMessageSendRequest WHERE CommSubscriptionId != null AND ShouldEnforceChannelConsent = false",
        "SELECT Id FROM ConvMessageSendRequest WHERE Name LIKE 'msj-0000001%' ORDER BY Name DESC",
        "SELECT Id FROM ConvMessageSendRequest WHERE Name >= 'MSJ-00000040' ORDER BY Name",
        "SELECT Id FROM ConvMessageSendRequest WHERE CreatedDate > 2026-01-01T00:02:00Z AND SuccessMessageCount >= 1",
        "SELECT Id FROM ConvMessageSendRequest WHERE LastModifiedDate >= 2026-01-01T00:00:10Z ORDER BY SystemModstamp DESC",
        "SELECT Id FROM ConvMessageSendRequest WHERE PendingMessageCount = 1 OR InProgressMessageCount = 1",
        "SELECT Id FROM ConvMessageSendRequest WHERE TotalMessageCount < 2.5 ORDER BY Id",
        "SELECT Id FROM ConvMessageSendRequest ORDER BY Name LIMIT 20 OFFSET 5",
        "SELECT Id FROM ConvMessageSendRequest WHERE RequestStatus = 'Nope'",
    ];
    for soql in queries {
        let query = parse_query(soql, BASE).unwrap();
        let keys = query.sort_keys();
        let mut expected: Vec<&Model> = models.iter().filter(|m| m.matches(&query.condition)).collect();
        expected.sort_by(|a, b| order(a, b, &keys));
        let expected: Vec<&str> = expected
            .into_iter()
            .skip(query.offset as usize)
            .take(query.limit.map_or(usize::MAX, |l| l as usize))
            .map(|m| m.id.as_str())
            .collect();
        for take in [1, 4, 50] {
            let mut rows = read_all(&store, &query, take).await;
            rows.truncate(query.limit.map_or(usize::MAX, |l| l as usize));
            let ids: Vec<&str> = rows.iter().map(|r| r.record.id.as_str()).collect();
            assert_eq!(ids, expected, "{soql} (pages of {take})");
        }
        let count = store.count_requests("t", &query).await.unwrap();
        assert_eq!(count, expected.len() as u64, "{soql}: count");
    }
}

#[tokio::test]
async fn pages_carry_records_with_their_message_counts_or_messages_and_other_tenants_never_show() {
    let (_dir, store, models) = seeded().await;
    let query = parse_query("SELECT Id FROM ConvMessageSendRequest", BASE).unwrap();
    for with_messages in [false, true] {
        let page = PageSpec { take: 100, with_messages, ..PageSpec::default() };
        let rows = store.query_requests("t", &query, &page).await.unwrap();
        assert_eq!(rows.len(), models.len());
        for row in rows {
            let model = models.iter().find(|m| m.id == row.record.id.as_str()).expect("a record of tenant t");
            assert_eq!(row.counts.total, model.messages.len() as i64);
            assert_eq!(row.counts.failed, model.messages.iter().filter(|s| **s == "Failed").count() as i64);
            assert_eq!(row.record.messages.len(), if with_messages { model.messages.len() } else { 0 });
            assert_eq!(row.record.name, model.name);
        }
    }
}

#[tokio::test]
async fn aggregates_count_non_null_values_over_every_match() {
    let (_dir, store, models) = seeded().await;
    let query =
        parse_query("SELECT COUNT(Id), COUNT(CompletedDate), COUNT(CreatedById) FROM ConvMessageSendRequest", BASE)
            .unwrap();
    assert!(matches!(query.selection, Selection::Aggregates(_)));
    let counts = store.aggregate_requests("t", &query).await.unwrap();
    let completed = models.iter().filter(|m| m.completed_ms.is_some()).count() as i64;
    assert_eq!(counts, [models.len() as i64, completed, 0]);
}

#[tokio::test]
async fn updated_ids_and_tombstones_follow_their_windows() {
    let (_dir, store, models) = seeded().await;
    let ids = store.updated_request_ids("t", BASE + 10_000, BASE + 20_000, 100).await.unwrap();
    let expected: Vec<&str> = models
        .iter()
        .filter(|m| (BASE + 10_000..BASE + 20_000).contains(&m.updated_ms))
        .map(|m| m.id.as_str())
        .collect();
    // (Each model was modified at its own millisecond, so the order is the models'.)
    assert_eq!(ids.iter().map(RecordId::as_str).collect::<Vec<_>>(), expected);
    assert_eq!(store.updated_request_ids("t", BASE, BASE + 60_000, 3).await.unwrap().len(), 3);

    // Deleting rows leaves tombstones that become visible once stamped.
    let gone = &models[0].id;
    sqlx::query("DELETE FROM messages WHERE request_id = $1").bind(gone).execute(&store.backend().pool).await.unwrap();
    sqlx::query("DELETE FROM send_requests WHERE id = $1").bind(gone).execute(&store.backend().pool).await.unwrap();
    assert!(store.deleted_request_ids("t", 0, i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(store.record_tombstones(BASE + 5, 0).await.unwrap(), (1, 0));
    let deleted = store.deleted_request_ids("t", BASE, BASE + 10, 10).await.unwrap();
    assert_eq!(deleted, [(RecordId::from_trusted(gone.clone()), BASE + 5)]);
    assert!(store.deleted_request_ids("other", BASE, BASE + 10, 10).await.unwrap().is_empty());
    assert_eq!(store.record_tombstones(BASE + 6, BASE + 6).await.unwrap(), (0, 1));
    assert!(store.deleted_request_ids("t", 0, i64::MAX, 10).await.unwrap().is_empty());
}

#[test]
fn the_reference_like_handles_wildcards_and_escapes() {
    assert!(like("ORDER_UPDATE", r"ORDER\_%"));
    assert!(!like("ORDERXUPDATE", r"ORDER\_%"));
    assert!(like("NOTICE", "N_T%"));
    assert!(!like("NOTICE", "N_T"));
}

#[test]
fn every_filterable_field_has_a_reference_value_or_is_constant() {
    for field in Field::ALL.into_iter().filter(|f| f.is_filterable()) {
        let constant = matches!(field.info().source, Source::AlwaysNull | Source::AlwaysFalse);
        let model = Model {
            id: "x".into(),
            name: "n".into(),
            definition: "d".into(),
            status: "Pending",
            consent: "MessagingEndUser",
            enforce: true,
            subscription: Some("s".into()),
            accepted_ms: 0,
            updated_ms: 0,
            completed_ms: Some(0),
            messages: vec![],
        };
        assert!(constant || model.value(field).is_some() || field.kind() == FieldType::Reference, "{field:?}");
    }
}
