//! gRPC requests as bytes → proto → domain: the send conversion and checks, and the
//! admin specs' checks (a messaging component with any parameters and layout).
#![no_main]

use convmsg::grpc::{convert, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;

mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = pb::SendConversationMessagesRequest::decode(data) {
        match convert::send_input(request) {
            Ok(input) => common::check_send(input),
            Err(error) => common::assert_client_error(error),
        }
    }
    if let Ok(request) = pb::UpsertMessageDefinitionRequest::decode(data) {
        match convert::definition_spec(request.message_definition) {
            Ok(spec) => {
                if let Err(violations) = spec.check() {
                    common::assert_client_error(convmsg::error::AppError::Invalid(violations));
                }
            }
            Err(error) => common::assert_client_error(error),
        }
    }
    if let Ok(request) = pb::UpsertChannelRequest::decode(data) {
        match convert::channel_spec(request.channel) {
            Ok(spec) => {
                if let Err(violations) = spec.check() {
                    common::assert_client_error(convmsg::error::AppError::Invalid(violations));
                }
            }
            Err(error) => common::assert_client_error(error),
        }
    }
});
