//! `convmsg.v1.MessagingAdmin`: provisioning over gRPC, each RPC a conversion and one
//! `service` call.

use tonic::{Request, Response, Status};

use super::{convert, pb, principal};
use crate::service::auth::Authenticator;
use crate::service::{PageRequest, RedriveSelector, Service};
use crate::store::{Page, TokenRecord, TokenSource};

#[derive(Clone)]
pub struct MessagingAdminApi {
    pub service: Service,
    /// Revocations take effect here at once.
    pub auth: Authenticator,
}

fn token(t: TokenRecord) -> pb::Token {
    pb::Token {
        sha256: t.sha256,
        label: t.label,
        scopes: t.principal.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        source: match t.source {
            TokenSource::Config => pb::TokenSource::Config,
            TokenSource::Bootstrap => pb::TokenSource::Bootstrap,
            TokenSource::Generated => pb::TokenSource::Generated,
        } as i32,
        created_date: convert::timestamp(t.created_ms),
        expiration_date: t.expires_ms.and_then(convert::timestamp),
        revoked_date: t.revoked_ms.and_then(convert::timestamp),
    }
}

fn next_token<T>(page: &Page<T>) -> String {
    page.next_after.as_ref().map(|id| id.to_string()).unwrap_or_default()
}

#[tonic::async_trait]
impl pb::messaging_admin_server::MessagingAdmin for MessagingAdminApi {
    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let p = principal(&request)?;
        let tokens = crate::service::tokens::list(&self.service, &p).await?;
        Ok(Response::new(pb::ListTokensResponse { tokens: tokens.into_iter().map(token).collect() }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let p = principal(&request)?;
        let revoked = crate::service::tokens::revoke(&self.service, &self.auth, &p, &request.get_ref().sha256).await?;
        Ok(Response::new(pb::RevokeTokenResponse { token: Some(token(revoked)) }))
    }

    async fn delete_channel(
        &self,
        request: Request<pb::DeleteChannelRequest>,
    ) -> Result<Response<pb::DeleteChannelResponse>, Status> {
        let p = principal(&request)?;
        self.service.delete_channel(&p, &request.get_ref().channel).await?;
        Ok(Response::new(pb::DeleteChannelResponse {}))
    }

    async fn delete_message_definition(
        &self,
        request: Request<pb::DeleteMessageDefinitionRequest>,
    ) -> Result<Response<pb::DeleteMessageDefinitionResponse>, Status> {
        let p = principal(&request)?;
        self.service.delete_definition(&p, &request.get_ref().message_definition).await?;
        Ok(Response::new(pb::DeleteMessageDefinitionResponse {}))
    }

    async fn delete_messaging_end_user(
        &self,
        request: Request<pb::DeleteMessagingEndUserRequest>,
    ) -> Result<Response<pb::DeleteMessagingEndUserResponse>, Status> {
        let p = principal(&request)?;
        self.service.delete_end_user(&p, &request.get_ref().id).await?;
        Ok(Response::new(pb::DeleteMessagingEndUserResponse {}))
    }

    async fn retry_failed_messages(
        &self,
        request: Request<pb::RetryFailedMessagesRequest>,
    ) -> Result<Response<pb::RetryFailedMessagesResponse>, Status> {
        use pb::retry_failed_messages_request::Selector;
        let p = principal(&request)?;
        let millis = |t: Option<prost_types::Timestamp>| {
            t.map(|t| {
                t.seconds.saturating_mul(1000).saturating_add(i64::from(t.nanos.clamp(0, 999_999_999) / 1_000_000))
            })
        };
        let selector = request.into_inner().selector.map(|s| match s {
            Selector::RequestId(id) => RedriveSelector::Request(id),
            Selector::ChannelWindow(w) => RedriveSelector::Channel {
                channel: w.channel,
                from_ms: millis(w.failed_from),
                before_ms: millis(w.failed_before),
            },
        });
        let done = self.service.retry_failed_messages(&p, selector).await?;
        Ok(Response::new(pb::RetryFailedMessagesResponse {
            messages_requeued: u32::try_from(done.messages).unwrap_or(u32::MAX),
            request_ids: done.requests.into_iter().map(|id| id.into_string()).collect(),
            has_more: done.has_more,
        }))
    }

    async fn upsert_channel(
        &self,
        request: Request<pb::UpsertChannelRequest>,
    ) -> Result<Response<pb::UpsertChannelResponse>, Status> {
        let p = principal(&request)?;
        let spec = convert::channel_spec(request.into_inner().channel)?;
        let (channel, created) = self.service.upsert_channel(&p, spec).await?;
        Ok(Response::new(pb::UpsertChannelResponse { channel: Some(convert::channel(channel)), created }))
    }

    async fn get_channel(
        &self,
        request: Request<pb::GetChannelRequest>,
    ) -> Result<Response<pb::GetChannelResponse>, Status> {
        let p = principal(&request)?;
        let channel = self.service.get_channel(&p, &request.get_ref().channel).await?;
        Ok(Response::new(pb::GetChannelResponse { channel: Some(convert::channel(channel)) }))
    }

    async fn list_channels(
        &self,
        request: Request<pb::ListChannelsRequest>,
    ) -> Result<Response<pb::ListChannelsResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let page =
            self.service.list_channels(&p, PageRequest { page_size: r.page_size, page_token: r.page_token }).await?;
        let next_page_token = next_token(&page);
        Ok(Response::new(pb::ListChannelsResponse {
            channels: page.items.into_iter().map(convert::channel).collect(),
            next_page_token,
        }))
    }

