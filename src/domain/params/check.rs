//! Checking raw parameters against a component's declared parameters: every required
//! one given, none unknown or repeated, exactly one value each, of the declared type;
//! every problem reported at once, each naming its field. Pure.

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use super::text::{parse_date, parse_datetime};
use super::{ParamValue, RawItem, RawParam, RawValue, Scalar, ValueKey};
use crate::domain::Checked;
use crate::domain::ids::RecordId;
use crate::domain::model::{MessageParameter, ParameterValueType};
use crate::domain::violation::{ErrorKind, Violation, Violations, echo, quoted};

/// The field name used in violations for parameter `index` / `name`.
fn param_field(index: usize, name: &str) -> String {
    if name.is_empty() {
        format!("messagingDefinitionInputParameters[{index}]")
    } else {
        format!("messagingDefinitionInputParameters[{index}].{}", echo(name))
    }
}

/// Most items one list parameter takes (a component's `max_list_items` may lower it).
pub const MAX_LIST_ITEMS: usize = 1000;

/// Checks raw parameters against a component's declared parameters: every required one
/// given, none unknown or repeated, exactly one value each, of the declared type.
///
/// Linear in the input: more parameters than the component declares (each may be given
/// once) are refused with one violation before any per-parameter work, and names are
/// looked up in hash sets, so a request of any size costs time in proportion to its size.
pub fn check_params(declared: &[MessageParameter], raw: Vec<RawParam>) -> Result<Vec<ParamValue>, Vec<Violation>> {
    if raw.len() > declared.len() {
        return Err(vec![Violation::new(
            "messagingDefinitionInputParameters",
            ErrorKind::InvalidInput,
            format!(
                "{} parameters given; this messaging component declares {} and each may be given at most once",
                raw.len(),
                declared.len()
            ),
        )]);
    }
    let by_name: HashMap<&str, &MessageParameter> = declared.iter().map(|d| (d.name.as_str(), d)).collect();
    let mut violations = Violations::default();
    let mut checked: Vec<ParamValue> = Vec::with_capacity(raw.len());
    let mut seen: HashSet<String> = HashSet::with_capacity(raw.len());
    for (index, param) in raw.into_iter().enumerate() {
        let field = param_field(index, &param.name);
        if param.name.trim().is_empty() {
            violations.push(Violation::missing(format!("{field}.name")));
            continue;
        }
        if seen.contains(&param.name) {
            violations.push(Violation::new(
                field,
                ErrorKind::InvalidInput,
                format!("parameter {} is given more than once", echo(&param.name)),
            ));
            continue;
        }
        seen.insert(param.name.clone());
        let Some(decl) = by_name.get(param.name.as_str()).copied() else {
            let known: Vec<&str> = declared.iter().map(|d| d.name.as_str()).collect();
            violations.push(Violation::new(
                field,
                ErrorKind::InvalidInput,
                format!(
                    "unknown parameter {}; this messaging component declares: {}",
                    echo(&param.name),
                    if known.is_empty() { "no parameters".to_owned() } else { known.join(", ") }
                ),
            ));
            continue;
        };
        let mut values = param.values;
        let value = match values.len() {
            1 => values.remove(0),
            0 => {
                violations.push(Violation::new(
                    field,
                    ErrorKind::RequiredFieldMissing,
                    format!("parameter {} has no value; give exactly one value key", echo(&param.name)),
                ));
                continue;
            }
            _ => {
                let keys: Vec<&str> = values.iter().map(|v| v.key.json_key()).collect();
                violations.push(Violation::new(
                    field,
                    ErrorKind::InvalidInput,
                    format!(
                        "parameter {} has several values ({}); give exactly one",
                        echo(&param.name),
                        keys.join(", ")
                    ),
                ));
                continue;
            }
        };
        match check_value(decl, value) {
            Ok(items) => checked.push(ParamValue {
                name: param.name,
                key: ValueKey::for_type(decl.value_type, decl.is_list),
                items,
                _checked: Checked,
            }),
            Err(message) => violations.push(Violation::new(field, ErrorKind::InvalidType, message)),
        }
    }
    for decl in declared.iter().filter(|d| d.is_required) {
        if !seen.contains(&decl.name) {
            violations.push(Violation::new(
                format!("messagingDefinitionInputParameters.{}", decl.name),
                ErrorKind::RequiredFieldMissing,
                format!("Required parameter is missing: {}", decl.name),
            ));
        }
    }
    violations.into_result(checked)
}

