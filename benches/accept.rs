//! Accept-path throughput: `cargo bench --bench accept [-- SECONDS CONNECTIONS IN_FLIGHT]`.
//!
//! Starts the real server in-process (SQLite in a temporary directory, default durability:
//! WAL + synchronous=FULL, dispatcher off so only accepting is measured), provisions one
//! component and one end user, then keeps IN_FLIGHT calls in flight on each of
//! CONNECTIONS HTTP/2 connections for SECONDS, first with `grpc.health.v1/Check` (a
//! near-empty handler on the same listener: the baseline), then with
//! `SendConversationMessages`. Prints calls/s and latency percentiles for both. The load
//! generator shares the machine's cores with the server, so figures are conservative.

use std::sync::Arc;
use std::time::{Duration, Instant};

use convmsg::clock::SystemClock;
use convmsg::config::{Config, TenantConfig, TokenConfig};
use convmsg::domain::principal::{generate_token, hash_token};
use convmsg::grpc::pb;
use convmsg::server::app::App;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

struct Run {
    calls: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

impl Run {
    fn report(&mut self, name: &str) -> f64 {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
            self.latencies_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        let rate = self.calls as f64 / self.elapsed.as_secs_f64();
        println!(
            "{name:<28} {rate:>9.0} calls/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
            pct(0.50),
            pct(0.99),
            self.errors
        );
        rate
    }
}

/// Keeps `in_flight` calls going on each connection until `duration` is over.
async fn load<F, Fut>(channels: &[Channel], in_flight: usize, duration: Duration, call: F) -> Run
where
    F: Fn(Channel) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for channel in channels {
        for _ in 0..in_flight {
            let (channel, call) = (channel.clone(), call.clone());
            tasks.push(tokio::spawn(async move {
                let (mut calls, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
                while start.elapsed() < duration {
                    let t = Instant::now();
                    if call(channel.clone()).await {
                        calls += 1;
                        latencies.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (calls, errors, latencies)
            }));
        }
    }
    let mut run = Run { calls: 0, errors: 0, latencies_us: Vec::new(), elapsed: Duration::ZERO };
    for task in tasks {
        let (calls, errors, latencies) = task.await.expect("load task");
        run.calls += calls;
        run.errors += errors;
        run.latencies_us.extend(latencies);
    }
    run.elapsed = start.elapsed();
    run
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let seconds = args.first().copied().unwrap_or(10);
    let connections = args.get(1).copied().unwrap_or(4) as usize;
    let in_flight = args.get(2).copied().unwrap_or(64) as usize;
    let duration = Duration::from_secs(seconds);

    let dir = tempfile::tempdir()?;
    let token = generate_token();
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Config::default()
    };
    config.log.filter = "error".into();
    config.dispatch.enabled = false;
    config.admission.max_concurrent_requests = 100_000;
    config.tenants = vec![TenantConfig {
        name: "default".into(),
        tokens: vec![TokenConfig {
            sha256: hash_token(&token),
            scopes: vec!["send".into(), "read".into(), "admin".into()],
            label: "bench".into(),
            expires_at: None,
        }],
    }];
    let app = App::build_with(config, Arc::new(SystemClock), Vec::new()).await?;
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let bearer = Bearer(MetadataValue::try_from(format!("Bearer {token}"))?);
    let url = format!("http://{addr}");
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(Channel::from_shared(url.clone())?.connect().await?);
    }
    let mut admin =
        pb::messaging_admin_client::MessagingAdminClient::with_interceptor(channels[0].clone(), bearer.clone());
    let channel_id = admin
        .upsert_channel(pb::UpsertChannelRequest {
            channel: Some(pb::Channel {
                developer_name: "bench".into(),
                message_type: pb::MessageType::Text as i32,
                is_active: true,
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .channel
        .map(|c| c.id)
        .unwrap_or_default();
    admin
        .upsert_message_definition(pb::UpsertMessageDefinitionRequest {
            message_definition: Some(pb::MessageDefinition {
                api_name: "Bench".into(),
                r#type: pb::DefinitionType::Notification as i32,
                is_active: true,
                text_layout: "Hi {!Name}".into(),
                parameters: vec![pb::MessageParameter {
                    name: "Name".into(),
                    value_type: pb::ParameterValueType::Text as i32,
                    is_required: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await?;
    let user = admin
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest {
            messaging_end_users: vec![pb::MessagingEndUser {
                messaging_channel_id: channel_id,
                messaging_platform_key: "+15550000001".into(),
                ..Default::default()
            }],
        })
        .await?
        .into_inner()
        .messaging_end_users
        .remove(0)
        .id;

    println!(
        "convmsg accept benchmark: {seconds} s per run, {connections} connections × {in_flight} calls in flight, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let baseline = load(&channels, in_flight, duration, |channel| async move {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.is_ok()
    })
    .await
    .report("health Check (baseline)");
    let request = pb::SendConversationMessagesRequest {
        message_definition_name: "Bench".into(),
        messaging_definition_input_parameters: vec![pb::MessageDefinitionInputParameter {
            name: "Name".into(),
            value: Some(pb::message_definition_input_parameter::Value::TextValue("Ada".into())),
        }],
        messaging_end_user_ids: vec![user],
        ..Default::default()
    };
    let accepts = load(&channels, in_flight, duration, move |channel| {
        let (bearer, request) = (bearer.clone(), request.clone());
        async move {
            let mut client =
                pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(channel, bearer);
            client.send_conversation_messages(request).await.is_ok()
        }
    })
    .await
    .report("SendConversationMessages");
    println!("accepts / baseline: {:.2}", accepts / baseline);

    shutdown.cancel();
    server.await??;
    Ok(())
}
