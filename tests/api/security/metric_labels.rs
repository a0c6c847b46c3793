//! 16.4 — unauthenticated callers cannot grow `/metrics`: series are labelled only with
//! the contract's methods, the bridge's route templates and the standard HTTP methods;
//! anything made up is counted under `other`.

use std::str::FromStr;

use http::uri::PathAndQuery;

use crate::helpers::*;

/// Lines of series (not `#` comments) in a scrape.
fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).count()
}

async fn scrape(app: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", app.url())).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn made_up_grpc_paths_and_http_methods_add_no_series_beyond_other() {
    let app = spawn_accept_only().await;
    let made_up = 200;
    // Warm up: one call of each kind, so the `other` series exist before counting.
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    let mut call = async |path: String| {
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        grpc.unary(tonic::Request::new(()), PathAndQuery::from_str(&path).unwrap(), codec).await.unwrap_err()
    };
    let http = reqwest::Client::new();
    let odd = |i: usize| http::Method::from_bytes(format!("FROB{i}").as_bytes()).unwrap();
    let action = format!("{}/services/data/v65.0/actions/standard/sendConversationMessages", app.url());
    call("/convmsg.v1.Svc0/Method0".into()).await;
    http.request(odd(0), &action).send().await.unwrap();
    http.get(format!("{}/services/data/x0", app.url())).send().await.unwrap();
    let before = scrape(&app).await;

    for i in 1..=made_up {
        let status = call(format!("/convmsg.v1.Svc{i}/Method{i}")).await;
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        http.request(odd(i), &action).send().await.unwrap();
        http.get(format!("{}/services/data/x{i}", app.url())).send().await.unwrap();
    }
    let after = scrape(&app).await;

    assert_eq!(series(&after), series(&before), "new series appeared:\n{after}");
    assert!(!after.contains("Svc1") && !after.contains("FROB"), "{after}");
    let other_rpc = r#"convmsg_rpc_requests_total{service="other",method="other",code="UNIMPLEMENTED"}"#;
    assert!(after.contains(&format!("{other_rpc} {}", made_up + 1)), "{after}");
    assert!(after.contains(r#"convmsg_http_requests_total{method="other",route="/services/data/{version}/actions/standard/sendConversationMessages""#), "{after}");
}
