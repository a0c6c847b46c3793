//! The command line as a user runs it: `convmsg send --watch`, `convmsg status`, a
//! refused `send`, and `convmsg demo`, each the real binary against a real server.

use std::time::Duration;

use crate::helpers::*;

async fn convmsg(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"));
    command.args(args).env_remove("CONVMSG_SERVER").env_remove("CONVMSG_TOKEN").kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command finished within 60 s")
        .expect("the binary runs")
}

#[tokio::test]
async fn send_with_watch_follows_the_request_to_completed_and_status_shows_it() {
    let app = spawn_app().await;
    let fx = app.provision(2).await;
    let server = app.url();
    let env = [("CONVMSG_SERVER", server.as_str()), ("CONVMSG_TOKEN", app.token.as_str())];
    let to = fx.end_user_ids.join(",");
    let out = convmsg(
        &[
            "send",
            "--definition",
            &fx.definition.api_name,
            "--to",
            &to,
            "--param",
            "CustomerName=Ada",
            "--param",
            "Amount=number:12.5",
            "--param",
            "DueDate=date:2026-12-01",
            "--watch",
        ],
        &env,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let request_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("requestId"))
        .map(|id| id.trim().to_owned())
        .expect("the request id is printed");
    assert!(stdout.contains(&format!("{request_id}  MSJ-00000001  Completed")), "{stdout}");
    assert!(stdout.contains("2 total · 2 sent · 0 failed"), "{stdout}");

    let out = convmsg(&["status", &request_id], &env).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("Completed") && stdout.contains(&fx.end_user_ids[1]), "{stdout}");
}

#[tokio::test]
async fn a_refused_send_exits_non_zero_naming_the_field() {
    let app = spawn_accept_only().await;
    let fx = app.provision(1).await;
    let server = app.url();
    let env = [("CONVMSG_SERVER", server.as_str()), ("CONVMSG_TOKEN", app.token.as_str())];
    let out = convmsg(&["send", "--definition", &fx.definition.api_name, "--to", &fx.end_user_ids[0]], &env).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("messagingDefinitionInputParameters.CustomerName"),
        "{stderr}"
    );
    let out =
        convmsg(&["send", "--definition", "X", "--to", &fx.end_user_ids[0], "--param", "N=number:lots"], &env).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--param N"));
}

#[tokio::test]
async fn the_demo_runs_the_whole_job_and_shows_a_consent_failure() {
    let out = convmsg(&["demo"], &[]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("MSJ-00000001  Completed"), "{stdout}");
    assert!(stdout.contains("5 total · 4 sent · 1 failed"), "{stdout}");
    assert!(stdout.contains("EndUserIsNotOptedIn"), "{stdout}");
    assert_eq!(stdout.matches("\"text\":\"Hi Ada, order A-1042 ships on 2026-12-01.\"").count(), 4, "{stdout}");
}