fn check_value(decl: &MessageParameter, value: RawValue) -> Result<Vec<Scalar>, String> {
    let expected = ValueKey::for_type(decl.value_type, decl.is_list);
    if value.key != expected {
        return Err(format!(
            "parameter {} is of type {}{} and takes {}, not {}",
            decl.name,
            decl.value_type,
            if decl.is_list { " (list)" } else { "" },
            expected.json_key(),
            value.key.json_key()
        ));
    }
    let max_items = match decl.max_list_items as usize {
        0 => MAX_LIST_ITEMS,
        declared => declared.min(MAX_LIST_ITEMS),
    };
    if decl.is_list && value.items.len() > max_items {
        return Err(format!("parameter {} takes at most {max_items} items, got {}", decl.name, value.items.len()));
    }
    value
        .items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            check_item(decl.value_type, item).map_err(|why| {
                if decl.is_list {
                    format!("{}[{i}]: {why}", expected.json_key())
                } else {
                    format!("{}: {why}", expected.json_key())
                }
            })
        })
        .collect()
}

fn check_item(value_type: ParameterValueType, item: RawItem) -> Result<Scalar, String> {
    use ParameterValueType as T;
    match (value_type, item) {
        (T::Text | T::Url, RawItem::Str(s)) => Ok(Scalar::Text(s)),
        (T::RecordId | T::ImageId, RawItem::Str(s)) => {
            RecordId::parse_any(&s).map(Scalar::RecordId).map_err(|e| format!("{} is not a record id: {e}", quoted(&s)))
        }
        (T::Date, RawItem::Str(s)) => {
            parse_date(&s).map(Scalar::Date).ok_or_else(|| format!("{} is not a date (YYYY-MM-DD)", quoted(&s)))
        }
        (T::DateTime, RawItem::Str(s)) => parse_datetime(&s)
            .map(Scalar::DateTime)
            .ok_or_else(|| format!("{} is not an ISO 8601 date-time such as 2024-05-01T13:45:00.000Z", quoted(&s))),
        // Years 0000–9999 only: what RFC 3339 (and so the stored and REST forms) can write.
        (T::DateTime, RawItem::Instant { seconds, nanos }) => OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .and_then(|t| (0..1_000_000_000).contains(&nanos).then(|| t + time::Duration::nanoseconds(nanos as i64)))
            .filter(|t| (0..=9999).contains(&t.year()))
            .map(Scalar::DateTime)
            .ok_or_else(|| "timestamp out of range (years 0000 to 9999)".to_owned()),
        (T::Integer, RawItem::Number(n)) if n.is_finite() && n.fract() == 0.0 => Ok(Scalar::Number(n)),
        (T::Integer, RawItem::Number(n)) => Err(format!("{n} is not an integer")),
        (T::Double, RawItem::Number(n)) if n.is_finite() => Ok(Scalar::Number(n)),
        (T::Double, RawItem::Number(n)) => Err(format!("{n} is not a finite number")),
        (T::Boolean, RawItem::Bool(b)) => Ok(Scalar::Boolean(b)),
        (_, item) => Err(format!("expected {}, got {}", item_expectation(value_type), item_description(&item))),
    }
}

fn item_expectation(value_type: ParameterValueType) -> &'static str {
    use ParameterValueType as T;
    match value_type {
        T::Text | T::Url => "a string",
        T::RecordId | T::ImageId => "a record id string",
        T::Date => "a date string (YYYY-MM-DD)",
        T::DateTime => "a date-time",
        T::Integer | T::Double => "a number",
        T::Boolean => "true or false",
    }
}

