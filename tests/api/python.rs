//! A client in another language: Python grpcio stubs generated at test time from
//! `proto/`, run against the real server (tests/python/client_test.py).

use std::time::Duration;

use crate::helpers::*;

#[tokio::test]
async fn a_python_grpcio_client_sends_and_reads_a_request() {
    let app = spawn_app().await;
    let python = std::env::var("CONVMSG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_test.py");
    let run = tokio::process::Command::new(&python)
        .arg(script)
        .args(["--server", &app.addr.to_string(), "--token", &app.token])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the python client finished within 120 s")
        .unwrap_or_else(|e| panic!("could not run {python}: {e} (scripts/test sets up the Python environment)"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed (run it via scripts/test, which installs grpcio):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
}
