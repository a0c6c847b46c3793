//! 16.6 — a tenant's webhook URL cannot make the server reach inside its network: only
//! https (http where the operator allows it), only public addresses — checked on the
//! address the connection uses — unless the operator lists the network.

use convmsg::grpc::pb;
use tonic::Code;

use super::receiver::Receiver;
use super::webhook_secrets::{send_and_deliver, webhook_fixture};
use crate::helpers::*;

const SECRET: &str = "whsec_ZGVmYXVsdC1zaWduaW5nLWtleS1mb3ItdGVzdHM=";

/// A server that signs for tenant `default`, with webhook rules set by `adjust`.
async fn spawn(adjust: impl FnOnce(&mut convmsg::providers::config::WebhookProviderConfig)) -> TestApp {
    spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.providers.webhook.secret = Some(SECRET.into());
        adjust(&mut c.providers.webhook);
    })
    .await
}

async fn refused(app: &TestApp, url: &str) -> pb::MessageStatus {
    let fx = webhook_fixture(app, &app.token, "hook", url).await;
    let message = send_and_deliver(app, &app.token, &fx).await;
    assert_eq!(message.status, pb::MessageState::Failed as i32, "{message:?}");
    assert_eq!(message.reason, "DestinationNotAllowed", "{message:?}");
    assert_eq!(message.attempts, 1, "refused once, never retried: {message:?}");
    message
}

#[tokio::test]
async fn a_webhook_pointed_at_a_loopback_address_is_refused_and_nothing_reaches_it() {
    let app = spawn(|w| w.allow_http = true).await;
    let inside = Receiver::start().await;

    refused(&app, &inside.url).await;

    assert!(inside.deliveries().is_empty(), "the server posted to a loopback address");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_at_connect_time() {
    let app = spawn(|w| w.allow_http = true).await;
    let inside = Receiver::start().await;
    let by_name = inside.url.replace("127.0.0.1", "localhost");

    refused(&app, &by_name).await;

    assert!(inside.deliveries().is_empty(), "the server posted to localhost");
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused_without_connecting() {
    let app = spawn(|w| w.allow_http = true).await;

    refused(&app, "http://169.254.169.254/latest/meta-data/").await;
}

#[tokio::test]
async fn plain_http_is_refused_unless_the_operator_allows_it() {
    let app = spawn(|w| w.allowed_networks = vec!["127.0.0.0/8".into()]).await;
    let inside = Receiver::start().await;

    refused(&app, &inside.url).await;

    assert!(inside.deliveries().is_empty(), "the server posted over plain http");
}

#[tokio::test]
async fn a_network_the_operator_allows_is_reached() {
    let app = spawn(|w| {
        w.allow_http = true;
        w.allowed_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let gateway = Receiver::start().await;
    let fx = webhook_fixture(&app, &app.token, "hook", &gateway.url).await;

    let message = send_and_deliver(&app, &app.token, &fx).await;

    assert_eq!(message.status, pb::MessageState::Success as i32, "{message:?}");
    assert_eq!(gateway.deliveries().len(), 1);
}

#[tokio::test]
async fn a_webhook_channel_with_a_file_or_gopher_url_is_refused_when_saved_naming_the_field() {
    let app = spawn(|_| {}).await;
    let mut admin = app.admin().await;
    for url in ["file:///etc/passwd", "gopher://127.0.0.1:70/_stats", "127.0.0.1:22"] {
        let channel = pb::Channel {
            developer_name: "hook".into(),
            message_type: pb::MessageType::Custom as i32,
            provider: "webhook".into(),
            is_active: true,
            provider_options: [("url".to_owned(), url.to_owned())].into(),
            ..Default::default()
        };
        let status = admin.upsert_channel(pb::UpsertChannelRequest { channel: Some(channel) }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{url}");
        assert_eq!(violations(&status)[0].0, "channel.provider_options.url", "{url}");
    }
}
