//! A Node.js client against the real server: @grpc/grpc-js and @grpc/proto-loader
//! (from npm, pinned by tests/node/package-lock.json) read `proto/` at run time, send a
//! request and follow `WatchRequestStatus` to `Completed` (tests/node/client_test.js).

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_node_grpc_js_client_sends_a_request_and_follows_it_to_completed() {
    let app = spawn_app().await;
    let node = std::env::var("CONVMSG_TEST_NODE").unwrap_or_else(|_| "node".into());
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");
    assert!(
        std::path::Path::new(dir).join("node_modules/@grpc/grpc-js").is_dir(),
        "tests/node/node_modules is missing: run scripts/test (or `npm ci --prefix tests/node`)"
    );
    let run = tokio::process::Command::new(&node)
        .arg(format!("{dir}/client_test.js"))
        .args(["--server", &app.addr.to_string(), "--token", &app.token])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the node client finished within 120 s")
        .unwrap_or_else(|e| panic!("could not run {node}: {e} (Node.js 18 or newer is needed)"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the node client failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.lines().last(), Some("node client: 4 passed, 0 failed"), "{stdout}\n{stderr}");
}
