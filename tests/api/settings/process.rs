//! One `convmsg serve` process of the real binary, started with exactly the settings a
//! test gives (none of the test runner's `CONVMSG_*`, `OTEL_*` or `RUST_LOG`), whose
//! output is kept so tests can read what it logged; and a config file writer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use convmsg::grpc::pb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::helpers::{Authed, BearerToken};

/// How long a process may take to start serving, or a test to see a line it waits for.
const WAIT: Duration = Duration::from_secs(30);

/// A `convmsg serve` command being put together.
pub struct Serve {
    command: tokio::process::Command,
}

impl Serve {
    /// `convmsg serve` in `dir` (where a relative SQLite path lands), on a free port of
    /// 127.0.0.1 unless the test sets the listener itself.
    pub fn in_dir(dir: &Path) -> Serve {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"));
        command.arg("serve").current_dir(dir);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("CONVMSG_") || text.starts_with("OTEL_") || text == "RUST_LOG" {
                command.env_remove(&name);
            }
        }
        command.env("CONVMSG_LISTEN", "127.0.0.1:0");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        Serve { command }
    }

    pub fn env(mut self, name: &str, value: &str) -> Serve {
        self.command.env(name, value);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Serve {
        self.command.args(args);
        self
    }

    /// Starts the process and waits (bounded) for its "convmsg serving" line, in JSON
    /// or in the pretty format.
    pub async fn start(mut self) -> Running {
        let mut child = self.command.spawn().expect("the convmsg binary starts");
        let (changed, seen) = watch::channel(0usize);
        let stdout = keep_lines(child.stdout.take().expect("piped stdout"), changed.clone());
        let stderr = keep_lines(child.stderr.take().expect("piped stderr"), changed);
        let mut running = Running { child, addr: String::new(), stdout, stderr, seen };
        let line = running.wait_for_stdout("the \"convmsg serving\" line", |l| l.contains("convmsg serving")).await;
        running.addr = listen_address(&line).unwrap_or_else(|| panic!("no listen address in {line:?}"));
        running
    }
}

/// Reads `pipe` line by line into a shared list, signalling each new line.
fn keep_lines(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static, changed: watch::Sender<usize>) -> Lines {
    let lines: Lines = Arc::default();
    let kept = lines.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            kept.lock().unwrap().push(line);
            changed.send_modify(|n| *n += 1);
        }
    });
    lines
}

type Lines = Arc<Mutex<Vec<String>>>;

/// The address in a "convmsg serving" line: `"listen":"…"` (JSON) or `listen=…` (pretty).
fn listen_address(line: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["listen"].as_str().map(str::to_owned);
    }
    let plain: String = strip_ansi(line);
    plain.split_whitespace().find_map(|w| w.strip_prefix("listen=")).map(str::to_owned)
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running `convmsg serve`; killed when dropped.
pub struct Running {
    pub child: tokio::process::Child,
    /// Where it serves, from its "convmsg serving" line.
    pub addr: String,
    stdout: Lines,
    stderr: Lines,
    seen: watch::Receiver<usize>,
}

impl Running {
    /// Every line written to standard output so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until a line of standard output satisfies `matches`, and returns it.
    pub async fn wait_for_stdout(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                self.seen.borrow_and_update();
                if let Some(line) = self.stdout.lock().unwrap().iter().find(|l| matches(l)) {
                    return Some(line.clone());
                }
                if self.seen.changed().await.is_err() {
                    return self.stdout.lock().unwrap().iter().find(|l| matches(l)).cloned();
                }
            }
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => {
                panic!("convmsg never logged {what}\nstdout:\n{}\nstderr:\n{}", self.stdout().join("\n"), self.stderr())
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(self.url()).expect("url").connect().await.expect("connects")
    }

    pub async fn admin(&self, token: &str) -> pb::messaging_admin_client::MessagingAdminClient<Authed> {
        let bearer = BearerToken(Some(token.to_owned()));
        pb::messaging_admin_client::MessagingAdminClient::with_interceptor(self.channel().await, bearer)
    }