fn item_description(item: &RawItem) -> &'static str {
    match item {
        RawItem::Str(_) => "a string",
        RawItem::Number(_) => "a number",
        RawItem::Bool(_) => "a boolean",
        RawItem::Instant { .. } => "a timestamp",
        RawItem::Other(what) => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::params::{params_from_json, params_to_json};

    fn decl(name: &str, value_type: ParameterValueType, required: bool, list: bool) -> MessageParameter {
        MessageParameter {
            name: name.into(),
            label: String::new(),
            value_type,
            is_required: required,
            is_list: list,
            max_list_items: 0,
        }
    }

    fn one(name: &str, key: ValueKey, item: RawItem) -> RawParam {
        RawParam { name: name.into(), values: vec![RawValue { key, items: vec![item] }] }
    }

    fn declared() -> Vec<MessageParameter> {
        vec![
            decl("CustomerName", ParameterValueType::Text, true, false),
            decl("Amount", ParameterValueType::Double, false, false),
            decl("Count", ParameterValueType::Integer, false, false),
            decl("DueDate", ParameterValueType::Date, false, false),
            decl("At", ParameterValueType::DateTime, false, false),
            decl("Paid", ParameterValueType::Boolean, false, false),
            decl("Case", ParameterValueType::RecordId, false, false),
            decl("Tags", ParameterValueType::Text, false, true),
        ]
    }

    fn only_violation(result: Result<Vec<ParamValue>, Vec<Violation>>) -> Violation {
        let v = result.unwrap_err();
        assert_eq!(v.len(), 1, "{v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn every_typed_value_is_accepted_when_it_matches_the_declared_type() {
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("Amount", ValueKey::Number, RawItem::Number(12.5)),
            one("Count", ValueKey::Number, RawItem::Number(3.0)),
            one("DueDate", ValueKey::Date, RawItem::Str("2024-02-29".into())),
            one("At", ValueKey::DateTime, RawItem::Str("2024-05-01T13:45:00.000Z".into())),
            one("Paid", ValueKey::Boolean, RawItem::Bool(true)),
            one("Case", ValueKey::RecordId, RawItem::Str("0019000000B98de".into())),
            RawParam {
                name: "Tags".into(),
                values: vec![RawValue {
                    key: ValueKey::TextList,
                    items: vec![RawItem::Str("a".into()), RawItem::Str("b".into())],
                }],
            },
        ];
        let checked = check_params(&declared(), raw).unwrap();
        assert_eq!(checked.len(), 8);
        assert_eq!(checked[6].items, vec![Scalar::RecordId(RecordId::parse_any("0019000000B98deAAB").unwrap())]);
    }

    #[test]
    fn a_missing_required_parameter_is_reported_as_required_field_missing_naming_it() {
        let v = only_violation(check_params(&declared(), vec![]));
        assert_eq!(v.kind, ErrorKind::RequiredFieldMissing);
        assert_eq!(v.field, "messagingDefinitionInputParameters.CustomerName");
    }

    #[test]
    fn an_unknown_parameter_is_invalid_input_naming_it_and_listing_the_known_ones() {
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("Nope", ValueKey::Text, RawItem::Str("x".into())),
        ];
        let v = only_violation(check_params(&declared(), raw));
        assert_eq!(v.kind, ErrorKind::InvalidInput);
        assert_eq!(v.field, "messagingDefinitionInputParameters[1].Nope");
        assert!(v.message.contains("CustomerName"), "{}", v.message);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_invalid_type_naming_the_expected_key() {
        let raw = vec![one("CustomerName", ValueKey::Number, RawItem::Number(1.0))];
        let v = only_violation(check_params(&declared(), raw));
        assert_eq!(v.kind, ErrorKind::InvalidType);
        assert!(v.message.contains("textValue"), "{}", v.message);
    }

    #[test]
    fn a_json_value_of_the_wrong_kind_under_the_right_key_is_invalid_type() {
        let raw = vec![one("CustomerName", ValueKey::Text, RawItem::Number(1.0))];
        assert_eq!(only_violation(check_params(&declared(), raw)).kind, ErrorKind::InvalidType);
    }

    #[test]
    fn bad_dates_and_date_times_are_invalid_type() {
        for bad in ["2023-02-29", "2024-13-01", "01/02/2024", "2024-1-1", ""] {
            let raw = vec![
                one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
                one("DueDate", ValueKey::Date, RawItem::Str(bad.into())),
            ];
            assert_eq!(only_violation(check_params(&declared(), raw)).kind, ErrorKind::InvalidType, "{bad}");
        }
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("At", ValueKey::DateTime, RawItem::Str("yesterday".into())),
        ];
        assert_eq!(only_violation(check_params(&declared(), raw)).kind, ErrorKind::InvalidType);
    }

    #[test]
    fn an_integer_parameter_rejects_fractions() {
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("Count", ValueKey::Number, RawItem::Number(1.5)),
        ];
        assert_eq!(only_violation(check_params(&declared(), raw)).kind, ErrorKind::InvalidType);
    }

    #[test]
    fn a_malformed_record_id_value_is_invalid_type_naming_the_parameter() {
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("Case", ValueKey::RecordId, RawItem::Str("123".into())),
        ];
        let v = only_violation(check_params(&declared(), raw));
        assert_eq!(v.field, "messagingDefinitionInputParameters[1].Case");
    }

    #[test]
    fn a_list_parameter_takes_the_list_key_and_a_scalar_parameter_the_singular_one() {
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("Tags", ValueKey::Text, RawItem::Str("a".into())),
        ];
        let v = only_violation(check_params(&declared(), raw));
        assert!(v.message.contains("textValues"), "{}", v.message);
    }

    #[test]
    fn a_parameter_with_zero_or_several_values_is_rejected() {
        let zero = vec![RawParam { name: "CustomerName".into(), values: vec![] }];
        assert_eq!(only_violation(check_params(&declared(), zero)).kind, ErrorKind::RequiredFieldMissing);
        let two = vec![RawParam {
            name: "CustomerName".into(),
            values: vec![
                RawValue { key: ValueKey::Text, items: vec![RawItem::Str("a".into())] },
                RawValue { key: ValueKey::Number, items: vec![RawItem::Number(1.0)] },
            ],
        }];
        let v = only_violation(check_params(&declared(), two));
        assert_eq!(v.kind, ErrorKind::InvalidInput);
        assert!(v.message.contains("textValue, numberValue"), "{}", v.message);
    }

    #[test]
    fn a_parameter_given_twice_or_without_a_name_is_rejected() {
        let raw = vec![
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("CustomerName", ValueKey::Text, RawItem::Str("Bob".into())),
            one("", ValueKey::Text, RawItem::Str("x".into())),
        ];
        let v = check_params(&declared(), raw).unwrap_err();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].field, "messagingDefinitionInputParameters[1].CustomerName");
        assert_eq!(v[1].field, "messagingDefinitionInputParameters[2].name");
    }

    #[test]
    fn more_parameters_than_declared_are_refused_at_once_with_one_violation() {
        let raw: Vec<RawParam> =
            (0..50_000).map(|i| one(&format!("P{i}"), ValueKey::Text, RawItem::Str("x".into()))).collect();
        let v = only_violation(check_params(&declared(), raw));
        assert_eq!((v.field.as_str(), v.kind), ("messagingDefinitionInputParameters", ErrorKind::InvalidInput));
        assert!(v.message.contains("50000 parameters given") && v.message.contains("declares 8"), "{}", v.message);
    }

    #[test]
    fn a_list_takes_at_most_max_list_items_items_even_when_the_component_sets_no_limit() {
        let list = |n: usize| RawParam {
            name: "Tags".into(),
            values: vec![RawValue { key: ValueKey::TextList, items: vec![RawItem::Str("t".into()); n] }],
        };
        let name = || one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into()));
        assert!(check_params(&declared(), vec![name(), list(MAX_LIST_ITEMS)]).is_ok());
        let v = only_violation(check_params(&declared(), vec![name(), list(MAX_LIST_ITEMS + 1)]));
        assert_eq!(v.kind, ErrorKind::InvalidType);
        assert!(v.message.contains("at most 1000 items"), "{}", v.message);
    }

    #[test]
    fn a_timestamp_before_year_0_or_after_9999_is_refused_not_stored_unreadably() {
        let at = |seconds: i64| {
            let raw = vec![
                one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
                one("At", ValueKey::DateTime, RawItem::Instant { seconds, nanos: 0 }),
            ];
            check_params(&declared(), raw)
        };
        assert_eq!(only_violation(at(-62_167_219_201)).kind, ErrorKind::InvalidType, "1 s before 0000-01-01");
        assert!(at(-62_167_219_200).is_ok(), "0000-01-01T00:00:00Z");
        assert_eq!(only_violation(at(253_402_300_800)).kind, ErrorKind::InvalidType, "10000-01-01");
    }

    #[test]
    fn every_double_reads_back_from_its_stored_form_exactly() {
        // Found by the proto fuzz target: without serde_json's float_roundtrip this one
        // read back as 12.50000000000182.
        for n in [12.500000000001819, 0.1 + 0.2, f64::MAX, f64::MIN_POSITIVE, -1e-300] {
            let raw = vec![
                one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
                one("Amount", ValueKey::Number, RawItem::Number(n)),
            ];
            let checked = check_params(&declared(), raw).unwrap();
            let back = params_from_json(&params_to_json(&checked));
            let amount = back.iter().find(|p| p.name == "Amount").unwrap();
            assert_eq!(amount.items, vec![Scalar::Number(n)], "{n:e}");
        }
    }

    #[test]
    fn checked_parameters_round_trip_through_their_json_form_in_name_order() {
        let raw = vec![
            one("Paid", ValueKey::Boolean, RawItem::Bool(true)),
            one("CustomerName", ValueKey::Text, RawItem::Str("Ada".into())),
            one("At", ValueKey::DateTime, RawItem::Instant { seconds: 1_714_571_100, nanos: 0 }),
        ];
        let checked = check_params(&declared(), raw).unwrap();
        let text = params_to_json(&checked);
        assert_eq!(
            text,
            r#"[{"At":null,"dateTimeValue":"2024-05-01T13:45:00.000Z","name":"At"},{"name":"CustomerName","textValue":"Ada"},{"booleanValue":true,"name":"Paid"}]"#
                .replace(r#""At":null,"#, "")
        );
        let mut back = params_from_json(&text);
        back.sort_by(|a, b| a.name.cmp(&b.name));
        let mut expected = checked;
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back, expected);
    }
}
