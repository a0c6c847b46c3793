//! Typed parameter values (`RichMessaging.MessageDefinitionInputParameter`). Values arrive
//! raw from either door (`RawParam`), are checked against the component's declared
//! parameters (`check`), and come out as `ParamValue`s whose canonical form is
//! Salesforce's JSON (`{"name":…,"textValue":…}`), written and read back here; `text`
//! holds the date, date-time and number formats both sides use. No I/O.

mod check;
mod text;

use serde_json::{Map, Value, json};
use time::{Date, OffsetDateTime};

use super::Checked;
use super::ids::RecordId;
use super::model::ParameterValueType;

pub use check::{MAX_LIST_ITEMS, check_params};
pub use text::{format_date, format_datetime, format_number, parse_date, parse_datetime};

/// The value keys of a parameter object, singular and list forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKey {
    Text,
    RecordId,
    Date,
    DateTime,
    Number,
    Boolean,
    TextList,
    RecordIdList,
    DateList,
    DateTimeList,
    NumberList,
    BooleanList,
}

impl ValueKey {
    pub const ALL: [ValueKey; 12] = [
        ValueKey::Text,
        ValueKey::RecordId,
        ValueKey::Date,
        ValueKey::DateTime,
        ValueKey::Number,
        ValueKey::Boolean,
        ValueKey::TextList,
        ValueKey::RecordIdList,
        ValueKey::DateList,
        ValueKey::DateTimeList,
        ValueKey::NumberList,
        ValueKey::BooleanList,
    ];

    /// The JSON key (`textValue`, `textValues`, …).
    pub fn json_key(self) -> &'static str {
        match self {
            ValueKey::Text => "textValue",
            ValueKey::RecordId => "recordIdValue",
            ValueKey::Date => "dateValue",
            ValueKey::DateTime => "dateTimeValue",
            ValueKey::Number => "numberValue",
            ValueKey::Boolean => "booleanValue",
            ValueKey::TextList => "textValues",
            ValueKey::RecordIdList => "recordIdValues",
            ValueKey::DateList => "dateValues",
            ValueKey::DateTimeList => "dateTimeValues",
            ValueKey::NumberList => "numberValues",
            ValueKey::BooleanList => "booleanValues",
        }
    }

    pub fn from_json_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.json_key() == key)
    }

    pub fn is_list(self) -> bool {
        matches!(
            self,
            ValueKey::TextList
                | ValueKey::RecordIdList
                | ValueKey::DateList
                | ValueKey::DateTimeList
                | ValueKey::NumberList
                | ValueKey::BooleanList
        )
    }

    /// The key a parameter of `value_type` takes, in singular or list form.
    pub fn for_type(value_type: ParameterValueType, list: bool) -> Self {
        use ParameterValueType as T;
        match (value_type, list) {
            (T::Text | T::Url, false) => ValueKey::Text,
            (T::Text | T::Url, true) => ValueKey::TextList,
            (T::RecordId | T::ImageId, false) => ValueKey::RecordId,
            (T::RecordId | T::ImageId, true) => ValueKey::RecordIdList,
            (T::Date, false) => ValueKey::Date,
            (T::Date, true) => ValueKey::DateList,
            (T::DateTime, false) => ValueKey::DateTime,
            (T::DateTime, true) => ValueKey::DateTimeList,
            (T::Integer | T::Double, false) => ValueKey::Number,
            (T::Integer | T::Double, true) => ValueKey::NumberList,
            (T::Boolean, false) => ValueKey::Boolean,
            (T::Boolean, true) => ValueKey::BooleanList,
        }
    }
}

/// One raw item as it arrived: JSON/XML give strings, numbers and booleans; gRPC gives
/// typed values and timestamps.
#[derive(Debug, Clone, PartialEq)]
pub enum RawItem {
    Str(String),
    Number(f64),
    Bool(bool),
    /// A date-time already typed by the door (protobuf Timestamp).
    Instant {
        seconds: i64,
        nanos: i32,
    },
    /// Anything else (null, object, nested array): always a type error.
    Other(&'static str),
}

/// One value key with its items (one item for a singular key).
#[derive(Debug, Clone, PartialEq)]
pub struct RawValue {
    pub key: ValueKey,
    pub items: Vec<RawItem>,
}

/// A parameter object as given: a name and every value key that was set.
#[derive(Debug, Clone, PartialEq)]
pub struct RawParam {
    pub name: String,
    pub values: Vec<RawValue>,
}

/// A checked scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Text(String),
    RecordId(RecordId),
    Date(Date),
    DateTime(OffsetDateTime),
    Number(f64),
    Boolean(bool),
}

