//! `convmsg demo`: the whole job in one command. Starts an embedded server (SQLite in a
//! temporary directory, the log provider), provisions a channel, a messaging component
//! and end users over gRPC like any caller, sends one request, follows it to
//! `Completed`, prints the record and what the provider sent, and cleans up.

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::{ClientArgs, DemoArgs};
use crate::config::{Config, LogFormat, TenantConfig, TokenConfig};
use crate::domain::principal::{generate_token, hash_token};
use crate::grpc::pb;
use crate::server::app::App;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let recipients = args.recipients.clamp(1, 100);
    let dir = std::env::temp_dir().join(format!("convmsg-demo-{}-{:x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = demo(&dir, recipients).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn demo(dir: &std::path::Path, recipients: usize) -> anyhow::Result<()> {
    let token = generate_token();
    let sent_log = dir.join("sent.jsonl");
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.join("demo.db").display()),
        ..Config::default()
    };
    config.log.format = LogFormat::Pretty;
    config.log.filter = "warn".into();
    config.tenants = vec![TenantConfig {
        name: "default".into(),
        tokens: vec![TokenConfig {
            sha256: hash_token(&token),
            scopes: vec!["send".into(), "read".into(), "admin".into()],
            label: "demo".into(),
            expires_at: None,
        }],
    }];
    config.providers.log.path = Some(sent_log.display().to_string());
    config.providers.log.include_body = true;
    config.dispatch.poll_interval_ms = 100;
    // The demo exports nothing (the standard OTEL_* variables still switch export on).
    let telemetry = crate::telemetry::init(&config.log, &config.telemetry)?;

    let app = App::build_traced(config, telemetry).await?;
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    println!("convmsg demo: an embedded server on {addr} (SQLite in {}, log provider)\n", dir.display());

    let client_args = ClientArgs { server: format!("http://{addr}"), token };
    let (channel, bearer) = crate::cli::client::connect(&client_args).await?;
    let mut admin = pb::messaging_admin_client::MessagingAdminClient::with_interceptor(channel.clone(), bearer.clone());
    let mut conv = pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(channel, bearer);

    // 1. Provision.
    let sms = admin
        .upsert_channel(pb::UpsertChannelRequest {
            channel: Some(pb::Channel {
                developer_name: "demo_sms".into(),
                master_label: "Demo SMS".into(),
                message_type: pb::MessageType::Text as i32,
                consent_type: pb::ChannelConsentLevel::ExplicitOptIn as i32,
                provider: "log".into(),
                messaging_platform_key: "+15550100".into(),
                is_active: true,
                ..Default::default()
            }),
        })
        .await
        .map_err(crate::cli::client::explain)?
        .into_inner()
        .channel
        .context("no channel")?;
    let text = |name: &str, required: bool, value_type: pb::ParameterValueType| pb::MessageParameter {
        name: name.into(),
        value_type: value_type as i32,
        is_required: required,
        ..Default::default()
    };
    admin
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest {
            message_definition: Some(pb::MessageDefinition {
                api_name: "OrderShipped".into(),
                master_label: "Order shipped".into(),
                r#type: pb::DefinitionType::Notification as i32,
                is_active: true,
                text_layout: "Hi {!CustomerName}, order {!OrderNumber} ships on {!ShipDate}.".into(),
                parameters: vec![
                    text("CustomerName", true, pb::ParameterValueType::Text),
                    text("OrderNumber", true, pb::ParameterValueType::Text),
                    text("ShipDate", false, pb::ParameterValueType::Date),
                ],
                ..Default::default()
            }),
        })
        .await
        .map_err(crate::cli::client::explain)?;
    let users = admin
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest {
            messaging_end_users: (0..recipients)
                .map(|i| pb::MessagingEndUser {
                    messaging_channel_id: sms.id.clone(),
                    messaging_platform_key: format!("+1555010{i:04}"),
                    name: format!("Demo user {}", i + 1),
                    // The last one has opted out: consent is checked at send time.
                    messaging_consent_status: if i + 1 == recipients && recipients > 1 {
                        pb::ConsentStatus::OptedOut
                    } else {
                        pb::ConsentStatus::ExplicitlyOptedIn
                    } as i32,
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .map_err(crate::cli::client::explain)?
        .into_inner()
        .messaging_end_users;
    println!(
        "1. provisioned channel demo_sms (SMS, explicit opt-in required), component OrderShipped, {} end users{}",
        users.len(),
        if recipients > 1 { " (the last one opted out)" } else { "" }
    );

    // 2. Send.
    use pb::message_definition_input_parameter::Value;
    let param =
        |name: &str, value: Value| pb::MessageDefinitionInputParameter { name: name.into(), value: Some(value) };
    let reply = conv
        .send_conversation_messages(pb::SendConversationMessagesRequest {
            message_definition_name: "OrderShipped".into(),
            messaging_definition_input_parameters: vec![
                param("CustomerName", Value::TextValue("Ada".into())),
                param("OrderNumber", Value::TextValue("A-1042".into())),
                param("ShipDate", Value::DateValue("2026-12-01".into())),
            ],
            is_enforce_messaging_channel_consent: Some(true),
            messaging_end_user_ids: users.iter().map(|u| u.id.clone()).collect(),
            ..Default::default()
        })
        .await
        .map_err(crate::cli::client::explain)?
        .into_inner();
    println!(
        "2. SendConversationMessages → requestId {} with {} message identifiers\n3. following it to Completed:",
        reply.request_id,
        reply.message_identifiers.len()
    );

    // 3. Watch, 4. print.
    let record = crate::cli::client::watch(&mut conv, &reply.request_id).await?;
    println!("\n4. the ConvMessageSendRequest record:\n");
    crate::cli::client::print_record(&record);
    println!("\n5. what the log provider sent ({}):\n", sent_log.display());
    for line in std::fs::read_to_string(&sent_log).unwrap_or_default().lines() {
        println!("  {line}");
    }

    shutdown.cancel();
    server.await.context("server task")??;
    println!("\nDone. Run `convmsg serve` for a server that keeps running.");
    Ok(())
}
