//! Reading XML request bodies. An invocation sent as XML is turned into the same JSON
//! value a JSON caller would send (`invoke_body_to_json`), so both formats go through
//! one conversion to `SendInput` and cannot drift apart.
//!
//! The conventions (docs/rest.md): the root element's name is not checked (we write
//! `<Inputs>`); each `<inputs>` child is one input; an element per input key; repeated
//! elements form a list (`<messagingEndUserIds>` may also hold one comma-joined
//! string); `<messagingDefinitionInputParameters>` repeats, one per parameter, with
//! `<name>` and one typed value element; `xsi:nil="true"` is null. Namespace prefixes
//! are ignored. DOCTYPEs are refused (no entity expansion), nesting is bounded.

use quick_xml::events::Event;
use quick_xml::reader::Reader;
use serde_json::{Map, Number, Value};

use crate::domain::params::ValueKey;

/// Deepest element nesting accepted; an invocation needs four levels.
const MAX_DEPTH: usize = 16;

/// One element of a parsed document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    /// Local name (prefix removed).
    pub name: String,
    /// `xsi:nil="true"`.
    pub nil: bool,
    /// Character data, entities resolved.
    pub text: String,
    pub children: Vec<Element>,
}

/// Parses a whole document into its root element; the error says what is wrong and where.
pub fn parse(bytes: &[u8]) -> Result<Element, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let at = reader.buffer_position();
        let event = reader.read_event().map_err(|e| format!("{e} (at byte {})", reader.error_position()))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                return Err(format!("a second root element at byte {at}; a document has one root"));
            }
            Event::Start(start) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("elements are nested deeper than {MAX_DEPTH} levels (at byte {at})"));
                }
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                let el = element(&start)?;
                close(el, &mut stack, &mut root);
            }
            Event::End(_) => {
                // quick-xml has checked that the end tag matches the open one.
                let el = stack.pop().ok_or_else(|| format!("an end tag without a start tag at byte {at}"))?;
                close(el, &mut stack, &mut root);
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content(), at)?,
            Event::CData(t) => push_text(&mut stack, &t.xml10_content(), at)?,
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .ok_or_else(|| format!("unknown entity &{}; at byte {at}", r.xml10_content()))?
                        .to_owned(),
                    Err(e) => return Err(format!("{e} at byte {at}")),
                };
                push_text(&mut stack, &resolved, at)?;
            }
            Event::DocType(_) => return Err("DOCTYPE declarations are not accepted".into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("the document ends inside <{}>", open.name));
    }
    root.ok_or_else(|| "the document has no root element".into())
}

fn element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let name = start.local_name().as_ref().to_owned();
    let mut nil = false;
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("in <{name}>: {e}"))?;
        if attribute.key.local_name().as_ref() == "nil" {
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("in <{name}>: {e}"))?;
            nil = matches!(value.trim(), "true" | "1");
        }
    }
    Ok(Element { name, nil, ..Element::default() })
}

fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