    async fn upsert_message_definition(
        &self,
        request: Request<pb::UpsertMessageDefinitionRequest>,
    ) -> Result<Response<pb::UpsertMessageDefinitionResponse>, Status> {
        let p = principal(&request)?;
        let spec = convert::definition_spec(request.into_inner().message_definition)?;
        let (definition, created) = self.service.upsert_definition(&p, spec).await?;
        Ok(Response::new(pb::UpsertMessageDefinitionResponse {
            message_definition: Some(convert::definition(definition)),
            created,
        }))
    }

    async fn get_message_definition(
        &self,
        request: Request<pb::GetMessageDefinitionRequest>,
    ) -> Result<Response<pb::GetMessageDefinitionResponse>, Status> {
        let p = principal(&request)?;
        let definition = self.service.get_definition(&p, &request.get_ref().message_definition).await?;
        Ok(Response::new(pb::GetMessageDefinitionResponse {
            message_definition: Some(convert::definition(definition)),
        }))
    }

    async fn list_message_definitions(
        &self,
        request: Request<pb::ListMessageDefinitionsRequest>,
    ) -> Result<Response<pb::ListMessageDefinitionsResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let page =
            self.service.list_definitions(&p, PageRequest { page_size: r.page_size, page_token: r.page_token }).await?;
        let next_page_token = next_token(&page);
        Ok(Response::new(pb::ListMessageDefinitionsResponse {
            message_definitions: page.items.into_iter().map(convert::definition).collect(),
            next_page_token,
        }))
    }

    async fn upsert_messaging_end_users(
        &self,
        request: Request<pb::UpsertMessagingEndUsersRequest>,
    ) -> Result<Response<pb::UpsertMessagingEndUsersResponse>, Status> {
        let p = principal(&request)?;
        let specs = convert::end_user_specs(request.into_inner().messaging_end_users)?;
        let users = self.service.upsert_end_users(&p, specs).await?;
        Ok(Response::new(pb::UpsertMessagingEndUsersResponse {
            messaging_end_users: users.into_iter().map(convert::end_user).collect(),
        }))
    }

    async fn get_messaging_end_user(
        &self,
        request: Request<pb::GetMessagingEndUserRequest>,
    ) -> Result<Response<pb::GetMessagingEndUserResponse>, Status> {
        let p = principal(&request)?;
        let user = self.service.get_end_user(&p, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetMessagingEndUserResponse { messaging_end_user: Some(convert::end_user(user)) }))
    }

    async fn list_messaging_end_users(
        &self,
        request: Request<pb::ListMessagingEndUsersRequest>,
    ) -> Result<Response<pb::ListMessagingEndUsersResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let page = self
            .service
            .list_end_users(
                &p,
                &r.messaging_channel_id,
                PageRequest { page_size: r.page_size, page_token: r.page_token },
            )
            .await?;
        let next_page_token = next_token(&page);
        Ok(Response::new(pb::ListMessagingEndUsersResponse {
            messaging_end_users: page.items.into_iter().map(convert::end_user).collect(),
            next_page_token,
        }))
    }

    async fn set_messaging_session_status(
        &self,
        request: Request<pb::SetMessagingSessionStatusRequest>,
    ) -> Result<Response<pb::SetMessagingSessionStatusResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let status = convert::session_status_input(r.status)?;
        let session = self.service.set_session_status(&p, &r.messaging_end_user_id, status).await?;
        Ok(Response::new(pb::SetMessagingSessionStatusResponse { messaging_session: Some(convert::session(session)) }))
    }

    async fn upsert_communication_subscription(
        &self,
        request: Request<pb::UpsertCommunicationSubscriptionRequest>,
    ) -> Result<Response<pb::UpsertCommunicationSubscriptionResponse>, Status> {
        let p = principal(&request)?;
        let spec = convert::subscription_spec(request.into_inner().communication_subscription)?;
        let (subscription, created) = self.service.upsert_subscription(&p, spec).await?;
        Ok(Response::new(pb::UpsertCommunicationSubscriptionResponse {
            communication_subscription: Some(convert::subscription(subscription)),
            created,
        }))
    }

    async fn set_subscription_consent(
        &self,
        request: Request<pb::SetSubscriptionConsentRequest>,
    ) -> Result<Response<pb::SetSubscriptionConsentResponse>, Status> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let status = convert::subscription_consent_input(r.status)?;
        let updated_count = self
            .service
            .set_subscription_consent(&p, &r.communication_subscription_id, &r.messaging_end_user_ids, status)
            .await?;
        Ok(Response::new(pb::SetSubscriptionConsentResponse { updated_count }))
    }
}
