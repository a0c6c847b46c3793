//! The REST bridge's XML invocation body (read as the JSON a JSON caller would send) → inputs → the service's checks.
#![no_main]

use convmsg::rest::format::BodyFormat;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    match convmsg::rest::invoke::parse_body(data, BodyFormat::Xml, 100) {
        Ok(inputs) => {
            for input in inputs {
                match convmsg::rest::invoke::send_input(input, None) {
                    Ok(send) => common::check_send(send),
                    Err(violations) => common::assert_client_error(convmsg::error::AppError::Invalid(violations)),
                }
            }
        }
        Err(error) => common::assert_client_error(error.error),
    }
});
