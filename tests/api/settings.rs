//! Every setting the documentation promises, through the real binary: each `CONVMSG_*`
//! variable (and `RUST_LOG`) named in README.md, docs/, deploy/ or the example config,
//! and each flag of the README's configuration table or the example config, is given to `convmsg serve` (or
//! the client commands) by a test that checks it takes effect — the token authenticates,
//! the listener moves, the database is created, the limit is reached, the provider sees
//! the credential.
//!
//! `CHECKS` maps each documented name to that test, and
//! `every_documented_setting_has_a_test_that_runs_the_binary_with_it` reads the
//! documentation: a name documented without a check, a check whose test does not use its
//! name, or a check for a name no longer documented fails the suite, so a documented
//! knob cannot silently do nothing again.

mod dispatch;
mod process;
mod providers;
mod receipts;
mod receiver;
mod server;

use std::collections::BTreeSet;
use std::path::Path;

/// Documented name → the test (file under the repository, function) that sets it and
/// checks its effect. Names with a `<placeholder>` stand for a family of variables.
const CHECKS: &[(&str, &str, &str)] = &[
    ("--listen", "tests/api/settings/server.rs", "the_listen_variable_and_flag_choose_the_listener_address"),
    ("CONVMSG_LISTEN", "tests/api/settings/server.rs", "the_listen_variable_and_flag_choose_the_listener_address"),
    (
        "--database-url",
        "tests/api/settings/server.rs",
        "the_database_url_variable_and_flag_choose_the_database_and_migrate_it",
    ),
    (
        "CONVMSG_DATABASE_URL",
        "tests/api/settings/server.rs",
        "the_database_url_variable_and_flag_choose_the_database_and_migrate_it",
    ),
    ("--config", "tests/api/settings/server.rs", "the_config_variable_and_flag_read_the_file"),
    ("CONVMSG_CONFIG", "tests/api/settings/server.rs", "the_config_variable_and_flag_read_the_file"),
    (
        "CONVMSG_BOOTSTRAP_TOKEN",
        "tests/api/settings/server.rs",
        "the_bootstrap_token_variable_grants_every_scope_to_tenant_default_and_wins_over_the_file",
    ),
    (
        "CONVMSG_LOG__FORMAT",
        "tests/api/settings/server.rs",
        "the_log_format_variable_switches_the_lines_from_json_to_pretty",
    ),
    (
        "CONVMSG_LOG__FILTER",
        "tests/api/settings/server.rs",
        "rust_log_and_the_log_filter_variable_choose_what_is_logged",
    ),
    ("RUST_LOG", "tests/api/settings/server.rs", "rust_log_and_the_log_filter_variable_choose_what_is_logged"),
    (
        "CONVMSG_ADMISSION__MAX_CONCURRENT_REQUESTS",
        "tests/api/settings/server.rs",
        "the_admission_variable_sets_how_many_calls_are_served_at_once",
    ),
    ("--tls-cert", "tests/api/settings/server.rs", "the_tls_variables_turn_tls_on_with_the_files_they_name"),
    ("--tls-key", "tests/api/settings/server.rs", "the_tls_variables_turn_tls_on_with_the_files_they_name"),
    (
        "CONVMSG_TLS__CERT_PATH",
        "tests/api/settings/server.rs",
        "the_tls_variables_turn_tls_on_with_the_files_they_name",
    ),
    ("CONVMSG_TLS__KEY_PATH", "tests/api/settings/server.rs", "the_tls_variables_turn_tls_on_with_the_files_they_name"),
    (
        "CONVMSG_REST__BODY_LIMIT_BYTES",
        "tests/api/settings/server.rs",
        "the_rest_variables_set_the_body_limit_and_the_inputs_per_call",
    ),
    (
        "CONVMSG_REST__MAX_INPUTS_PER_CALL",
        "tests/api/settings/server.rs",
        "the_rest_variables_set_the_body_limit_and_the_inputs_per_call",
    ),
    (
        "CONVMSG_DISPATCH__MAX_IN_PROGRESS_REQUESTS",
        "tests/api/settings/dispatch.rs",
        "the_in_progress_limit_variable_sets_the_limit_seen_in_metrics_and_by_the_provider",
    ),
    (
        "CONVMSG_DISPATCH__PER_REQUEST_CONCURRENCY",
        "tests/api/settings/dispatch.rs",
        "the_per_request_concurrency_variable_sets_how_many_messages_are_in_flight",
    ),
    (
        "CONVMSG_PROVISIONING__PRUNE",
        "tests/api/settings/server.rs",
        "the_prune_variable_deletes_the_declared_records_the_config_file_dropped",
    ),
    (
        "CONVMSG_DISPATCH__LEASE_MS",
        "tests/api/settings/dispatch.rs",
        "the_lease_variable_sets_how_soon_a_dead_process_work_is_taken_over",
    ),
    (
        "CONVMSG_DISPATCH__SESSION_WAIT_MAX_MS",
        "tests/api/settings/dispatch.rs",
        "the_session_wait_variable_sets_how_long_a_held_message_waits",
    ),
    (
        "CONVMSG_PROVIDERS__WEBHOOK__SECRET",
        "tests/api/settings/providers.rs",
        "the_webhook_secret_variables_sign_every_delivery_and_a_channel_entry_wins",
    ),
    (
        "CONVMSG_PROVIDERS__WEBHOOK__TENANTS__<tenant>__SECRETS__<channel>",
        "tests/api/settings/providers.rs",
        "the_webhook_secret_variables_sign_every_delivery_and_a_channel_entry_wins",
    ),
    (
        "CONVMSG_PROVIDERS__WEBHOOK__TENANTS__<tenant>__SECRET",
        "tests/api/settings/providers.rs",
        "the_webhook_secret_variables_sign_every_delivery_and_a_channel_entry_wins",
    ),
    (
        "CONVMSG_PROVIDERS__WHATSAPP__ACCESS_TOKEN",
        "tests/api/settings/providers.rs",
        "the_whatsapp_access_token_variable_is_the_bearer_token_of_every_call",
    ),
    (
        "CONVMSG_PROVIDERS__TWILIO__ACCOUNT_SID",
        "tests/api/settings/providers.rs",
        "the_twilio_account_sid_and_auth_token_variables_authenticate_every_call",
    ),
    (
        "CONVMSG_PROVIDERS__TWILIO__AUTH_TOKEN",
        "tests/api/settings/providers.rs",
        "the_twilio_account_sid_and_auth_token_variables_authenticate_every_call",
    ),
    (
        "CONVMSG_RECEIPTS__PUBLIC_BASE_URL",
        "tests/api/settings/receipts.rs",
        "the_receipt_variables_set_the_public_url_and_the_secrets_callbacks_are_checked_with",
    ),
    (
        "CONVMSG_RECEIPTS__TENANTS__<tenant>__TWILIO_AUTH_TOKEN",
        "tests/api/settings/receipts.rs",
        "the_receipt_variables_set_the_public_url_and_the_secrets_callbacks_are_checked_with",
    ),
    (
        "CONVMSG_RECEIPTS__TENANTS__<tenant>__WHATSAPP_APP_SECRET",
        "tests/api/settings/receipts.rs",
        "the_receipt_variables_set_the_public_url_and_the_secrets_callbacks_are_checked_with",
    ),
    (
        "CONVMSG_RECEIPTS__TENANTS__<tenant>__WHATSAPP_VERIFY_TOKEN",
        "tests/api/settings/receipts.rs",
        "the_receipt_variables_set_the_public_url_and_the_secrets_callbacks_are_checked_with",
    ),
    (
        "CONVMSG_RECEIPTS__TENANTS__<tenant>__CHANNELS__<channel>__<KEY>",
        "tests/api/settings/receipts.rs",
        "the_receipt_variables_set_the_public_url_and_the_secrets_callbacks_are_checked_with",
    ),
    (
        "CONVMSG_TELEMETRY__OTLP_ENDPOINT",
        "tests/api/settings/providers.rs",
        "the_otlp_endpoint_variable_turns_trace_export_on",
    ),
    // The client commands' variables.
    ("CONVMSG_SERVER", "tests/api/cli.rs", "send_with_watch_follows_the_request_to_completed_and_status_shows_it"),
    ("CONVMSG_TOKEN", "tests/api/cli.rs", "send_with_watch_follows_the_request_to_completed_and_status_shows_it"),
    // The build's: the revision `convmsg --version` prints (the image sets it).
    ("CONVMSG_GIT_REVISION", "tests/api/version.rs", "version_prints_the_package_version_and_the_git_revision"),
    // Kubernetes' service link variable, documented as one convmsg leaves alone.
    (
        "CONVMSG_PORT",
        "src/config/env.rs",
        "other_convmsg_variables_are_left_alone_and_misspelt_ones_are_reported_with_a_hint",
    ),
    // The general forms: every key of the configuration, generated from its defaults.
    ("CONVMSG_<KEY>", "src/config/env.rs", "every_setting_can_be_set_from_the_environment"),
    ("CONVMSG_<SECTION>__<KEY>", "src/config/env.rs", "every_setting_can_be_set_from_the_environment"),
    // …and through the binary, a provider key no table lists (`…__WHATSAPP__BASE_URL`).
    (
        "CONVMSG_PROVIDERS__<PROVIDER>__<KEY>",
        "tests/api/settings/providers.rs",
        "the_whatsapp_access_token_variable_is_the_bearer_token_of_every_call",
    ),
];