fn push_text(stack: &mut [Element], text: &str, at: u64) -> Result<(), String> {
    match stack.last_mut() {
        Some(open) => {
            open.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(format!("text outside the root element at byte {at}")),
    }
}

/// The JSON value an XML invocation stands for: `{"inputs":[…]}` from the root's
/// `<inputs>` children (other children are kept, so they are reported as unknown keys).
pub fn invoke_body_to_json(bytes: &[u8]) -> Result<Value, String> {
    let root = parse(bytes)?;
    if root.nil || !root.text.trim().is_empty() {
        return Err(format!("the root element <{}> must hold <inputs> elements", root.name));
    }
    let mut body = children_to_json(&root)?;
    if let Some(inputs) = body.get_mut("inputs")
        && !inputs.is_array()
    {
        *inputs = Value::Array(vec![inputs.take()]);
    }
    Ok(Value::Object(body))
}

/// The keys whose value is a list even when it appears once.
fn is_list_key(name: &str) -> bool {
    name == "inputs"
        || name == "messagingDefinitionInputParameters"
        || ValueKey::from_json_key(name).is_some_and(ValueKey::is_list)
}

fn children_to_json(el: &Element) -> Result<Map<String, Value>, String> {
    if !el.text.trim().is_empty() {
        return Err(format!("<{}> mixes text and elements", el.name));
    }
    let mut map = Map::new();
    for child in &el.children {
        let value = element_to_json(child)?;
        match map.get_mut(&child.name) {
            Some(Value::Array(items)) if is_list_key(&child.name) || items.len() > 1 => items.push(value),
            Some(single) => {
                let first = single.take();
                *single = Value::Array(vec![first, value]);
            }
            None if is_list_key(&child.name) && !value.is_null() => {
                map.insert(child.name.clone(), Value::Array(vec![value]));
            }
            None => {
                map.insert(child.name.clone(), value);
            }
        }
    }
    Ok(map)
}

/// An element as JSON: nil → null, children → object, text → a string, except that the
/// number and boolean value keys of a parameter become JSON numbers and booleans when
/// their text is one (otherwise the string is kept and reported as a wrong type).
fn element_to_json(el: &Element) -> Result<Value, String> {
    if el.nil {
        return Ok(Value::Null);
    }
    if !el.children.is_empty() {
        return children_to_json(el).map(Value::Object);
    }
    let text = el.text.as_str();
    let typed = match ValueKey::from_json_key(&el.name) {
        Some(ValueKey::Number | ValueKey::NumberList) => {
            text.trim().parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number)
        }
        Some(ValueKey::Boolean | ValueKey::BooleanList) => match text.trim() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    Ok(typed.unwrap_or_else(|| Value::String(text.to_owned())))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rest::format::{Node, to_xml};

    #[test]
    fn an_xml_invocation_becomes_the_json_a_json_caller_would_send() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Inputs xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
              <inputs>
                <messageDefinitionName>Notice &amp; more</messageDefinitionName>
                <isEnforceMessagingChannelConsent>true</isEnforceMessagingChannelConsent>
                <messagingEndUserIds>0PA1</messagingEndUserIds>
                <messagingEndUserIds>0PA2</messagingEndUserIds>
                <communicationSubscriptionId xsi:nil="true"/>
                <messagingDefinitionInputParameters>
                  <name>Amount</name><numberValue>12.5</numberValue>
                </messagingDefinitionInputParameters>
              </inputs>
              <inputs>
                <messagingEndUserIds>0PA1,0PA2</messagingEndUserIds>
                <messagingDefinitionInputParameters>
                  <name>Tags</name><textValues><![CDATA[a<b]]></textValues>
                </messagingDefinitionInputParameters>
                <messagingDefinitionInputParameters>
                  <name>Paid</name><booleanValue>yes</booleanValue>
                </messagingDefinitionInputParameters>
              </inputs>
            </Inputs>"#;
        assert_eq!(
            invoke_body_to_json(xml.as_bytes()).unwrap(),
            json!({"inputs": [
                {
                    "messageDefinitionName": "Notice & more",
                    "isEnforceMessagingChannelConsent": "true",
                    "messagingEndUserIds": ["0PA1", "0PA2"],
                    "communicationSubscriptionId": null,
                    "messagingDefinitionInputParameters": [{"name": "Amount", "numberValue": 12.5}],
                },
                {
                    "messagingEndUserIds": "0PA1,0PA2",
                    "messagingDefinitionInputParameters": [
                        {"name": "Tags", "textValues": ["a<b"]},
                        {"name": "Paid", "booleanValue": "yes"},
                    ],
                },
            ]})
        );
    }

    #[test]
    fn one_input_is_still_a_list_of_inputs() {
        let value =
            invoke_body_to_json(b"<Inputs><inputs><messageDefinitionName>N</messageDefinitionName></inputs></Inputs>")
                .unwrap();
        assert_eq!(value, json!({"inputs": [{"messageDefinitionName": "N"}]}));
    }

    #[test]
    fn malformed_documents_are_errors_not_panics() {
        for bad in [
            "",
            "<Inputs>",
            "<Inputs><inputs></Inputs>",
            "<a/><b/>",
            "text",
            "<a>&bogus;</a>",
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            "<a b=c/>",
            "<a>x<b/></a>",
        ] {
            let result = invoke_body_to_json(bad.as_bytes());
            assert!(result.is_err(), "{bad:?} gave {result:?}");
        }
        assert!(parse(&[0xff, 0xfe]).is_err());
        let deep = "<a>".repeat(100_000);
        assert!(parse(deep.as_bytes()).unwrap_err().contains("nested deeper"));
    }

    #[test]
    fn what_the_bridge_writes_it_reads_back() {
        let node = Node::List(vec![Node::Obj(vec![
            ("actionName", Node::str("sendConversationMessages")),
            ("errors", Node::Null),
            ("isSuccess", Node::Bool(true)),
            ("outputValues", Node::Obj(vec![("requestId", Node::str("1sr & <x>"))])),
        ])]);
        let root = parse(to_xml(&node, "Results", "result").as_bytes()).unwrap();
        assert_eq!(root.name, "Results");
        let result = &root.children[0];
        assert_eq!(result.name, "result");
        let names: Vec<&str> = result.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["actionName", "errors", "isSuccess", "outputValues"]);
        assert!(result.children[1].nil);
        assert_eq!(result.children[3].children[0].text, "1sr & <x>");
    }
}
