//! The statements' text and parameters. Their behaviour is checked against a real
//! database in `sqlite/reads_tests.rs` and, on PostgreSQL, by the integration suite.

use super::*;
use crate::domain::soql::parse_query;

fn query(soql: &str) -> RequestQuery {
    parse_query(soql, 1_767_225_600_000).unwrap()
}

#[test]
fn the_default_page_is_tenant_scoped_in_creation_order_with_id_breaking_ties() {
    let (sql, kinds) =
        select_page(Dialect::Sqlite, "acme", &query("SELECT Id FROM ConvMessageSendRequest"), None, 0, 2001);
    assert_eq!(
        sql.text,
        "SELECT r.*, r.accepted_ms AS k0, r.id AS k1 FROM send_requests r WHERE r.tenant = $1 AND (TRUE) \
         ORDER BY r.accepted_ms ASC, r.id ASC LIMIT $2 OFFSET $3"
    );
    assert_eq!(sql.binds, [Bind::Text("acme".into()), Bind::Int(2001), Bind::Int(0)]);
    assert_eq!(kinds, [KeyKind::Int, KeyKind::Text]);
}

#[test]
fn postgres_orders_and_range_compares_text_byte_wise() {
    let q =
        query("SELECT Id FROM ConvMessageSendRequest WHERE Name > 'MSJ-1' AND MessageDefinition = 'a' ORDER BY Name");
    let (sql, _) = select_page(Dialect::Postgres, "t", &q, None, 0, 10);
    assert!(sql.text.contains(r#"r.name COLLATE "C" > $2"#), "{}", sql.text);
    assert!(sql.text.contains(r#"UPPER(r.definition_name) COLLATE "C" = $3"#), "{}", sql.text);
    assert!(sql.text.contains(r#"ORDER BY r.name COLLATE "C" ASC, r.id COLLATE "C" ASC"#), "{}", sql.text);
    let (sqlite, _) = select_page(Dialect::Sqlite, "t", &q, None, 0, 10);
    assert!(!sqlite.text.contains("COLLATE"), "{}", sqlite.text);
}

#[test]
fn nullable_columns_are_guarded_so_not_and_not_equal_include_nulls() {
    let q = query(
        "SELECT Id FROM ConvMessageSendRequest WHERE CompletedDate < 2026-01-01T00:00:00Z OR RequestConsentType != 'MessagingEndUser'",
    );
    let (sql, _) = select_page(Dialect::Sqlite, "t", &q, None, 0, 10);
    assert!(sql.text.contains("(r.completed_ms IS NOT NULL AND r.completed_ms < $2)"), "{}", sql.text);
    assert!(
        sql.text
            .contains("NOT (NULLIF(r.consent_type, 'Custom') IS NOT NULL AND NULLIF(r.consent_type, 'Custom') = $3)"),
        "{}",
        sql.text
    );
    assert_eq!(sql.binds[1..3], [Bind::Int(1_767_225_600_000), Bind::Text("MessagingEndUser".into())]);
}

#[test]
fn counts_are_correlated_counts_of_the_request_s_messages() {
    let q = query("SELECT Id FROM ConvMessageSendRequest WHERE FailedMessageCount > 0 ORDER BY TotalMessageCount DESC");
    let (sql, kinds) = select_page(Dialect::Sqlite, "t", &q, None, 0, 10);
    assert!(
        sql.text.contains("(SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id AND m.status = 'Failed') > $2")
    );
    assert!(sql.text.contains("ORDER BY (SELECT COUNT(*) FROM messages m WHERE m.request_id = r.id) DESC"));
    assert_eq!(kinds, [KeyKind::Int, KeyKind::Text]);
}

#[test]
fn a_page_after_a_position_resumes_past_it_with_a_bound_on_the_first_key() {
    let q = query("SELECT Id FROM ConvMessageSendRequest");
    let position = [SortValue::Int(5), SortValue::Text("1srX".into())];
    let (sql, _) = select_page(Dialect::Sqlite, "t", &q, Some(&position), 0, 10);
    assert!(
        sql.text.contains("AND ((r.accepted_ms > $2 OR (r.accepted_ms = $2 AND r.id > $3))) AND r.accepted_ms >= $4"),
        "{}",
        sql.text
    );
    let q = query("SELECT Id FROM ConvMessageSendRequest ORDER BY CompletedDate DESC NULLS LAST");
    let position = [SortValue::Null, SortValue::Text("1srX".into())];
    let (sql, _) = select_page(Dialect::Sqlite, "t", &q, Some(&position), 0, 10);
    assert!(sql.text.contains("(FALSE OR (r.completed_ms IS NULL AND r.id < $2))"), "{}", sql.text);
}

#[test]
fn like_escapes_with_a_backslash_and_compares_upper_case() {
    let q = query(r"SELECT Id FROM ConvMessageSendRequest WHERE MessageDefinition LIKE 'a\_%'");
    let (sql, _) = select_page(Dialect::Postgres, "t", &q, None, 0, 10);
    assert!(sql.text.contains(r"UPPER(r.definition_name) LIKE $2 ESCAPE '\'"), "{}", sql.text);
    assert_eq!(sql.binds[1], Bind::Text(r"A\_%".into()));
}

#[test]
fn the_count_applies_the_query_s_offset_and_limit_and_aggregates_count_expressions() {
    let q = query("SELECT COUNT() FROM ConvMessageSendRequest WHERE RequestStatus = 'Pending' LIMIT 7 OFFSET 2");
    let sql = count(Dialect::Sqlite, "t", &q);
    assert_eq!(
        sql.text,
        "SELECT COUNT(*) FROM (SELECT 1 AS one FROM send_requests r WHERE r.tenant = $1 AND (r.status = $2) LIMIT $3 OFFSET $4) q"
    );
    assert_eq!(sql.binds[1..], [Bind::Text("Pending".into()), Bind::Int(7), Bind::Int(2)]);
    let q = query("SELECT COUNT(Id), COUNT(CompletedDate) FROM ConvMessageSendRequest");
    assert_eq!(
        aggregate(Dialect::Sqlite, "t", &q).text,
        "SELECT COUNT(r.id), COUNT(r.completed_ms) FROM send_requests r WHERE r.tenant = $1 AND (TRUE)"
    );
}