/// The test suite's own knobs (`CONVMSG_TEST_*`), which scripts/test sets on every run.
fn is_test_knob(name: &str) -> bool {
    name.starts_with("CONVMSG_TEST_")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `CONVMSG_*` name (placeholders included) in `text`.
fn variables_in(text: &str, into: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("CONVMSG_") {
        let start = at + found;
        let mut end = start + "CONVMSG_".len();
        let mut depth = 0;
        while end < bytes.len() {
            let c = bytes[end] as char;
            match c {
                'A'..='Z' | '0'..='9' | '_' => {}
                '<' => depth += 1,
                '>' if depth > 0 => depth -= 1,
                'a'..='z' if depth > 0 => {}
                _ => break,
            }
            end += 1;
        }
        let name = text[start..end].trim_end_matches('_');
        if name.len() > "CONVMSG".len() {
            into.insert(name.to_owned());
        }
        at = end;
    }
}

/// What the documentation promises: variables anywhere in it, and the flags and other
/// variables of the README's configuration table.
fn documented() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = vec![repo().join("README.md"), repo().join("config/convmsg.example.toml")];
    for dir in ["docs", "deploy"] {
        let mut stack = vec![repo().join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| ["md", "yaml", "yml", "toml"].contains(&e.to_str().unwrap()))
                    || path.file_name().is_some_and(|n| n == "Dockerfile")
                {
                    files.push(path);
                }
            }
        }
    }
    for file in &files {
        variables_in(&std::fs::read_to_string(file).unwrap(), &mut names);
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        for cell in row.split('`').skip(1).step_by(2) {
            if cell.starts_with("--") || cell == "RUST_LOG" {
                names.insert(cell.to_owned());
            }
        }
    }
    // The flags the example config names beside their variables.
    let example = std::fs::read_to_string(repo().join("config/convmsg.example.toml")).unwrap();
    for word in example.split(|c: char| c.is_whitespace() || c == '(' || c == ',' || c == ')') {
        if word.len() > 2 && word.starts_with("--") && word[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            names.insert(word.to_owned());
        }
    }
    assert!(names.contains("CONVMSG_BOOTSTRAP_TOKEN") && names.contains("--listen"), "read the docs: {names:?}");
    names.retain(|n| !is_test_knob(n));
    names
}

