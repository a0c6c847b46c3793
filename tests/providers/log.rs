//! The log provider writing JSON lines to a temp file.

use std::sync::Arc;

use convmsg::providers::config::ProvidersConfig;
use convmsg::providers::{Provider, TemplateMessage};

use crate::fake::{bounded, message, provider, send};

fn log_to(path: &std::path::Path, include_body: bool) -> Arc<dyn Provider> {
    let mut config = ProvidersConfig::default();
    config.log.path = Some(path.display().to_string());
    config.log.include_body = include_body;
    provider(&config, "log")
}

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("the log file exists")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not one JSON object per line: {e}: {line}")))
        .collect()
}

#[tokio::test]
async fn a_logged_message_is_one_json_line_with_the_recipient_masked_and_no_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.jsonl");
    let log = log_to(&path, false);
    let message = message();

    let delivered = send(&*log, &message).await.expect("the log provider delivers");

    assert_eq!(delivered.provider_message_id, Some(format!("log-{}", message.message_identifier)));
    let lines = lines(&path);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["message_identifier"], message.message_identifier.as_str());
    assert_eq!(line["request_id"], "1srxx0000000001AAA");
    assert_eq!(line["tenant"], "default");
    assert_eq!(line["channel"], "chan");
    assert_eq!(line["recipient"], "*****0123");
    assert_eq!(line["definition"], "OrderShipped");
    assert_eq!(line["text_length"], message.text.chars().count());
    assert_eq!(line["template"], serde_json::Value::Null);
    assert!(line.get("text").is_none(), "the body is left out by default: {line}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(!written.contains("+15550123") && !written.contains("Hi Ada"), "{written}");
    let timestamp = line["timestamp"].as_str().expect("a timestamp string");
    time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
        .expect("the timestamp is RFC 3339");
}

#[tokio::test]
async fn the_body_is_logged_only_when_include_body_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.jsonl");
    let log = log_to(&path, true);
    let mut message = message();
    message.template =
        Some(TemplateMessage { name: "order_shipped".into(), language: "en_US".into(), body_parameters: vec![] });

    send(&*log, &message).await.expect("delivered");

    let line = &lines(&path)[0];
    assert_eq!(line["text"], message.text.as_str());
    assert_eq!(line["template"], "order_shipped");
}

#[tokio::test]
async fn the_log_file_is_appended_to_and_created_if_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.jsonl");
    std::fs::write(&path, "{\"earlier\":true}\n").unwrap();

    send(&*log_to(&path, false), &message()).await.expect("delivered");
    // A second provider on the same file (as after a restart) appends too.
    send(&*log_to(&path, false), &message()).await.expect("delivered");

    let lines = lines(&path);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["earlier"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_never_interleave_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.jsonl");
    let log = log_to(&path, true);
    let long_text = "x".repeat(20_000); // larger than any single OS write buffer step

    let mut tasks = Vec::new();
    for i in 0..64 {
        let log = Arc::clone(&log);
        let mut message = message();
        message.message_identifier = format!("00000000-0000-4000-8000-{i:012}");
        message.text = long_text.clone();
        tasks.push(tokio::spawn(async move { log.send(&message).await }));
    }
    for task in tasks {
        bounded(task).await.expect("the task ran").expect("delivered");
    }

    let lines = lines(&path);
    assert_eq!(lines.len(), 64);
    let mut ids: Vec<&str> = lines.iter().map(|l| l["message_identifier"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 64, "every message wrote exactly one whole line");
}
