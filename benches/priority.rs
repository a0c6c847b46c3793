//! A transactional request behind a bulk backlog:
//! `cargo bench --bench priority [-- BULK HOLD_MS]`.
//!
//! Starts the real server in-process (SQLite in a temporary directory, default
//! durability, the in-progress limit at its default of 200) with a slow provider that
//! holds every send HOLD_MS (default 500 ms), accepts BULK (default 10,000) bulk
//! requests of one message each as fast as 32 callers can, then one transactional request,
//! and measures how long that one takes to complete while the bulk backlog drains —
//! against the bound the README states (the next slot that frees, so about HOLD_MS,
//! whatever the size of the backlog). Bulk keeps draining meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use convmsg::clock::SystemClock;
use convmsg::config::{Config, TenantConfig, TokenConfig};
use convmsg::domain::principal::{generate_token, hash_token};
use convmsg::grpc::pb;
use convmsg::providers::{Delivered, OutboundMessage, Provider, ProviderError, ProviderName};
use convmsg::server::app::App;
use futures_util::StreamExt;
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

/// A receiver that takes `hold` per message, and counts what it delivered.
struct Slow {
    hold: Duration,
    delivered: AtomicU64,
}

#[async_trait]
impl Provider for Slow {
    fn name(&self) -> ProviderName {
        ProviderName::Webhook
    }

    async fn send(&self, _message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        tokio::time::sleep(self.hold).await;
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(Delivered { provider_message_id: None })
    }
}

type Conv = pb::conversation_messages_client::ConversationMessagesClient<
    tonic::service::interceptor::InterceptedService<Channel, Bearer>,
>;

async fn status(client: &mut Conv, id: &str) -> anyhow::Result<i32> {
    let record = client.get_request_status(pb::GetRequestStatusRequest { request_id: id.into() }).await?;
    Ok(record.into_inner().request.map(|r| r.request_status).unwrap_or_default())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let bulk = args.first().copied().unwrap_or(10_000) as usize;
    let hold = Duration::from_millis(args.get(1).copied().unwrap_or(500));

    let dir = tempfile::tempdir()?;
    let token = generate_token();
    let mut config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        ..Config::default()
    };
    config.log.filter = "error".into();
    config.admission.max_concurrent_requests = 100_000;
    config.dispatch.poll_interval_ms = 50;
    config.tenants = vec![TenantConfig {
        name: "default".into(),
        tokens: vec![TokenConfig {
            sha256: hash_token(&token),
            scopes: vec!["send".into(), "read".into(), "admin".into()],
            label: "bench".into(),
            expires_at: None,
        }],
    }];
    let slow = Arc::new(Slow { hold, delivered: AtomicU64::new(0) });
    let app = App::build_with(config, Arc::new(SystemClock), vec![slow.clone() as Arc<dyn Provider>]).await?;
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let bearer = Bearer(MetadataValue::try_from(format!("Bearer {token}"))?);
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut admin = pb::messaging_admin_client::MessagingAdminClient::with_interceptor(channel.clone(), bearer.clone());
    let channel_id = admin
        .upsert_channel(pb::UpsertChannelRequest {
            channel: Some(pb::Channel {
                developer_name: "bench".into(),
                message_type: pb::MessageType::Custom as i32,
                provider: "webhook".into(),
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
                text_layout: "hi".into(),
                ..Default::default()
            }),
        })
        .await?;
    let user = admin
        .upsert_messaging_end_users(pb::UpsertMessagingEndUsersRequest {
            messaging_end_users: vec![pb::MessagingEndUser {
                messaging_channel_id: channel_id,
                messaging_platform_key: "user-1".into(),
                ..Default::default()
            }],
        })
        .await?
        .into_inner()
        .messaging_end_users
        .remove(0)
        .id;
    let request = |priority: pb::Priority| pb::SendConversationMessagesRequest {
        message_definition_name: "Bench".into(),
        messaging_end_user_ids: vec![user.clone()],
        priority: priority as i32,
        ..Default::default()
    };
    let client: Conv = pb::conversation_messages_client::ConversationMessagesClient::with_interceptor(channel, bearer);

    println!(
        "convmsg priority benchmark: {bulk} bulk requests, provider holds {} ms per message, in-progress limit 200, {} cores",
        hold.as_millis(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let started = Instant::now();
    let bulk_request = request(pb::Priority::Bulk);
    let accepted: Vec<String> = futures_util::stream::iter(0..bulk)
        .map(|_| {
            let (mut client, request) = (client.clone(), bulk_request.clone());
            async move { client.send_conversation_messages(request).await.map(|r| r.into_inner().request_id) }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let accepting = started.elapsed();
    let delivered_before = slow.delivered.load(Ordering::Relaxed);

    let mut c = client.clone();
    let t = Instant::now();
    let urgent = c.send_conversation_messages(request(pb::Priority::Transactional)).await?.into_inner().request_id;
    while status(&mut c, &urgent).await? != pb::RequestStatus::Completed as i32 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let urgent_ms = t.elapsed().as_secs_f64() * 1000.0;
    let delivered_then = slow.delivered.load(Ordering::Relaxed);
    let waiting = bulk as u64 - delivered_then.min(bulk as u64);
    println!("accepted {} bulk requests in {:.2} s", accepted.len(), accepting.as_secs_f64());
    println!(
        "transactional request completed in {urgent_ms:.0} ms (bound: the next free slot, ~{} ms) with {waiting} bulk \
         requests still undelivered ahead of it",
        hold.as_millis()
    );

    // Bulk keeps progressing: the rest of the backlog drains.
    let drain = Instant::now();
    let last = accepted.last().cloned().unwrap_or_default();
    while status(&mut c, &last).await? != pb::RequestStatus::Completed as i32 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = slow.delivered.load(Ordering::Relaxed) - delivered_before;
    println!(
        "bulk: {drained} delivered after the backlog formed, the last accepted completed {:.1} s later ({:.0}/s)",
        drain.elapsed().as_secs_f64(),
        drained as f64 / (drain.elapsed().as_secs_f64() + urgent_ms / 1000.0)
    );

    shutdown.cancel();
    server.await??;
    Ok(())
}
