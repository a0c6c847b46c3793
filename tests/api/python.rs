//! Clients in another language, run against the real server: Python grpcio stubs
//! generated at test time from `proto/` (tests/python/client_test.py), Python's
//! official reflection client with no stubs at all (tests/python/reflection_test.py),
//! and the README's Python snippet as printed (tests/python/readme_test.py).

use std::time::Duration;

use convmsg::grpc::pb;

use crate::helpers::*;

/// Runs `tests/python/<script>` against `app` and returns its standard output, after
/// checking it exited 0 and printed `<label>: N passed, 0 failed`.
async fn run_python(app: &TestApp, script: &str, label: &str) -> String {
    run_python_with(app, script, label, &[]).await
}

/// `run_python` with further arguments after `--server` and `--token`.
async fn run_python_with(app: &TestApp, script: &str, label: &str, extra: &[&str]) -> String {
    let python = std::env::var("CONVMSG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new(&python)
        .arg(&path)
        .args(["--server", &app.addr.to_string(), "--token", &app.token])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the python client finished within 120 s")
        .unwrap_or_else(|e| panic!("could not run {python}: {e} (scripts/test sets up the Python environment)"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed (run it via scripts/test, which installs tests/python/requirements.txt):\n{stdout}\n{stderr}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.starts_with(&format!("{label}: ")) && summary.ends_with(" passed, 0 failed"), "{stdout}");
    stdout
}

#[tokio::test]
async fn a_python_grpcio_client_sends_and_reads_a_request() {
    let app = spawn_app().await;
    let stdout = run_python(&app, "client_test.py", "python client").await;
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn python_reflection_v1alpha_discovers_the_service_and_calls_it_with_discovered_messages_only() {
    let app = spawn_app().await;
    let stdout = run_python(&app, "reflection_test.py", "python reflection").await;
    assert!(stdout.contains("5 passed, 0 failed"), "{stdout}");
}

/// The README's end user id and component, so that its snippet runs unchanged.

#[tokio::test]
async fn the_readme_python_snippet_sends_a_request_and_watches_it_to_completed() {
    let app = spawn_app().await;
    let mut admin = app.admin().await;
    let channel = admin
        .upsert_channel(pb::UpsertChannelRequest {
            channel: Some(pb::Channel {
                developer_name: "readme_sms".into(),
                message_type: pb::MessageType::Text as i32,
                provider: "log".into(),
                is_active: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .channel
        .unwrap();
    let param = |name: &str, value_type: pb::ParameterValueType, is_required| pb::MessageParameter {
        name: name.into(),
        value_type: value_type as i32,
        is_required,
        ..Default::default()
    };
    admin
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest {
            message_definition: Some(pb::MessageDefinition {
                api_name: "OrderShipped".into(),
                r#type: pb::DefinitionType::Notification as i32,
                is_active: true,
                text_layout: "Hi {!CustomerName}, order {!OrderNumber} ships on {!ShipDate}.".into(),
                parameters: vec![
                    param("CustomerName", pb::ParameterValueType::Text, true),
                    param("OrderNumber", pb::ParameterValueType::Text, true),
                    param("ShipDate", pb::ParameterValueType::Date, false),
                ],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // The snippet's example id stands for one the server generated: the test hands it this one.
    let end_user = admin
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest {
            messaging_end_users: vec![pb::MessagingEndUser {
                messaging_channel_id: channel.id,
                messaging_platform_key: "+15550100001".into(),
                messaging_consent_status: pb::ConsentStatus::ExplicitlyOptedIn as i32,
                ..Default::default()
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .messaging_end_users
        .remove(0)
        .id;

    let stdout = run_python_with(&app, "readme_test.py", "python readme", &["--end-user", &end_user]).await;
    // The snippet prints `request_status success_message_count` per update; the stream
    // ends after Completed (3) with the one message sent.
    let updates: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("python readme:")).collect();
    let completed = format!("{} 1", pb::RequestStatus::Completed as i32);
    assert_eq!(updates.last().copied(), Some(completed.as_str()), "{stdout}");
}
