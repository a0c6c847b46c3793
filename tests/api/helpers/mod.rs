#![allow(dead_code)] // shared by every test module; not all use everything
//! Spawns the real server in-process on 127.0.0.1:0 with a fresh database, and gives
//! tests authenticated gRPC clients and provisioning shortcuts.
//!
//! The backend comes from `CONVMSG_TEST_DATABASE`: unset or `sqlite` — a SQLite file
//! in a temporary directory; `postgres` — a new database with a random name on
//! `CONVMSG_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! dropped when the test ends.

use std::net::SocketAddr;
use std::sync::Arc;

use convmsg::clock::{Clock, ManualClock};
use convmsg::config::{Config, TenantConfig, TokenConfig};
use convmsg::domain::principal::{generate_token, hash_token};
use convmsg::grpc::pb;
use convmsg::grpc::pb::conversation_messages_client::ConversationMessagesClient;
use convmsg::grpc::pb::messaging_admin_client::MessagingAdminClient;
use convmsg::server::app::App;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

mod database;
mod process;

pub use database::{Backend, TestDatabase, backend};
pub use process::{ServerProcess, start_server_process, start_server_process_with_file_limit, write_webhook_config};

pub type Authed = InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer <token>` to every call (no header when `None`).
#[derive(Clone)]
pub struct BearerToken(pub Option<String>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = MetadataValue::try_from(format!("Bearer {token}")).expect("ascii token");
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    /// Tenant `default`, every scope.
    pub token: String,
    /// Tenant `default`, `read` only.
    pub read_token: String,
    /// Tenant `other`, every scope.
    pub other_token: String,
    pub clock: ManualClock,
    pub db: TestDatabase,
    /// Holds the log provider's output file.
    _log_dir: tempfile::TempDir,
    pub dispatcher: Arc<convmsg::dispatch::Dispatcher>,
    /// The status-event sender, for `run_once` when `events.enabled` is off.
    pub event_sender: Arc<convmsg::events::EventSender>,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

fn token_config(hash: String, scopes: &[&str]) -> TokenConfig {
    TokenConfig {
        sha256: hash,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        label: "test".into(),
        expires_at: None,
    }
}

/// The server without its dispatcher: accepted requests stay `Pending`, for tests of
/// the doors' shapes.
pub async fn spawn_accept_only() -> TestApp {
    spawn_app_with(|c| c.dispatch.enabled = false).await
}

/// The server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The server with settings changed by `adjust`.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with_providers(adjust, Vec::new()).await
}

/// The server with in-process providers replacing the configured ones of the same name.
pub async fn spawn_app_with_providers(
    adjust: impl FnOnce(&mut Config),
    providers: Vec<Arc<dyn convmsg::providers::Provider>>,
) -> TestApp {
    spawn_app_on(TestDatabase::create().await, adjust, providers).await
}

/// The server on the given database (the fault tests need PostgreSQL whatever the
/// suite's backend).
pub async fn spawn_app_on(
    db: TestDatabase,
    adjust: impl FnOnce(&mut Config),
    providers: Vec<Arc<dyn convmsg::providers::Provider>>,
) -> TestApp {
    let (token, read_token, other_token) = (generate_token(), generate_token(), generate_token());
    let mut config = Config { listen: "127.0.0.1:0".into(), database_url: db.url.clone(), ..Config::default() };
    config.tenants = vec![
        TenantConfig {
            name: "default".into(),
            tokens: vec![
                token_config(hash_token(&token), &["send", "read", "admin"]),
                token_config(hash_token(&read_token), &["read"]),
            ],
        },
        TenantConfig {
            name: "other".into(),
            tokens: vec![token_config(hash_token(&other_token), &["send", "read", "admin"])],
        },
    ];
    // The log provider writes to a file of the test's, not into the test output.
    let log_dir = tempfile::tempdir().expect("temp dir");
    config.providers.log.path = Some(log_dir.path().join("sent.jsonl").display().to_string());
    adjust(&mut config);
    let clock = ManualClock::new(1_767_225_600_000); // 2026-01-01T00:00:00Z
    let app = App::build_with(config, Arc::new(clock.clone()) as Arc<dyn Clock>, providers).await.expect("app builds");
    let dispatcher = app.dispatcher();
    let event_sender = app.event_sender();
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        addr,
        token,
        read_token,
        other_token,
        clock,
        db,
        dispatcher,
        event_sender,
        shutdown,
        server: Some(server),
        _log_dir: log_dir,
    }
}

impl TestApp {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).expect("url").connect().await.expect("connects")
    }

    pub async fn conv_as(&self, token: Option<&str>) -> ConversationMessagesClient<Authed> {
        ConversationMessagesClient::with_interceptor(self.channel().await, BearerToken(token.map(str::to_owned)))
    }

    pub async fn conv(&self) -> ConversationMessagesClient<Authed> {
        self.conv_as(Some(&self.token)).await
    }

    pub async fn admin_as(&self, token: Option<&str>) -> MessagingAdminClient<Authed> {
        MessagingAdminClient::with_interceptor(self.channel().await, BearerToken(token.map(str::to_owned)))
    }

    pub async fn admin(&self) -> MessagingAdminClient<Authed> {
        self.admin_as(Some(&self.token)).await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server ran cleanly");
        }
    }

    /// Provisions, as `token`'s tenant, a channel, a messaging component and `n` end users.
    pub async fn provision_as(&self, token: &str, n: usize) -> Fixture {
        self.provision_custom(token, n, |_| {}).await
    }

    /// Like `provision`, with the channel adjusted (provider, type, consent level, rate).
    pub async fn provision_custom(&self, token: &str, n: usize, adjust: impl FnOnce(&mut pb::Channel)) -> Fixture {
        let mut admin = self.admin_as(Some(token)).await;
        let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let mut channel = pb::Channel {
            developer_name: format!("sms_{suffix}"),
            message_type: pb::MessageType::Text as i32,
            provider: "log".into(),
            messaging_platform_key: "+15550100".into(),
            is_active: true,
            ..Default::default()
        };
        adjust(&mut channel);
        let channel = admin
            .upsert_channel(pb::UpsertChannelRequest { channel: Some(channel) })
            .await
            .expect("channel")
            .into_inner()
            .channel
            .unwrap();
        let definition = admin
            .upsert_message_definition(pb::UpsertMessageDefinitionRequest {
                message_definition: Some(notice_definition(&format!("Notice_{suffix}"))),
            })
            .await
            .expect("definition")
            .into_inner()
            .message_definition
            .unwrap();
        let users = admin
            .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest {
                messaging_end_users: (0..n)
                    .map(|i| pb::MessagingEndUser {
                        messaging_channel_id: channel.id.clone(),
                        messaging_platform_key: format!("+1555{suffix}{i:04}"),
                        name: format!("User {i}"),
                        messaging_consent_status: pb::ConsentStatus::ExplicitlyOptedIn as i32,
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .expect("end users")
            .into_inner()
            .messaging_end_users;
        Fixture { channel, definition, end_user_ids: users.into_iter().map(|u| u.id).collect() }
    }

    /// An end user of the `default` tenant, read back over the admin API.
    pub async fn end_user(&self, id: &str) -> pb::MessagingEndUser {
        self.admin()
            .await
            .get_messaging_end_user(pb::GetMessagingEndUserRequest { id: id.into() })
            .await
            .expect("end user")
            .into_inner()
            .messaging_end_user
            .expect("a record")
    }

    /// Sets an end user's consent status (after a request was accepted, say).
    pub async fn set_consent(&self, id: &str, status: pb::ConsentStatus) {
        let user = self.end_user(id).await;
        self.admin()
            .await
            .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest {
                messaging_end_users: vec![pb::MessagingEndUser { messaging_consent_status: status as i32, ..user }],
            })
            .await
            .expect("consent updated");
    }

    pub async fn provision(&self, n: usize) -> Fixture {
        self.provision_as(&self.token.clone(), n).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A messaging component with the parameters the tests use:
/// CustomerName (Text, required), Amount (Double), DueDate (Date), Tags (Text list).
pub fn notice_definition(api_name: &str) -> pb::MessageDefinition {
    let param =
        |name: &str, value_type: pb::ParameterValueType, is_required: bool, is_list: bool| pb::MessageParameter {
            name: name.into(),
            value_type: value_type as i32,
            is_required,
            is_list,
            ..Default::default()
        };
    pb::MessageDefinition {
        api_name: api_name.into(),
        r#type: pb::DefinitionType::Notification as i32,
        is_active: true,
        text_layout: "Hi {!CustomerName}, {!Amount} is due on {!DueDate}.".into(),
        parameters: vec![
            param("CustomerName", pb::ParameterValueType::Text, true, false),
            param("Amount", pb::ParameterValueType::Double, false, false),
            param("DueDate", pb::ParameterValueType::Date, false, false),
            param("Tags", pb::ParameterValueType::Text, false, true),
        ],
        ..Default::default()
    }
}

pub struct Fixture {
    pub channel: pb::Channel,
    pub definition: pb::MessageDefinition,
    pub end_user_ids: Vec<String>,
}

pub fn text_param(name: &str, value: &str) -> pb::MessageDefinitionInputParameter {
    use pb::message_definition_input_parameter::Value;
    pb::MessageDefinitionInputParameter { name: name.into(), value: Some(Value::TextValue(value.into())) }
}

impl Fixture {
    /// A valid request to every end user of the fixture.
    pub fn request(&self) -> pb::SendConversationMessagesRequest {
        pb::SendConversationMessagesRequest {
            message_definition_name: self.definition.api_name.clone(),
            messaging_definition_input_parameters: vec![text_param("CustomerName", "Ada")],
            messaging_end_user_ids: self.end_user_ids.clone(),
            ..Default::default()
        }
    }
}

/// The field violations of a status, as (field, description) pairs.
pub fn violations(status: &Status) -> Vec<(String, String)> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|br| br.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect())
        .unwrap_or_default()
}

/// The Salesforce error code carried in `ErrorInfo.reason`.
pub fn error_code(status: &Status) -> String {
    use tonic_types::StatusExt;
    status.get_error_details().error_info().map(|i| i.reason.clone()).unwrap_or_default()
}

/// Every end user of the token's tenant, all pages.
pub async fn all_end_user_ids(admin: &mut MessagingAdminClient<Authed>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = admin
            .list_messaging_end_users(pb::ListMessagingEndUsersRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .expect("end users listed")
            .into_inner();
        ids.extend(page.messaging_end_users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}
