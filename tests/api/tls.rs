//! TLS on the listener: a test CA and a server certificate for `localhost`/127.0.0.1 are
//! made at test time; a client that trusts the CA gets gRPC health (h2 by ALPN) and
//! `/healthz` (HTTP/1.1 by ALPN) on the one listener; a plain-text client gets nothing;
//! and the server still shuts down cleanly with TLS connections open.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::helpers::{TestApp, spawn_app_with};

/// A CA (PEM) and a server certificate + key it signed, written into `dir`.
struct TestPki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
}

fn make_pki(dir: &std::path::Path) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "convmsg test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server_params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &ca).unwrap();
    let cert_path = dir.join("tls.crt");
    let key_path = dir.join("tls.key");
    std::fs::write(&cert_path, server_cert.pem()).unwrap();
    std::fs::write(&key_path, server_key.serialize_pem()).unwrap();
    TestPki { ca_pem: ca.pem(), ca_der: ca.der().clone(), cert_path, key_path }
}

async fn spawn_tls_app(dir: &std::path::Path) -> (TestApp, TestPki) {
    let pki = make_pki(dir);
    let (cert, key) = (pki.cert_path.display().to_string(), pki.key_path.display().to_string());
    let app = spawn_app_with(|c| {
        c.tls.cert_path = Some(cert);
        c.tls.key_path = Some(key);
    })
    .await;
    (app, pki)
}

async fn tls_channel(app: &TestApp, pki: &TestPki) -> Channel {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca_pem)).domain_name("localhost");
    Channel::from_shared(format!("https://{}", app.addr)).unwrap().tls_config(tls).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn a_client_trusting_the_ca_gets_health_serving_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (app, pki) = spawn_tls_app(dir.path()).await;
    let mut health = HealthClient::new(tls_channel(&app, &pki).await);
    let reply = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    assert_eq!(reply.status, ServingStatus::Serving as i32);
    // Business services behind TLS still ask for a token, as in plain text.
    let mut conv =
        convmsg::grpc::pb::conversation_messages_client::ConversationMessagesClient::new(tls_channel(&app, &pki).await);
    let err = conv
        .get_request_status(convmsg::grpc::pb::GetRequestStatusRequest { request_id: "1srxx0000000001AAA".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    app.stop().await;
}

#[tokio::test]
async fn http_1_1_over_tls_serves_healthz_on_the_same_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (app, pki) = spawn_tls_app(dir.path()).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut response)).await.unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok"), "{response}");
    app.stop().await;
}

#[tokio::test]
async fn a_plain_text_client_is_refused_by_a_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _pki) = spawn_tls_app(dir.path()).await;
    let plain = Channel::from_shared(format!("http://{}", app.addr)).unwrap().connect_lazy();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        HealthClient::new(plain).check(HealthCheckRequest { service: String::new() }),
    )
    .await
    .expect("the refusal is prompt");
    assert!(result.is_err(), "a plain-text call was answered: {result:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_tls_server_with_a_connection_open_still_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (app, pki) = spawn_tls_app(dir.path()).await;
    let mut health = HealthClient::new(tls_channel(&app, &pki).await);
    health.check(HealthCheckRequest { service: String::new() }).await.unwrap();
    // The connection stays open; stop() asserts the server returns Ok, within a bound.
    tokio::time::timeout(Duration::from_secs(15), app.stop()).await.expect("the server stopped");
}
