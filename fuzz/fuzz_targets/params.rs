//! Parameter typing and rendering, from bytes read as parameters: each record (split on
//! 0xFF) is a declared name (first byte), a value key (second byte) and items (split on
//! 0xFE) read as text, numbers or booleans as the key wants — so the fuzzer reaches
//! every type, list and mismatch without having to learn JSON first.
#![no_main]

use convmsg::domain::params::{RawItem, RawParam, RawValue, ValueKey};
use convmsg::domain::send::SendInput;
use libfuzzer_sys::fuzz_target;

mod common;

fn item(key: ValueKey, bytes: &[u8]) -> RawItem {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match key {
        ValueKey::Number | ValueKey::NumberList => {
            text.trim().parse::<f64>().map(RawItem::Number).unwrap_or(RawItem::Str(text))
        }
        ValueKey::Boolean | ValueKey::BooleanList => RawItem::Bool(bytes.first().is_some_and(|b| b & 1 == 1)),
        ValueKey::DateTime | ValueKey::DateTimeList if bytes.len() == 12 => RawItem::Instant {
            seconds: i64::from_le_bytes(bytes[..8].try_into().unwrap()),
            nanos: i32::from_le_bytes(bytes[8..].try_into().unwrap()),
        },
        _ => RawItem::Str(text),
    }
}

fuzz_target!(|data: &[u8]| {
    let declared = common::declared();
    let parameters = data
        .split(|b| *b == 0xFF)
        .filter(|record| record.len() >= 2)
        .map(|record| {
            let name = declared[record[0] as usize % declared.len()].name.clone();
            let key = ValueKey::ALL[record[1] as usize % ValueKey::ALL.len()];
            let items: Vec<RawItem> = record[2..].split(|b| *b == 0xFE).map(|i| item(key, i)).collect();
            let items = if key.is_list() { items } else { items.into_iter().take(1).collect() };
            RawParam { name, values: vec![RawValue { key, items }] }
        })
        .collect();
    let id = convmsg::domain::RecordId::parse_any("0PAxx0000000001").unwrap().into_string();
    common::check_send(SendInput {
        message_definition_name: "Fuzzed".into(),
        parameters,
        end_user_ids: vec![id],
        ..SendInput::default()
    });
});