    pub async fn conv(&self, token: &str) -> pb::conversation_messages_client::ConversationMessagesClient<Authed> {
        let bearer = BearerToken(Some(token.to_owned()));
        pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(self.channel().await, bearer)
    }

    /// The end users of the token's tenant.
    pub async fn end_user_ids(&self, token: &str) -> Vec<String> {
        crate::helpers::all_end_user_ids(&mut self.admin(token).await).await
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        http().get(format!("{}/metrics", self.url())).send().await.unwrap().text().await.unwrap()
    }

    /// Sends `Ping` to `end_user_ids` and returns the request id.
    pub async fn send_ping(&self, token: &str, end_user_ids: Vec<String>) -> String {
        self.conv(token)
            .await
            .send_conversation_messages(pb::SendConversationMessagesRequest {
                message_definition_name: "Ping".into(),
                messaging_end_user_ids: end_user_ids,
                ..Default::default()
            })
            .await
            .expect("the send is accepted")
            .into_inner()
            .request_id
    }

    /// Follows the request until `Completed` (bounded by `within`) and returns the last record.
    pub async fn completed(&self, token: &str, request_id: &str, within: Duration) -> pb::ConvMessageSendRequest {
        use tokio_stream::StreamExt;
        let mut stream = self
            .conv(token)
            .await
            .watch_request_status(pb::WatchRequestStatusRequest {
                request_id: request_id.into(),
                follow_receipts: false,
            })
            .await
            .expect("watch starts")
            .into_inner();
        let mut last = None;
        let done = tokio::time::timeout(within, async {
            while let Some(update) = stream.next().await {
                last = update.expect("an update").request;
            }
        })
        .await;
        assert!(done.is_ok(), "the request was not Completed within {within:?}; last seen: {last:?}");
        let last = last.expect("at least one update");
        assert_eq!(last.request_status, pb::RequestStatus::Completed as i32, "{last:?}");
        last
    }

    /// SIGKILL: the process dies at once, holding whatever it had claimed.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        self.child.wait().await.expect("the killed process is reaped");
    }

    /// SIGTERM, then waits for the process to drain and exit 0.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("stopped in time").unwrap();
        assert!(status.success(), "convmsg exited {status}; stderr:\n{}", self.stderr());
    }
}

/// An HTTP client (reqwest with rustls needs a crypto provider, which no in-process
/// server installed here).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A config file in `dir` (no listener, database or token: the tests set those as they
/// check): the log provider writing to `dir/sent.jsonl`, a `log` channel `sms` and a
/// `Ping` component, `users` end users on `sms` (platform keys `user-0`, …), a webhook
/// channel `hooks` delivering to `hook` when one is given, and the TOML in `extra`.
pub fn write_config(dir: &Path, users: usize, hook: Option<&str>, extra: &str) -> PathBuf {
    let path = dir.join("convmsg.toml");
    let sent = dir.join("sent.jsonl");
    let mut config = format!(
        "{extra}\n[providers.log]\npath = {sent:?}\n\n[[channels]]\ndeveloper_name = \"sms\"\nmessage_type = \"Text\"\nprovider = \"log\"\n"
    );
    if let Some(hook) = hook {
        config += &format!(
            "\n[[channels]]\ndeveloper_name = \"hooks\"\nmessage_type = \"Custom\"\nprovider = \"webhook\"\nprovider_options = {{ url = \"{hook}\" }}\n"
        );
    }
    config += "\n[[definitions]]\napi_name = \"Ping\"\ntext_layout = \"ping\"\n";
    let channel = if hook.is_some() { "hooks" } else { "sms" };
    for i in 0..users {
        config += &format!(
            "\n[[end_users]]\nchannel = \"{channel}\"\nmessaging_platform_key = \"user-{i}\"\nconsent_status = \"ExplicitlyOptedIn\"\n"
        );
    }
    std::fs::write(&path, config).expect("the config file is written");
    path
}