impl Scalar {
    fn to_json(&self) -> Value {
        match self {
            Scalar::Text(s) => json!(s),
            Scalar::RecordId(id) => json!(id.as_str()),
            Scalar::Date(d) => json!(format_date(*d)),
            Scalar::DateTime(t) => json!(format_datetime(*t)),
            Scalar::Number(n) => json!(n),
            Scalar::Boolean(b) => json!(b),
        }
    }

    /// The text a `{!Param}` merge field shows: ISO dates, UTC ISO date-times, numbers
    /// without trailing zeros, `true`/`false`.
    pub fn render(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::RecordId(id) => id.to_string(),
            Scalar::Date(d) => format_date(*d),
            Scalar::DateTime(t) => format_datetime(*t),
            Scalar::Number(n) => format_number(*n),
            Scalar::Boolean(b) => b.to_string(),
        }
    }
}

/// A checked parameter value: made only by `check_params`, or read back from the text
/// `params_to_json` stored (the private field keeps anything else from making one).
#[derive(Debug, Clone, PartialEq)]
pub struct ParamValue {
    pub name: String,
    pub key: ValueKey,
    pub items: Vec<Scalar>,
    _checked: Checked,
}

impl ParamValue {
    /// The Salesforce JSON object `{"name":…,"<key>":…}`.
    pub fn to_json(&self) -> Value {
        let value = if self.key.is_list() {
            Value::Array(self.items.iter().map(Scalar::to_json).collect())
        } else {
            self.items.first().map(Scalar::to_json).unwrap_or(Value::Null)
        };
        let mut obj = Map::new();
        obj.insert("name".into(), json!(self.name));
        obj.insert(self.key.json_key().into(), value);
        Value::Object(obj)
    }
}

/// Serialises checked parameters as the Salesforce JSON array, sorted by name so the
/// same parameters in another order give the same text.
pub fn params_to_json(params: &[ParamValue]) -> String {
    let mut sorted: Vec<&ParamValue> = params.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    Value::Array(sorted.into_iter().map(ParamValue::to_json).collect()).to_string()
}

/// Reads back parameters stored by `params_to_json` (trusted: written by us).
pub fn params_from_json(text: &str) -> Vec<ParamValue> {
    let Ok(Value::Array(objects)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    objects
        .into_iter()
        .filter_map(|obj| {
            let Value::Object(map) = obj else { return None };
            let name = map.get("name")?.as_str()?.to_owned();
            let (key, value) = map.iter().find_map(|(k, v)| ValueKey::from_json_key(k).map(|key| (key, v)))?;
            let scalars: Vec<&Value> = match value {
                Value::Array(items) if key.is_list() => items.iter().collect(),
                other => vec![other],
            };
            let items = scalars.into_iter().filter_map(|v| stored_scalar(key, v)).collect();
            Some(ParamValue { name, key, items, _checked: Checked })
        })
        .collect()
}

fn stored_scalar(key: ValueKey, v: &Value) -> Option<Scalar> {
    use ValueKey as K;
    Some(match key {
        K::Text | K::TextList => Scalar::Text(v.as_str()?.to_owned()),
        K::RecordId | K::RecordIdList => Scalar::RecordId(RecordId::from_trusted(v.as_str()?.to_owned())),
        K::Date | K::DateList => Scalar::Date(parse_date(v.as_str()?)?),
        K::DateTime | K::DateTimeList => Scalar::DateTime(parse_datetime(v.as_str()?)?),
        K::Number | K::NumberList => Scalar::Number(v.as_f64()?),
        K::Boolean | K::BooleanList => Scalar::Boolean(v.as_bool()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_uses_iso_dates_utc_date_times_short_numbers_and_lowercase_booleans() {
        assert_eq!(Scalar::Number(12.5).render(), "12.5");
        assert_eq!(Scalar::Number(3.0).render(), "3");
        assert_eq!(Scalar::Boolean(false).render(), "false");
        assert_eq!(Scalar::Date(parse_date("2024-02-29").unwrap()).render(), "2024-02-29");
        let t = parse_datetime("2024-05-01T15:45:00+02:00").unwrap();
        assert_eq!(Scalar::DateTime(t).render(), "2024-05-01T13:45:00.000Z");
        assert!(parse_datetime("2024-05-01T13:45:00.000+0000").is_some());
    }
}
