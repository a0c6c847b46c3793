//! 16.1 — webhook signing secrets belong to a tenant: no tenant can get a payload signed
//! with another tenant's key, by naming its channel like theirs or by relying on a
//! default secret the operator gave to someone else.

use convmsg::grpc::pb;

use super::receiver::Receiver;
use crate::helpers::*;

/// Tenant `default`'s own key for its channel `a_gateway`.
const A_SECRET: &str = "whsec_dGVuYW50LWEtZ2F0ZXdheS1zaWduaW5nLWtleQ==";
/// A key the operator set as the default secret.
const DEFAULT_SECRET: &str = "whsec_ZGVmYXVsdC1zaWduaW5nLWtleS1mb3ItdGVzdHM=";

/// No dispatcher loop (tests deliver with `run_once`), and webhooks may reach the
/// receivers on loopback over plain HTTP.
pub fn reach_loopback(c: &mut convmsg::config::Config) {
    c.dispatch.enabled = false;
    c.providers.webhook.allow_http = true;
    c.providers.webhook.allowed_networks = vec!["127.0.0.0/8".into()];
}

/// As `token`'s tenant: a webhook channel named `developer_name` delivering to `url`, a
/// component and one end user.
pub async fn webhook_fixture(app: &TestApp, token: &str, developer_name: &str, url: &str) -> Fixture {
    let (name, url) = (developer_name.to_owned(), url.to_owned());
    app.provision_custom(token, 1, move |c| {
        c.developer_name = name;
        c.provider = "webhook".into();
        c.message_type = pb::MessageType::Custom as i32;
        c.provider_options.insert("url".into(), url);
    })
    .await
}

/// Sends the fixture's request as `token`, delivers it, and returns its one message.
pub async fn send_and_deliver(app: &TestApp, token: &str, fx: &Fixture) -> pb::MessageStatus {
    let mut conv = app.conv_as(Some(token)).await;
    let reply = conv.send_conversation_messages(fx.request()).await.expect("accepted").into_inner();
    app.dispatcher.run_once().await.expect("delivery ran");
    let record = conv
        .get_request_status(pb::GetRequestStatusRequest { request_id: reply.request_id })
        .await
        .expect("the record")
        .into_inner()
        .request
        .expect("a record");
    record.messages.into_iter().next().expect("one message")
}

#[tokio::test]
async fn a_tenant_naming_its_channel_like_another_tenants_gets_nothing_signed_with_that_tenants_secret() {
    let app = spawn_app_with(|c| {
        reach_loopback(c);
        let tenant = c.providers.webhook.tenants.entry("default".into()).or_default();
        tenant.secrets.insert("a_gateway".into(), A_SECRET.into());
    })
    .await;
    let (a_gateway, b_gateway) = (Receiver::start().await, Receiver::start().await);
    let a = webhook_fixture(&app, &app.token, "a_gateway", &a_gateway.url).await;
    let b = webhook_fixture(&app, &app.other_token, "a_gateway", &b_gateway.url).await;

    let b_message = send_and_deliver(&app, &app.other_token, &b).await;

    assert!(
        b_gateway.deliveries().iter().all(|d| !d.verifies_with(A_SECRET)),
        "tenant other received a payload signed with tenant default's secret"
    );
    assert_eq!(b_message.status, pb::MessageState::Failed as i32, "{b_message:?}");
    assert_eq!(b_message.reason, "ProviderMisconfigured");

    // Tenant default's own channel is still signed with its secret.
    let a_message = send_and_deliver(&app, &app.token, &a).await;
    assert_eq!(a_message.status, pb::MessageState::Success as i32, "{a_message:?}");
    let delivered = a_gateway.deliveries();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].verifies_with(A_SECRET));
}

#[tokio::test]
async fn the_default_secret_signs_only_for_the_tenant_it_was_given_to() {
    let app = spawn_app_with(|c| {
        reach_loopback(c);
        c.providers.webhook.secret = Some(DEFAULT_SECRET.into());
    })
    .await;
    let (mine, theirs) = (Receiver::start().await, Receiver::start().await);
    let own = webhook_fixture(&app, &app.token, "gateway", &mine.url).await;
    let other = webhook_fixture(&app, &app.other_token, "gateway", &theirs.url).await;

    let refused = send_and_deliver(&app, &app.other_token, &other).await;

    assert!(theirs.deliveries().is_empty(), "a tenant that was given no secret received a signed payload");
    assert_eq!(refused.status, pb::MessageState::Failed as i32, "{refused:?}");
    assert_eq!(refused.reason, "ProviderMisconfigured");

    let delivered = send_and_deliver(&app, &app.token, &own).await;
    assert_eq!(delivered.status, pb::MessageState::Success as i32, "{delivered:?}");
    assert!(mine.deliveries()[0].verifies_with(DEFAULT_SECRET));
}

