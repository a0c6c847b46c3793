#![allow(dead_code)] // each target uses what it needs
//! What every target checks once its input is parsed: the send input goes through the
//! same checks the service makes (shape, then the parameters against a component that
//! declares every type), every error is a caller's mistake (4xx, never a 5xx), and
//! error answers stay bounded however large the input.

use convmsg::domain::model::{MessageParameter, ParameterValueType};
use convmsg::domain::params::{check_params, params_from_json, params_to_json};
use convmsg::domain::send::SendInput;
use convmsg::error::{AppError, codes};

/// A component with one parameter of each type, scalar and list.
pub fn declared() -> Vec<MessageParameter> {
    use ParameterValueType as T;
    let types = [T::Text, T::Url, T::RecordId, T::ImageId, T::Date, T::DateTime, T::Integer, T::Double, T::Boolean];
    let mut out = Vec::new();
    for (i, value_type) in types.into_iter().enumerate() {
        for is_list in [false, true] {
            out.push(MessageParameter {
                name: format!("P{i}{}", if is_list { "s" } else { "" }),
                label: String::new(),
                value_type,
                is_required: false,
                is_list,
                max_list_items: 0,
            });
        }
    }
    out
}

/// An error answer: a caller's mistake, and small.
pub fn assert_client_error(error: AppError) {
    let kind = error.kind();
    assert!(codes(kind).http < 500, "{kind:?} for a caller's input");
    let status = error.into_status();
    assert!(status.message().len() < 2_000, "a {} byte message", status.message().len());
    assert!(status.details().len() < 8_000, "{} bytes of details", status.details().len());
}

/// Shape, check and render one input; checked parameters survive their stored form.
pub fn check_send(input: SendInput) {
    let shaped = match input.shape() {
        Ok(shaped) => shaped,
        Err(violations) => return assert_client_error(AppError::Invalid(violations)),
    };
    let declared = declared();
    match check_params(&declared, shaped.parameters().to_vec()) {
        Ok(params) => {
            let layout: String = declared.iter().map(|d| format!("{{!{}}} ", d.name)).collect();
            let _ = convmsg::domain::delivery::render_text(&layout, &params);
            let stored = params_to_json(&params);
            let mut back = params_from_json(&stored);
            let mut expected = params.clone();
            back.sort_by(|a, b| a.name.cmp(&b.name));
            expected.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(params_to_json(&back), params_to_json(&expected), "stored parameters read back differently");
        }
        Err(violations) => assert_client_error(AppError::Invalid(violations)),
    }
}
