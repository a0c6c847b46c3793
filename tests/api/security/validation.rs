//! 16.2 — validation costs time in proportion to the input and never monopolises the
//! runtime: oversized parameter lists are refused at once with one violation, before any
//! per-parameter work, and the server keeps answering probes while it refuses them.

use std::time::{Duration, Instant};

use convmsg::grpc::pb;
use tonic::Code;

use crate::helpers::*;

/// `n` text parameters named `P0`, `P1`, … (about 20 bytes each on the wire).
fn many_parameters(n: usize) -> Vec<pb::MessageDefinitionInputParameter> {
    (0..n).map(|i| text_param(&format!("P{i}"), "x")).collect()
}

#[tokio::test]
async fn a_send_with_50000_parameters_is_refused_at_once_with_one_violation_naming_the_list() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let request = pb::SendConversationMessagesRequest {
        messaging_definition_input_parameters: many_parameters(50_000),
        ..fx.request()
    };

    let status = app.conv().await.send_conversation_messages(request).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = violations(&status);
    assert_eq!(violations.len(), 1, "one violation, not one per parameter");
    assert_eq!(violations[0].0, "messagingDefinitionInputParameters");
    assert!(violations[0].1.contains("50000 parameters given"), "{}", violations[0].1);
}

#[tokio::test]
async fn a_component_declaring_50000_parameters_is_refused_naming_the_field() {
    let app = spawn_accept_only().await;
    let mut definition = notice_definition("Huge");
    definition.parameters = (0..50_000)
        .map(|i| pb::MessageParameter {
            name: format!("P{i}"),
            value_type: pb::ParameterValueType::Text as i32,
            ..Default::default()
        })
        .collect();
    definition.text_layout = "hi".into();

    let status = app
        .admin()
        .await
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest { message_definition: Some(definition) })
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = violations(&status);
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].0, "message_definition.parameters");
    assert!(violations[0].1.contains("at most 100"), "{}", violations[0].1);
}

/// The landed code took seconds of CPU per 60k-parameter send on a runtime worker, and
/// two of them at once kept `/healthz` from answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_promptly_while_two_60000_parameter_sends_are_being_refused() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let mut sends = Vec::new();
    for _ in 0..2 {
        let request = pb::SendConversationMessagesRequest {
            messaging_definition_input_parameters: many_parameters(60_000),
            ..fx.request()
        };
        let mut client = app.conv().await;
        sends.push(tokio::spawn(async move { client.send_conversation_messages(request).await }));
    }

    // Probe until both sends are answered; every probe must be prompt.
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while probes == 0 || !sends.iter().all(|s| s.is_finished()) {
        let started = Instant::now();
        let health = http.get(format!("{}/healthz", app.url())).send().await.expect("healthz answers");
        assert!(health.status().is_success());
        slowest = slowest.max(started.elapsed());
        probes += 1;
    }

    assert!(slowest < Duration::from_secs(2), "/healthz took {slowest:?} while the sends were checked");
    for send in sends {
        let status = send.await.unwrap().unwrap_err();
        assert_eq!((status.code(), violations(&status).len()), (Code::InvalidArgument, 1));
    }
}
