//! `convmsg.v1.StatusEvents`: event endpoint administration over gRPC, each RPC a
//! conversion and one `service::event_endpoints` call.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{convert, pb, principal};
use crate::domain::events::EventEndpoint;
use crate::providers::guard::Destinations;
use crate::service::Service;
use crate::service::event_endpoints::{self as endpoints, NewEndpoint};

#[derive(Clone)]
pub struct StatusEventsApi {
    pub service: Service,
    /// The rules event URLs must pass (`events.allow_http`, `events.allowed_networks`).
    pub destinations: Arc<Destinations>,
}

fn endpoint(e: EventEndpoint) -> pb::EventEndpoint {
    pb::EventEndpoint {
        id: e.id,
        name: e.name,
        url: e.url,
        event_types: e.event_types.iter().map(|t| t.as_str().to_owned()).collect(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.unwrap_or_default(),
        failing_since: e.failing_since_ms.and_then(convert::timestamp),
        created_date: convert::timestamp(e.created_ms),
        last_modified_date: convert::timestamp(e.updated_ms),
    }
}

fn millis(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos) / 1_000_000))
}

#[tonic::async_trait]
impl pb::status_events_server::StatusEvents for StatusEventsApi {
    async fn create_event_endpoint(
        &self,
        request: Request<pb::CreateEventEndpointRequest>,
    ) -> Result<Response<pb::CreateEventEndpointResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let new = NewEndpoint { name: r.name, url: r.url, event_types: r.event_types, secret: r.secret };
        let (created, secret) = endpoints::create(&self.service, &self.destinations, &p, new).await?;
        Ok(Response::new(pb::CreateEventEndpointResponse { endpoint: Some(endpoint(created)), secret }))
    }

    async fn list_event_endpoints(
        &self,
        request: Request<pb::ListEventEndpointsRequest>,
    ) -> Result<Response<pb::ListEventEndpointsResponse>, Status> {
        let p = principal(&request)?;
        let all = endpoints::list(&self.service, &p).await?;
        Ok(Response::new(pb::ListEventEndpointsResponse { endpoints: all.into_iter().map(endpoint).collect() }))
    }

    async fn update_event_endpoint(
        &self,
        request: Request<pb::UpdateEventEndpointRequest>,
    ) -> Result<Response<pb::UpdateEventEndpointResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let types = r.event_types.map(|t| t.values);
        let updated = endpoints::update(&self.service, &self.destinations, &p, &r.id, r.url, types, r.enabled).await?;
        Ok(Response::new(pb::UpdateEventEndpointResponse { endpoint: Some(endpoint(updated)) }))
    }

    async fn delete_event_endpoint(
        &self,
        request: Request<pb::DeleteEventEndpointRequest>,
    ) -> Result<Response<pb::DeleteEventEndpointResponse>, Status> {
        let p = principal(&request)?;
        endpoints::delete(&self.service, &p, &request.get_ref().id).await?;
        Ok(Response::new(pb::DeleteEventEndpointResponse {}))
    }

    async fn replay_events(
        &self,
        request: Request<pb::ReplayEventsRequest>,
    ) -> Result<Response<pb::ReplayEventsResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let endpoint = Some(r.endpoint_id.as_str()).filter(|id| !id.is_empty());
        let queued = endpoints::replay(&self.service, &p, endpoint, millis(&r.since), millis(&r.until)).await?;
        Ok(Response::new(pb::ReplayEventsResponse { queued }))
    }
}
