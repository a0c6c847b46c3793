//! The real `convmsg` binary as a child process (`convmsg serve --config …`), for the
//! tests that need a whole process: replicas, crashes, a full disk, the settings.

use convmsg::grpc::pb::conversation_messages_client::ConversationMessagesClient;
use convmsg::grpc::pb::messaging_admin_client::MessagingAdminClient;
use tonic::transport::Channel;

use super::{Authed, BearerToken, all_end_user_ids};

/// One `convmsg serve` process of the real binary; killed when dropped.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    /// The address it logged in its "convmsg serving" line.
    pub addr: String,
}

/// Starts the real binary with `config` and waits (bounded) until it serves;
/// `hostname` names it on the leases it takes.
pub async fn start_server_process(config: &std::path::Path, hostname: Option<&str>) -> ServerProcess {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"));
    command.args(["serve", "--config"]).arg(config);
    run_server_process(command, hostname).await
}

/// Like `start_server_process`, with every file the server writes limited to
/// `max_file_kib` (`ulimit -f`, with SIGXFSZ ignored, so a write past the limit fails
/// with EFBIG as on a full disk instead of killing the process).
pub async fn start_server_process_with_file_limit(config: &std::path::Path, max_file_kib: u64) -> ServerProcess {
    let mut command = tokio::process::Command::new("bash");
    command
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f {max_file_kib} && exec \"$0\" serve --config \"$1\""))
        .arg(env!("CARGO_BIN_EXE_convmsg"))
        .arg(config);
    run_server_process(command, None).await
}

async fn run_server_process(mut command: tokio::process::Command, hostname: Option<&str>) -> ServerProcess {
    use tokio::io::{AsyncBufReadExt, BufReader};
    command
        .env_remove("CONVMSG_LISTEN")
        .env_remove("CONVMSG_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(name) = hostname {
        command.env("HOSTNAME", name);
    }
    let mut child = command.spawn().expect("the convmsg binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let addr = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("readable stdout") {
            let log: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if log["message"] == "convmsg serving" {
                return log["listen"].as_str().expect("a listen address").to_owned();
            }
        }
        panic!("convmsg {hostname:?} exited before serving");
    })
    .await
    .expect("the server started within 30 s");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ServerProcess { child, addr }
}

/// A config file for the real binary: `database_url`, a bootstrap `token`, a webhook
/// channel `hooks` delivering to `hook` (plain HTTP to loopback allowed, where the
/// tests' receivers listen), a `Ping` component and `users` end users
/// (platform keys `user-0`, `user-1`, …), plus the TOML sections in `extra`.
pub fn write_webhook_config(
    dir: &std::path::Path,
    database_url: &str,
    token: &str,
    hook: &str,
    users: usize,
    extra: &str,
) -> std::path::PathBuf {
    let path = dir.join("convmsg.toml");
    let users: String = (0..users)
        .map(|i| {
            format!("[[end_users]]\nchannel = \"hooks\"\nmessaging_platform_key = \"user-{i}\"\nconsent_status = \"ExplicitlyOptedIn\"\n")
        })
        .collect();
    let config = format!(
        r#"listen = "127.0.0.1:0"
database_url = "{database_url}"
bootstrap_token = "{token}"
{extra}
[providers.webhook]
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
timeout_ms = 60000
allow_http = true
allowed_networks = ["127.0.0.0/8"]
[[channels]]
developer_name = "hooks"
message_type = "Custom"
provider = "webhook"
provider_options = {{ url = "{hook}" }}
[[definitions]]
api_name = "Ping"
text_layout = "ping"
{users}"#
    );
    std::fs::write(&path, config).expect("the config file is written");
    path
}

impl ServerProcess {
    pub async fn admin(&self, token: &str) -> MessagingAdminClient<Authed> {
        MessagingAdminClient::with_interceptor(self.channel().await, BearerToken(Some(token.to_owned())))
    }

    /// The end users the config declared.
    pub async fn end_user_ids(&self, token: &str) -> Vec<String> {
        all_end_user_ids(&mut self.admin(token).await).await
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).expect("url").connect().await.expect("connects")
    }

    pub async fn conv(&self, token: &str) -> ConversationMessagesClient<Authed> {
        ConversationMessagesClient::with_interceptor(self.channel().await, BearerToken(Some(token.to_owned())))
    }
}