/// The body of `fn name(` in `source`, if it is a test.
fn test_body<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("fn {name}("))?;
    let before = &source[start.saturating_sub(400)..start];
    let attribute = before.rfind("#[tokio::test]").or_else(|| before.rfind("#[test]"))?;
    if before[attribute..].contains("\n}\n") {
        return None; // the attribute belongs to an earlier function
    }
    let end = source[start..].find("\n}\n").map(|e| start + e)?;
    Some(&source[start..end])
}

#[test]
fn every_documented_setting_has_a_test_that_runs_the_binary_with_it() {
    let documented = documented();
    let checked: BTreeSet<String> = CHECKS.iter().map(|(name, _, _)| (*name).to_owned()).collect();
    let unchecked: Vec<&String> = documented.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "documented without a test that sets it (add one and list it in CHECKS): {unchecked:?}"
    );
    let stale: Vec<&String> = checked.difference(&documented).collect();
    assert!(stale.is_empty(), "listed in CHECKS but no longer documented: {stale:?}");
    for (name, file, test) in CHECKS {
        let source = std::fs::read_to_string(repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let body = test_body(&source, test).unwrap_or_else(|| panic!("{name}: no test `{test}` in {file}"));
        let literal = format!("\"{}", name.split('<').next().unwrap());
        assert!(body.contains(&literal), "{name}: the test `{test}` in {file} never uses {literal}\"");
    }
}

#[test]
fn the_documentation_reader_finds_variables_and_their_placeholders() {
    let mut names = BTreeSet::new();
    variables_in(
        "set `CONVMSG_DISPATCH__LEASE_MS=5`, or CONVMSG_<SECTION>__<KEY>; CONVMSG_* and CONVMSG_X.",
        &mut names,
    );
    let expected: BTreeSet<String> =
        ["CONVMSG_DISPATCH__LEASE_MS", "CONVMSG_<SECTION>__<KEY>", "CONVMSG_X"].map(String::from).into();
    assert_eq!(names, expected);
}