#[tokio::test]
async fn each_tenant_is_signed_with_its_own_secret_and_the_payload_names_the_tenant() {
    const OTHER_SECRET: &str = "whsec_b3RoZXItdGVuYW50LWRlZmF1bHQta2V5";
    let app = spawn_app_with(|c| {
        reach_loopback(c);
        c.providers.webhook.secret = Some(DEFAULT_SECRET.into());
        c.providers.webhook.tenants.entry("other".into()).or_default().secret = Some(OTHER_SECRET.into());
    })
    .await;
    let (mine, theirs) = (Receiver::start().await, Receiver::start().await);
    let own = webhook_fixture(&app, &app.token, "gateway", &mine.url).await;
    let other = webhook_fixture(&app, &app.other_token, "gateway", &theirs.url).await;

    for (token, fx) in [(&app.token, &own), (&app.other_token, &other)] {
        let message = send_and_deliver(&app, token, fx).await;
        assert_eq!(message.status, pb::MessageState::Success as i32, "{message:?}");
    }

    let (to_default, to_other) = (&mine.deliveries()[0], &theirs.deliveries()[0]);
    assert!(to_default.verifies_with(DEFAULT_SECRET) && !to_default.verifies_with(OTHER_SECRET));
    assert!(to_other.verifies_with(OTHER_SECRET) && !to_other.verifies_with(DEFAULT_SECRET));
    assert_eq!(to_default.json()["data"]["tenant"], "default");
    assert_eq!(to_other.json()["data"]["tenant"], "other");
}

/// Runs `convmsg serve` with `config` (TOML) and returns its stderr once it exits, which
/// it must do within 30 s and unsuccessfully.
pub async fn refused_start(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("convmsg.toml");
    let database = format!("sqlite://{}", dir.path().join("convmsg.db").display());
    std::fs::write(&path, format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"{database}\"\n{config}")).unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("CONVMSG_LISTEN")
        .env_remove("CONVMSG_DATABASE_URL")
        .env_remove("CONVMSG_BOOTSTRAP_TOKEN")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("convmsg exited within 30 s")
        .expect("convmsg ran");
    assert!(!output.status.success(), "convmsg started with {config}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_old_tenant_blind_secrets_table_stops_the_start_naming_what_to_write_instead() {
    let stderr = refused_start(&format!("[providers.webhook.secrets]\nbyoc = \"{A_SECRET}\"\n")).await;

    assert!(stderr.contains("providers.webhook.secrets.byoc is no longer read"), "{stderr}");
    assert!(stderr.contains("[providers.webhook.tenants.<tenant>.secrets]"), "{stderr}");
    assert!(!stderr.contains(A_SECRET.trim_start_matches("whsec_")), "the secret is not echoed: {stderr}");
}

#[tokio::test]
async fn a_declared_webhook_channel_that_no_secret_of_its_tenant_signs_stops_the_start() {
    let stderr = refused_start(&format!(
        "[providers.webhook]\nsecret = \"{DEFAULT_SECRET}\"\n\
         [[channels]]\ntenant = \"acme\"\ndeveloper_name = \"gw\"\nmessage_type = \"Custom\"\nprovider = \"webhook\"\n\
         provider_options = {{ url = \"https://gw.example.com/hook\" }}\n"
    ))
    .await;

    assert!(stderr.contains("channels[0] (gw) is a webhook channel of tenant acme"), "{stderr}");
    assert!(stderr.contains("providers.webhook.tenants.acme.secret"), "{stderr}");
}

#[tokio::test]
async fn a_tenants_secret_given_in_the_environment_signs_its_declared_channel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("convmsg.toml");
    let database = format!("sqlite://{}", dir.path().join("convmsg.db").display());
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database}\"\n[[channels]]\ntenant = \"acme\"\n\
             developer_name = \"gw\"\nmessage_type = \"Custom\"\nprovider = \"webhook\"\n\
             provider_options = {{ url = \"https://gw.example.com/hook\" }}\n"
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_convmsg"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("CONVMSG_PROVIDERS__WEBHOOK__TENANTS__acme__SECRET", A_SECRET)
        .env_remove("CONVMSG_LISTEN")
        .env_remove("CONVMSG_DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let served = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("convmsg serving") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);

    // Without the variable the start is refused (the declared channel has no secret).
    assert!(served, "the secret from CONVMSG_PROVIDERS__WEBHOOK__TENANTS__acme__SECRET was not used");
    child.kill().await.unwrap();
}
