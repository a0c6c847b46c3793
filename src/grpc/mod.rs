//! The gRPC door: tonic services that convert proto ⇄ domain (`convert`) and call
//! `service`. No business rules here. Authentication happens in `auth_interceptor`,
//! which puts the caller's `Principal` into the request extensions.

use tonic::{Request, Response, Status};

use crate::domain::principal::Principal;
use crate::error::AppError;
use crate::service::Service;
use crate::service::auth::Authenticator;

pub mod admin;
pub mod convert;
pub mod events;
pub mod list;
pub mod malformed;

/// Code generated from `proto/convmsg/v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("convmsg.v1");

    /// The encoded descriptor set served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/convmsg_descriptor.bin"));
}

/// Checks `authorization: Bearer …` and attaches the principal; UNAUTHENTICATED otherwise.
pub fn auth_interceptor(auth: Authenticator) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let principal = auth.authenticate(header).map_err(AppError::into_status)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The principal the interceptor attached.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| AppError::Unauthenticated("missing authorization: Bearer <token>").into_status())
}

/// The caller's W3C `traceparent`, kept with the request for the dispatcher.
pub fn trace_context<T>(request: &Request<T>) -> Option<String> {
    crate::telemetry::traceparent(request.metadata().get("traceparent").and_then(|v| v.to_str().ok()))
}

/// `convmsg.v1.ConversationMessages`.
#[derive(Clone)]
pub struct ConversationMessagesApi {
    pub service: Service,
}

type WatchStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::WatchRequestStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::conversation_messages_server::ConversationMessages for ConversationMessagesApi {
    type WatchRequestStatusStream = WatchStream;

    async fn watch_request_status(
        &self,
        request: Request<pb::WatchRequestStatusRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        use futures_util::StreamExt;
        let principal = principal(&request)?;
        let records = self
            .service
            .watch_request(&principal, &request.get_ref().request_id, request.get_ref().follow_receipts)
            .await?;
        let stream = records.map(|r| {
            r.map(|record| pb::WatchRequestStatusResponse { request: Some(convert::request_record(record)) })
                .map_err(AppError::into_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn send_conversation_messages(
        &self,
        request: Request<pb::SendConversationMessagesRequest>,
    ) -> Result<Response<pb::SendConversationMessagesResponse>, Status> {
        let principal = principal(&request)?;
        let trace = trace_context(&request);
        let input = convert::send_input(request.into_inner())?;
        let accepted = self.service.send(&principal, input, trace).await?;
        Ok(Response::new(pb::SendConversationMessagesResponse {
            request_id: accepted.request_id.into_string(),
            message_identifiers: accepted.message_identifiers,
        }))
    }

    async fn get_request_status(
        &self,
        request: Request<pb::GetRequestStatusRequest>,
    ) -> Result<Response<pb::GetRequestStatusResponse>, Status> {
        let principal = principal(&request)?;
        let record = self.service.get_request(&principal, &request.get_ref().request_id).await?;
        Ok(Response::new(pb::GetRequestStatusResponse { request: Some(convert::request_record(record)) }))
    }

    async fn cancel_request(
        &self,
        request: Request<pb::CancelRequestRequest>,
    ) -> Result<Response<pb::CancelRequestResponse>, Status> {
        let principal = principal(&request)?;
        let record = self.service.cancel_request(&principal, &request.get_ref().request_id).await?;
        Ok(Response::new(pb::CancelRequestResponse { request: Some(convert::request_record(record)) }))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let principal = principal(&request)?;
        let plan = list::plan(&principal.tenant, request.get_ref())?;
        let page =
            self.service.query_page(&principal, &plan.query, &plan.cursor, plan.page_size, plan.with_messages).await?;
        let requests = page.records.into_iter().map(|r| convert::queried_request(r, plan.with_messages)).collect();
        let next_page_token = page.next.map(|cursor| plan.token(cursor)).unwrap_or_default();
        Ok(Response::new(pb::ListRequestsResponse { requests, next_page_token }))
    }
}
