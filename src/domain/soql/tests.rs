//! Every construct the SOQL subset serves, and every refusal with its code, token and
//! position.

use super::*;
use crate::domain::ids::{IdKind, RecordId};
use crate::domain::query::{Aggregate, CmpOp, Condition, Field, OrderKey, Selection, Value};

/// 2026-01-14T15:30:00Z, a Wednesday.
const NOW: i64 = 1_768_404_600_000;
const JAN_14: i64 = 1_768_348_800_000;
const DAY: i64 = 86_400_000;

fn ok(text: &str) -> RequestQuery {
    parse_query(text, NOW).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn refused(text: &str) -> SoqlError {
    match parse_query(text, NOW) {
        Ok(q) => panic!("{text} was accepted: {q:?}"),
        Err(e) => e,
    }
}

/// The condition of `SELECT Id FROM ConvMessageSendRequest WHERE <condition>`.
fn cond(condition: &str) -> Condition {
    ok(&format!("SELECT Id FROM ConvMessageSendRequest WHERE {condition}")).condition
}

fn cmp(field: Field, op: CmpOp, value: Value) -> Condition {
    Condition::Compare { field, op, value }
}

fn assert_refused(text: &str, code: Code, token: &str, column: u32) {
    let e = refused(text);
    assert_eq!((e.code, e.token.as_str(), e.pos.column), (code, token, column), "{text}: {e}");
}

// ---- select lists ---------------------------------------------------------------

#[test]
fn fields_are_selected_in_the_order_written_case_insensitively_with_object_and_alias_prefixes() {
    let q = ok("select name, ID, requeststatus from convmessagesendrequest");
    assert_eq!(q.selection, Selection::Records(vec![Field::Name, Field::Id, Field::RequestStatus]));
    let q = ok("SELECT r.Name, ConvMessageSendRequest.Id FROM ConvMessageSendRequest r WHERE r.Name = 'MSJ-1'");
    assert_eq!(q.selection, Selection::Records(vec![Field::Name, Field::Id]));
    assert_eq!(q.limit, None);
    assert_eq!(q.offset, 0);
}

#[test]
fn every_field_of_the_record_can_be_selected_and_fields_standard_selects_them_all() {
    let all: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
    let q = ok(&format!("SELECT {} FROM ConvMessageSendRequest", all.join(", ")));
    assert_eq!(q.selection, Selection::Records(Field::ALL.to_vec()));
    assert_eq!(ok("SELECT FIELDS(STANDARD) FROM ConvMessageSendRequest").selection, q.selection);
    let q = ok("SELECT Name, FIELDS(ALL) FROM ConvMessageSendRequest LIMIT 200");
    let Selection::Records(fields) = q.selection else { panic!("records") };
    assert_eq!((fields[0], fields.len()), (Field::Name, Field::ALL.len()));
}

#[test]
fn count_counts_rows_and_count_of_a_field_is_an_aggregate_named_expr_n_or_its_alias() {
    assert_eq!(ok("SELECT COUNT() FROM ConvMessageSendRequest").selection, Selection::Count);
    let q = ok("SELECT COUNT(Id), COUNT(CompletedDate) done FROM ConvMessageSendRequest");
    assert_eq!(
        q.selection,
        Selection::Aggregates(vec![
            Aggregate { alias: "expr0".into(), field: Field::Id },
            Aggregate { alias: "done".into(), field: Field::CompletedDate },
        ])
    );
}

#[test]
fn select_list_refusals_name_their_token() {
    use Code::*;
    let q = "ConvMessageSendRequest";
    assert_refused(&format!("SELECT Colour FROM {q}"), InvalidField, "Colour", 8);
    assert_refused(&format!("SELECT Id, Name, Id FROM {q}"), MalformedQuery, "Id", 18);
    assert_refused(&format!("SELECT Owner.Name FROM {q}"), InvalidField, "Owner.Name", 8);
    assert_refused(&format!("SELECT Id, (SELECT Id FROM Messages) FROM {q}"), MalformedQuery, "(", 12);
    assert_refused(&format!("SELECT MAX(CreatedDate) FROM {q}"), MalformedQuery, "MAX", 8);
    assert_refused(&format!("SELECT toLabel(RequestStatus) FROM {q}"), MalformedQuery, "toLabel", 8);
    assert_refused(&format!("SELECT TYPEOF What WHEN x THEN Id END FROM {q}"), MalformedQuery, "TYPEOF", 8);
    assert_refused(&format!("SELECT COUNT(), Id FROM {q}"), MalformedQuery, "COUNT", 8);
    assert_refused(&format!("SELECT Name, COUNT(Id) FROM {q}"), MalformedQuery, "Name", 8);
    assert_refused(&format!("SELECT COUNT(Id) n, COUNT(Name) n FROM {q}"), MalformedQuery, "n", 33);
    assert_refused(
        &format!("SELECT COUNT(FailedMessageIdentifiers) FROM {q}"),
        InvalidField,
        "FailedMessageIdentifiers",
        14,
    );
    assert_refused(&format!("SELECT FIELDS(ALL) FROM {q}"), MalformedQuery, "FIELDS", 8);
    assert_refused(&format!("SELECT FIELDS(ALL) FROM {q} LIMIT 201"), MalformedQuery, "FIELDS", 8);
    assert_refused(&format!("SELECT FIELDS(CUSTOM) FROM {q} LIMIT 10"), MalformedQuery, "FIELDS", 8);
    assert_refused(&format!("SELECT FIELDS(SOME) FROM {q}"), MalformedQuery, "SOME", 15);
    assert_refused(&format!("SELECT Name alias FROM {q}"), MalformedQuery, "alias", 13);
    assert_refused(&format!("SELECT FROM {q}"), MalformedQuery, q, 13);
    assert_refused(&format!("SELECT Id, FROM {q}"), MalformedQuery, q, 17);
}

// ---- FROM --------------------------------------------------------------------------

#[test]
fn another_object_is_invalid_type_and_a_relationship_from_is_malformed() {
    assert_refused("SELECT Id FROM Account", Code::InvalidType, "Account", 16);
    let e = refused("SELECT Id FROM Account");
    assert_eq!(e.detail, "sObject type 'Account' is not supported.");
    assert_refused("SELECT Id FROM ConvMessageSendRequest, Contact", Code::MalformedQuery, ",", 38);
    assert_refused("SELECT Id FROM Contact.Account", Code::MalformedQuery, ".", 23);
    assert_refused("SELECT Id ConvMessageSendRequest", Code::MalformedQuery, "ConvMessageSendRequest", 11);
    assert_refused("DELETE FROM ConvMessageSendRequest", Code::MalformedQuery, "DELETE", 1);
    assert_refused("", Code::MalformedQuery, "", 1);
}

// ---- WHERE: operators and values ------------------------------------------------

#[test]
fn text_compares_case_insensitively_as_upper_case_with_every_operator() {
    assert_eq!(cond("Name = 'msj-00000001'"), cmp(Field::Name, CmpOp::Eq, Value::Text("MSJ-00000001".into())));
    assert_eq!(
        cond("MessageDefinition != 'Notice'"),
        cmp(Field::MessageDefinition, CmpOp::Ne, Value::Text("NOTICE".into()))
    );
    for (op, cmp_op) in [("<", CmpOp::Lt), ("<=", CmpOp::Le), (">", CmpOp::Gt), (">=", CmpOp::Ge)] {
        assert_eq!(cond(&format!("Name {op} 'MSJ-5'")), cmp(Field::Name, cmp_op, Value::Text("MSJ-5".into())));
    }
}

#[test]
fn picklist_equality_uses_the_canonical_value_and_an_unknown_value_matches_nothing() {
    assert_eq!(cond("RequestStatus = 'completed'"), cmp(Field::RequestStatus, CmpOp::Eq, Value::Pick("Completed")));
    assert_eq!(cond("RequestStatus = 'Done'"), Condition::Const(false));
    assert_eq!(cond("RequestStatus != 'Done'"), Condition::Const(true));
    assert_eq!(cond("RequestStatus > 'c'"), cmp(Field::RequestStatus, CmpOp::Gt, Value::Text("C".into())));
    assert_eq!(
        cond("RequestStatus IN ('Pending', 'inprogress', 'Nope')"),
        Condition::Or(vec![
            Condition::In {
                field: Field::RequestStatus,
                values: vec![Value::Pick("Pending"), Value::Pick("InProgress")],
                negated: false
            },
            Condition::Const(false),
        ])
    );
}

#[test]
fn ids_take_15_or_18_characters_and_compare_as_18() {
    let id = RecordId::generate(IdKind::SendRequest);
    let short = &id.as_str()[..15];
    assert_eq!(cond(&format!("Id = '{short}'")), cmp(Field::Id, CmpOp::Eq, Value::Id(id.as_str().into())));
    assert_eq!(cond(&format!("Id > '{id}'")), cmp(Field::Id, CmpOp::Gt, Value::Id(id.as_str().into())));
    assert_eq!(
        cond(&format!("CommSubscriptionId = '{id}'")),
        cmp(Field::CommSubscriptionId, CmpOp::Eq, Value::Id(id.as_str().into()))
    );
    let e = refused("SELECT Id FROM ConvMessageSendRequest WHERE Id = 'abc'");
    assert_eq!((e.code, e.token.as_str(), e.pos.column), (Code::InvalidQueryFilterOperator, "'abc'", 50));
    assert_eq!(e.detail, "invalid ID field: abc");
}

#[test]
fn counts_take_whole_and_decimal_numbers() {
    assert_eq!(cond("FailedMessageCount > 0"), cmp(Field::FailedMessageCount, CmpOp::Gt, Value::Int(0)));
    assert_eq!(cond("TotalMessageCount <= 2.5"), cmp(Field::TotalMessageCount, CmpOp::Le, Value::Real(2.5)));
    assert_eq!(cond("PendingMessageCount = -1"), cmp(Field::PendingMessageCount, CmpOp::Eq, Value::Int(-1)));
}

#[test]
fn booleans_take_true_false_and_null_meaning_false() {
    let f = Field::ShouldEnforceChannelConsent;
    assert_eq!(cond("ShouldEnforceChannelConsent = TRUE"), cmp(f, CmpOp::Eq, Value::Bool(true)));
    assert_eq!(cond("ShouldEnforceChannelConsent != false"), cmp(f, CmpOp::Ne, Value::Bool(false)));
    assert_eq!(cond("ShouldEnforceChannelConsent = null"), cmp(f, CmpOp::Eq, Value::Bool(false)));
    assert_eq!(cond("ShouldEnforceChannelConsent != null"), cmp(f, CmpOp::Eq, Value::Bool(true)));
    assert_eq!(cond("IsDeleted = false"), Condition::Const(true));
    assert_eq!(cond("IsDeleted = true"), Condition::Const(false));
}

#[test]
fn null_comparisons_test_for_null_and_fields_convmsg_never_sets_are_constants() {
    assert_eq!(cond("CompletedDate = null"), Condition::IsNull { field: Field::CompletedDate, negated: false });
    assert_eq!(cond("CompletedDate != NULL"), Condition::IsNull { field: Field::CompletedDate, negated: true });
    assert_eq!(cond("CreatedById = null"), Condition::Const(true));
    let id = RecordId::generate(IdKind::SendRequest);
    assert_eq!(cond(&format!("LastModifiedById = '{id}'")), Condition::Const(false));
    assert_eq!(cond(&format!("CreatedById != '{id}'")), Condition::Const(true));
    assert_eq!(cond("SessionLongevityPreference = 'EndSession'"), Condition::Const(false));
    assert_eq!(cond("SessionLongevityPreference LIKE 'End%'"), Condition::Const(false));
}

#[test]
fn date_times_parse_in_every_offset_form() {
    let at = 1_769_846_400_000;
    for text in
        ["2026-01-31T08:00:00Z", "2026-01-31T09:00:00+01:00", "2026-01-31T00:00:00-0800", "2026-01-31T08:00:00.000Z"]
    {
        assert_eq!(
            cond(&format!("CreatedDate >= {text}")),
            cmp(Field::CreatedDate, CmpOp::Ge, Value::Time(at)),
            "{text}"
        );
    }
}

#[test]
fn date_literals_are_ranges_evaluated_in_utc_at_the_query_s_moment() {
    let at = |op, ms| cmp(Field::CreatedDate, op, Value::Time(ms));
    let today = Condition::And(vec![at(CmpOp::Ge, JAN_14), at(CmpOp::Lt, JAN_14 + DAY)]);
    assert_eq!(cond("CreatedDate = TODAY"), today);
    assert_eq!(cond("CreatedDate != today"), Condition::Not(Box::new(today)));
    assert_eq!(cond("CreatedDate < TODAY"), at(CmpOp::Lt, JAN_14));
    assert_eq!(cond("CreatedDate <= TODAY"), at(CmpOp::Lt, JAN_14 + DAY));
    assert_eq!(cond("CreatedDate > TODAY"), at(CmpOp::Ge, JAN_14 + DAY));
    assert_eq!(cond("CreatedDate >= TODAY"), at(CmpOp::Ge, JAN_14));
    assert_eq!(
        cond("CreatedDate = LAST_N_DAYS:7"),
        Condition::And(vec![at(CmpOp::Ge, JAN_14 - 7 * DAY), at(CmpOp::Lt, JAN_14 + DAY)])
    );
    let completed = |op, ms| cmp(Field::CompletedDate, op, Value::Time(ms));
    assert_eq!(
        cond("CompletedDate = YESTERDAY"),
        Condition::And(vec![completed(CmpOp::Ge, JAN_14 - DAY), completed(CmpOp::Lt, JAN_14)])
    );
    assert_eq!(
        cond("LastModifiedDate > THIS_MONTH"),
        cmp(Field::LastModifiedDate, CmpOp::Ge, Value::Time(1_769_904_000_000))
    );
}

#[test]
fn in_and_not_in_take_lists_of_values_nulls_and_date_literals() {
    let names = cond("Name IN ('MSJ-1', 'msj-2')");
    assert_eq!(
        names,
        Condition::In {
            field: Field::Name,
            values: vec![Value::Text("MSJ-1".into()), Value::Text("MSJ-2".into())],
            negated: false
        }
    );
    assert_eq!(cond("Name NOT IN ('MSJ-1', 'msj-2')"), Condition::Not(Box::new(names)));
    assert_eq!(
        cond("CompletedDate IN (null, 2026-01-31T08:00:00Z)"),
        Condition::Or(vec![
            Condition::In { field: Field::CompletedDate, values: vec![Value::Time(1_769_846_400_000)], negated: false },
            Condition::IsNull { field: Field::CompletedDate, negated: false },
        ])
    );
    let Condition::Or(parts) = cond("CreatedDate IN (TODAY, YESTERDAY)") else { panic!("or") };
    assert_eq!(parts.len(), 2);
}

#[test]
fn like_keeps_wildcards_and_escaped_wildcards_upper_cased() {
    assert_eq!(cond(r"Name LIKE 'msj-0000%'"), Condition::Like { field: Field::Name, pattern: "MSJ-0000%".into() });
    assert_eq!(
        cond(r"MessageDefinition LIKE 'order\_%'"),
        Condition::Like { field: Field::MessageDefinition, pattern: r"ORDER\_%".into() }
    );
    assert_eq!(cond("RequestStatus LIKE 'c%'"), Condition::Like { field: Field::RequestStatus, pattern: "C%".into() });
}

#[test]
fn and_or_not_and_parentheses_nest() {
    let c = cond("NOT (FailedMessageCount > 0 OR Name = 'A') AND (RequestStatus = 'Pending')");
    let or = Condition::Or(vec![
        cmp(Field::FailedMessageCount, CmpOp::Gt, Value::Int(0)),
        cmp(Field::Name, CmpOp::Eq, Value::Text("A".into())),
    ]);
    assert_eq!(
        c,
        Condition::And(vec![
            Condition::Not(Box::new(or)),
            cmp(Field::RequestStatus, CmpOp::Eq, Value::Pick("Pending")),
        ])
    );
    assert_eq!(
        cond("NOT NOT Name = 'A'"),
        Condition::Not(Box::new(Condition::Not(Box::new(cmp(Field::Name, CmpOp::Eq, Value::Text("A".into()))))))
    );
}

#[test]
fn where_refusals_name_their_token_and_position() {
    use Code::*;
    let q = |c: &str| format!("SELECT Id FROM ConvMessageSendRequest WHERE {c}");
    // Column of the condition's first character.
    let at = |offset: u32| 45 + offset;
    assert_refused(&q("Name = 'a' AND Id != null OR Name = 'b'"), MalformedQuery, "OR", at(26));
    assert_refused(&q("Name = 'a' OR Name = 'b' AND Id = null"), MalformedQuery, "AND", at(25));
    assert_refused(&q("Colour = 'red'"), InvalidField, "Colour", at(0));
    assert_refused(&q("FailedMessageIdentifiers = 'x'"), InvalidField, "FailedMessageIdentifiers", at(0));
    assert_refused(&q("MessageDefinitionParameters LIKE '%x%'"), InvalidField, "MessageDefinitionParameters", at(0));
    assert_refused(&q("TotalMessageCount = '2'"), InvalidField, "'2'", at(20));
    assert_refused(&q("Name = 5"), InvalidField, "5", at(7));
    assert_refused(&q("CreatedDate > 2026-01-01"), InvalidField, "2026-01-01", at(14));
    assert_refused(&q("CreatedDate > '2026-01-01T00:00:00Z'"), InvalidField, "'2026-01-01T00:00:00Z'", at(14));
    assert_refused(&q("ShouldEnforceChannelConsent = 'true'"), InvalidField, "'true'", at(30));
    assert_refused(&q("ShouldEnforceChannelConsent > false"), InvalidQueryFilterOperator, "false", at(28));
    assert_refused(&q("CreatedDate < null"), InvalidQueryFilterOperator, "null", at(12));
    assert_refused(&q("TotalMessageCount LIKE '1%'"), InvalidQueryFilterOperator, "LIKE", at(18));
    assert_refused(&q("Id LIKE '1sr%'"), InvalidQueryFilterOperator, "LIKE", at(3));
    assert_refused(&q("Name LIKE 5"), InvalidField, "5", at(10));
    assert_refused(&q("Name INCLUDES ('a')"), InvalidQueryFilterOperator, "INCLUDES", at(5));
    assert_refused(&q("Id IN (SELECT Id FROM ConvMessageSendRequest)"), MalformedQuery, "SELECT", at(7));
    assert_refused(&q("Name IN ()"), MalformedQuery, ")", at(9));
    assert_refused(&q("Name IN ('a' 'b')"), MalformedQuery, "'b'", at(13));
    assert_refused(&q("Name = :name"), MalformedQuery, ":", at(7));
    assert_refused(&q("CreatedDate = LAST_N_DAYS"), MalformedQuery, "LAST_N_DAYS", at(14));
    assert_refused(&q("CreatedDate = LAST_N_DAYS:x"), MalformedQuery, "x", at(26));
    assert_refused(&q("CreatedDate = LAST_N_DAYS:100001"), MalformedQuery, "100001", at(26));
    assert_refused(&q("CreatedDate = TODAY:3"), MalformedQuery, "3", at(20));
    assert_refused(&q("CreatedDate = SOMEDAY"), MalformedQuery, "SOMEDAY", at(14));
    assert_refused(&q("Name = TODAY"), MalformedQuery, "TODAY", at(7));
    assert_refused(&q("CALENDAR_YEAR(CreatedDate) = 2026"), MalformedQuery, "CALENDAR_YEAR", at(0));
    assert_refused(&q("Name <> 'a'"), MalformedQuery, ">", at(6));
    assert_refused(&q("Name = 'a' Name = 'b'"), MalformedQuery, "Name", at(11));
    assert_refused(&q("(Name = 'a'"), MalformedQuery, "", at(11));
    assert_refused(&q("Name NOT LIKE 'a'"), MalformedQuery, "LIKE", at(9));
    assert_refused(&q("r.Name = 'a'"), InvalidField, "r.Name", at(0));
}

// ---- ORDER BY, LIMIT, OFFSET -----------------------------------------------------------

#[test]
fn order_by_takes_directions_and_null_placement_defaulting_to_nulls_first() {
    let q = ok(
        "SELECT Id FROM ConvMessageSendRequest ORDER BY CompletedDate DESC NULLS LAST, Name ASC, FailedMessageCount DESC, CreatedDate NULLS FIRST",
    );
    assert_eq!(
        q.order,
        [
            OrderKey { field: Field::CompletedDate, descending: true, nulls_first: false },
            OrderKey { field: Field::Name, descending: false, nulls_first: true },
            OrderKey { field: Field::FailedMessageCount, descending: true, nulls_first: true },
            OrderKey { field: Field::CreatedDate, descending: false, nulls_first: true },
        ]
    );
}

#[test]
fn limit_and_offset_up_to_2000_are_kept() {
    let q = ok("SELECT Id FROM ConvMessageSendRequest WHERE Name != null ORDER BY Name LIMIT 10 OFFSET 2000");
    assert_eq!((q.limit, q.offset), (Some(10), 2000));
    assert_eq!(ok("SELECT Id FROM ConvMessageSendRequest OFFSET 5").offset, 5);
    assert_eq!(ok("SELECT COUNT() FROM ConvMessageSendRequest LIMIT 3").limit, Some(3));
}

#[test]
fn order_limit_and_offset_refusals_name_their_token() {
    use Code::*;
    let q = "SELECT Id FROM ConvMessageSendRequest";
    assert_refused(&format!("{q} OFFSET 2001"), NumberOutsideValidRange, "2001", 46);
    assert_refused(&format!("{q} LIMIT -1"), MalformedQuery, "-1", 45);
    assert_refused(&format!("{q} LIMIT 1.5"), MalformedQuery, "1.5", 45);
    assert_refused(&format!("{q} LIMIT ten"), MalformedQuery, "ten", 45);
    assert_refused(&format!("{q} OFFSET 1 LIMIT 1"), MalformedQuery, "LIMIT", 48);
    assert_refused(&format!("{q} ORDER BY FailedMessageErrorReasons"), InvalidField, "FailedMessageErrorReasons", 48);
    assert_refused(&format!("{q} ORDER BY Name UP"), MalformedQuery, "UP", 53);
    assert_refused(&format!("{q} ORDER BY Name NULLS MIDDLE"), MalformedQuery, "MIDDLE", 59);
    assert_refused(&format!("{q} ORDER Name"), MalformedQuery, "Name", 45);
    assert_refused("SELECT COUNT() FROM ConvMessageSendRequest ORDER BY Name", MalformedQuery, "Name", 53);
    assert_refused("SELECT COUNT(Id) FROM ConvMessageSendRequest ORDER BY Name", MalformedQuery, "Name", 55);
    assert_refused(&format!("{q} LIMIT 5 trailing"), MalformedQuery, "trailing", 47);
}

#[test]
fn clauses_outside_the_subset_are_refused_naming_the_keyword() {
    let q = "SELECT Id FROM ConvMessageSendRequest";
    for (tail, token) in [
        ("GROUP BY RequestStatus", "GROUP"),
        ("WHERE Name = 'a' GROUP BY Name", "GROUP"),
        ("HAVING COUNT(Id) > 1", "HAVING"),
        ("FOR UPDATE", "FOR"),
        ("LIMIT 1 FOR VIEW", "FOR"),
        ("WITH SECURITY_ENFORCED", "WITH"),
        ("USING SCOPE mine", "USING"),
        ("UPDATE TRACKING", "UPDATE"),
        ("ALL ROWS", "ALL"),
        ("ORDER BY Name FOR REFERENCE", "FOR"),
    ] {
        let e = refused(&format!("{q} {tail}"));
        assert_eq!((e.code, e.token.as_str()), (Code::MalformedQuery, token), "{tail}: {e}");
    }
}

#[test]
fn a_query_comparing_with_more_than_ten_thousand_values_is_refused_at_the_first_one_too_many() {
    let values: Vec<String> = (0..MAX_VALUES_FOR_TEST).map(|i| i.to_string()).collect();
    let ok_query = format!("SELECT Id FROM ConvMessageSendRequest WHERE TotalMessageCount IN ({})", values.join(","));
    assert!(parse_query(&ok_query, NOW).is_ok());
    let e = refused(&format!(
        "SELECT Id FROM ConvMessageSendRequest WHERE TotalMessageCount IN ({}) OR FailedMessageCount = 7",
        values.join(",")
    ));
    assert_eq!((e.code, e.token.as_str()), (Code::MalformedQuery, "7"));
}

const MAX_VALUES_FOR_TEST: usize = super::resolve::MAX_VALUES;

#[test]
fn a_query_longer_than_salesforce_s_limit_is_refused() {
    let long = format!("SELECT Id FROM ConvMessageSendRequest WHERE Name = '{}'", "a".repeat(MAX_QUERY_CHARS));
    assert_eq!(refused(&long).code, Code::MalformedQuery);
}

#[test]
fn errors_on_later_rows_name_that_row_and_its_column() {
    let e = refused("SELECT Id\nFROM ConvMessageSendRequest\nWHERE Colour = 1");
    assert_eq!((e.pos.row, e.pos.column, e.code), (3, 7, Code::InvalidField));
    assert!(
        e.message("SELECT Id\nFROM ConvMessageSendRequest\nWHERE Colour = 1")
            .starts_with("WHERE Colour = 1\n      ^\n")
    );
}
