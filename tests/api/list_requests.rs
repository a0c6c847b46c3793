//! gRPC `ListRequests`: the caller's requests by typed filter (statuses, component,
//! created and completed ranges), in the order asked, page by page with tokens; the
//! basic and full views; refusals naming the field; tenancy and the read scope.

use convmsg::config::TokenConfig;
use convmsg::domain::principal::{generate_token, hash_token};
use convmsg::grpc::pb;
use prost_types::Timestamp;
use tonic::Code;

use crate::helpers::*;

const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;

fn at(ms: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds: ms / 1000, nanos: 0 })
}

async fn send(app: &TestApp, request: pb::SendConversationMessagesRequest) -> String {
    app.conv().await.send_conversation_messages(request).await.expect("accepted").into_inner().request_id
}

/// Every page of `request`, `page_size` at a time: the ids in order and the page sizes.
async fn all_pages(app: &TestApp, request: pb::ListRequestsRequest) -> (Vec<String>, Vec<usize>) {
    let mut conv = app.conv().await;
    let (mut ids, mut sizes, mut token) = (Vec::new(), Vec::new(), String::new());
    loop {
        let page = conv
            .list_requests(pb::ListRequestsRequest { page_token: token, ..request.clone() })
            .await
            .expect("listed")
            .into_inner();
        sizes.push(page.requests.len());
        ids.extend(page.requests.into_iter().map(|r| r.id));
        if page.next_page_token.is_empty() {
            return (ids, sizes);
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn requests_are_listed_by_a_typed_filter_in_the_order_asked_page_by_page() {
    let app = spawn_app_with(|c| c.dispatch.enabled = false).await;
    let fx = app.provision(1).await;
    let other = app.provision(1).await;
    // Hour 0: 12 requests of fx's component, delivered at hour 1.
    let mut early = Vec::new();
    for _ in 0..12 {
        early.push(send(&app, fx.request()).await);
        app.clock.advance_ms(1000);
    }
    app.clock.advance_ms(HOUR);
    while !app.dispatcher.run_once().await.unwrap().is_empty() {}
    // Hour 2: 9 pending requests of fx's component and 4 of the other's.
    app.clock.advance_ms(HOUR);
    let mut late = Vec::new();
    for _ in 0..9 {
        late.push(send(&app, fx.request()).await);
        app.clock.advance_ms(1000);
    }
    for _ in 0..4 {
        send(&app, other.request()).await;
    }

    let everything = pb::ListRequestsRequest { page_size: 10, ..Default::default() };
    let (ids, sizes) = all_pages(&app, everything).await;
    assert_eq!((ids.len(), sizes), (25, vec![10, 10, 5]));
    assert_eq!(ids[..21], [early.clone(), late.clone()].concat()[..], "oldest first by default");

    let pending_of_fx = pb::ListRequestsRequest {
        filter: Some(pb::RequestFilter {
            request_statuses: vec![pb::RequestStatus::Pending as i32],
            message_definition: fx.definition.api_name.to_uppercase(),
            ..Default::default()
        }),
        order_by: pb::RequestOrder::CreatedDateDesc as i32,
        page_size: 4,
        ..Default::default()
    };
    let (ids, sizes) = all_pages(&app, pending_of_fx).await;
    let mut newest_first = late.clone();
    newest_first.reverse();
    assert_eq!((ids, sizes), (newest_first, vec![4, 4, 1]));

    let completed_in_hour_one = pb::ListRequestsRequest {
        filter: Some(pb::RequestFilter {
            completed_from: at(T0 + HOUR),
            completed_before: at(T0 + 2 * HOUR),
            created_before: at(T0 + 6_000),
            ..Default::default()
        }),
        order_by: pb::RequestOrder::CompletedDateDesc as i32,
        ..Default::default()
    };
    let (ids, _) = all_pages(&app, completed_in_hour_one).await;
    let mut expected = early[..6].to_vec();
    expected.sort();
    expected.reverse();
    assert_eq!(ids, expected, "completed at one instant: ties in descending id order");

    let by_completion = pb::ListRequestsRequest {
        order_by: pb::RequestOrder::CompletedDateAsc as i32,
        page_size: 7,
        ..Default::default()
    };
    let (ids, _) = all_pages(&app, by_completion).await;
    let mut completed_first = early.clone();
    completed_first.sort();
    assert_eq!(ids[..12], completed_first[..], "completed ones first, pending ones last");
    app.stop().await;
}

#[tokio::test]
async fn the_basic_view_carries_counts_and_the_full_view_every_message() {
    let app = spawn_app_with(|c| c.dispatch.enabled = false).await;
    let fx = app.provision(3).await;
    let id = send(&app, fx.request()).await;
    let mut conv = app.conv().await;
    let basic = conv.list_requests(pb::ListRequestsRequest::default()).await.unwrap().into_inner();
    let record = &basic.requests[0];
    assert_eq!((record.id.as_str(), record.total_message_count, record.pending_message_count), (id.as_str(), 3, 3));
    assert!(record.messages.is_empty());
    assert_eq!(record.name, "MSJ-00000001");
    let full = conv
        .list_requests(pb::ListRequestsRequest { view: pb::RequestView::Full as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let status = conv.get_request_status(pb::GetRequestStatusRequest { request_id: id }).await.unwrap().into_inner();
    assert_eq!(full.requests[0], status.request.unwrap(), "the full view is the record GetRequestStatus returns");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_field_or_a_token_reused_with_another_filter_is_invalid_argument_naming_it() {
    let app = spawn_app_with(|c| c.dispatch.enabled = false).await;
    let fx = app.provision(1).await;
    for _ in 0..3 {
        send(&app, fx.request()).await;
    }
    let mut conv = app.conv().await;
    let first =
        conv.list_requests(pb::ListRequestsRequest { page_size: 2, ..Default::default() }).await.unwrap().into_inner();
    assert!(!first.next_page_token.is_empty());
    let refused = |request: pb::ListRequestsRequest| {
        let mut conv = conv.clone();
        async move {
            let status = conv.list_requests(request).await.unwrap_err();
            assert_eq!((status.code(), error_code(&status)), (Code::InvalidArgument, "INVALID_INPUT".to_owned()));
            violations(&status).into_iter().map(|(field, _)| field).collect::<Vec<_>>()
        }
    };
    let reused = pb::ListRequestsRequest {
        page_token: first.next_page_token.clone(),
        order_by: pb::RequestOrder::CreatedDateDesc as i32,
        ..Default::default()
    };
    assert_eq!(refused(reused).await, ["page_token"]);
    assert_eq!(
        refused(pb::ListRequestsRequest { page_token: "nope".into(), ..Default::default() }).await,
        ["page_token"]
    );
    assert_eq!(refused(pb::ListRequestsRequest { page_size: 5000, ..Default::default() }).await, ["page_size"]);
    let bad_status = pb::ListRequestsRequest {
        filter: Some(pb::RequestFilter { request_statuses: vec![42], ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(refused(bad_status).await, ["filter.request_statuses[0]"]);
    // Another tenant's token is refused too, and its list is its own.
    let mut theirs = app.conv_as(Some(&app.other_token)).await;
    let status = theirs
        .list_requests(pb::ListRequestsRequest {
            page_token: first.next_page_token,
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let own = theirs.list_requests(pb::ListRequestsRequest::default()).await.unwrap().into_inner();
    assert!(own.requests.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn listing_needs_the_read_scope() {
    let send_only = generate_token();
    let hash = hash_token(&send_only);
    let app = spawn_app_with(|c| {
        c.dispatch.enabled = false;
        c.tenants[0].tokens.push(TokenConfig {
            sha256: hash,
            scopes: vec!["send".into()],
            label: "send only".into(),
            expires_at: None,
        })
    })
    .await;
    let denied =
        app.conv_as(Some(&send_only)).await.list_requests(pb::ListRequestsRequest::default()).await.unwrap_err();
    assert_eq!((denied.code(), error_code(&denied)), (Code::PermissionDenied, "INSUFFICIENT_ACCESS".to_owned()));
    let anonymous = app.conv_as(None).await.list_requests(pb::ListRequestsRequest::default()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert!(app.conv_as(Some(&app.read_token)).await.list_requests(pb::ListRequestsRequest::default()).await.is_ok());
    app.stop().await;
}
