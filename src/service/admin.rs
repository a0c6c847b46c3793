//! Provisioning (scope `admin`): channels, messaging components, end users, sessions,
//! communication subscriptions and consents.

use super::{PageRequest, Service, id_or_name, not_this_tenants, parse_id};
use crate::domain::admin::*;
use crate::domain::ids::IdKind;
use crate::domain::model::*;
use crate::domain::principal::{Principal, Scope};
use crate::domain::violation::quoted;
use crate::domain::{ErrorKind, RecordId, Violation};
use crate::error::AppError;
use crate::store::Key;
use crate::store::Page;

impl Service {
    pub async fn upsert_channel(&self, principal: &Principal, spec: ChannelSpec) -> Result<(Channel, bool), AppError> {
        principal.require(Scope::Admin)?;
        let upsert = spec.check().map_err(AppError::Invalid)?;
        if let Some(id) = &upsert.id
            && self.store.get_channel(&principal.tenant, &Key::Id(id.clone())).await?.is_none()
        {
            return Err(AppError::invalid(not_this_tenants("channel.id", "channel", id)));
        }
        Ok(self.store.upsert_channel(&principal.tenant, upsert, self.now()).await?)
    }

    pub async fn get_channel(&self, principal: &Principal, key: &str) -> Result<Channel, AppError> {
        principal.require(Scope::Admin)?;
        self.store
            .get_channel(&principal.tenant, &id_or_name(key, IdKind::MessagingChannel))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no channel {}", quoted(key))))
    }

    pub async fn list_channels(&self, principal: &Principal, page: PageRequest) -> Result<Page<Channel>, AppError> {
        principal.require(Scope::Admin)?;
        let (after, size) = page.parse()?;
        Ok(self.store.list_channels(&principal.tenant, after.as_ref(), size).await?)
    }

    pub async fn upsert_definition(
        &self,
        principal: &Principal,
        spec: DefinitionSpec,
    ) -> Result<(MessageDefinition, bool), AppError> {
        principal.require(Scope::Admin)?;
        let upsert = spec.check().map_err(AppError::Invalid)?;
        if let Some(id) = &upsert.id
            && self.store.get_definition(&principal.tenant, &Key::Id(id.clone())).await?.is_none()
        {
            return Err(AppError::invalid(not_this_tenants("message_definition.id", "messaging component", id)));
        }
        let result = self.store.upsert_definition(&principal.tenant, upsert, self.now()).await?;
        self.lookups.forget_components();
        Ok(result)
    }

    pub async fn get_definition(&self, principal: &Principal, key: &str) -> Result<MessageDefinition, AppError> {
        principal.require(Scope::Admin)?;
        self.store
            .get_definition(&principal.tenant, &id_or_name(key, IdKind::MessageDefinition))
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no messaging component {}", quoted(key))))
    }

    pub async fn list_definitions(
        &self,
        principal: &Principal,
        page: PageRequest,
    ) -> Result<Page<MessageDefinition>, AppError> {
        principal.require(Scope::Admin)?;
        let (after, size) = page.parse()?;
        Ok(self.store.list_definitions(&principal.tenant, after.as_ref(), size).await?)
    }

    /// End users from the admin API: an id given addresses one of the tenant's end users.
    pub async fn upsert_end_users(
        &self,
        principal: &Principal,
        specs: Vec<EndUserSpec>,
    ) -> Result<Vec<EndUser>, AppError> {
        principal.require(Scope::Admin)?;
        let users = check_end_users(specs).map_err(AppError::Invalid)?;
        let given: Vec<RecordId> = users.iter().filter_map(|u| u.id.clone()).collect();
        if !given.is_empty() {
            let own: std::collections::HashSet<RecordId> =
                self.store.find_end_users(&principal.tenant, &given).await?.into_iter().map(|u| u.id).collect();
            let unknown: Vec<Violation> = users
                .iter()
                .enumerate()
                .filter_map(|(i, u)| u.id.as_ref().filter(|id| !own.contains(*id)).map(|id| (i, id)))
                .map(|(i, id)| not_this_tenants(&format!("messaging_end_users[{i}].id"), "messaging end user", id))
                .collect();
            if !unknown.is_empty() {
                return Err(AppError::Invalid(unknown));
            }
        }
        Ok(self.store.upsert_end_users(&principal.tenant, users, self.now()).await?)
    }

    /// End users the config file declares: the operator may fix a new end user's id.
    pub async fn declare_end_users(
        &self,
        principal: &Principal,
        specs: Vec<EndUserSpec>,
    ) -> Result<Vec<EndUser>, AppError> {
        principal.require(Scope::Admin)?;
        let users = check_end_users(specs).map_err(AppError::Invalid)?;
        Ok(self.store.upsert_end_users(&principal.tenant, users, self.now()).await?)
    }

    pub async fn get_end_user(&self, principal: &Principal, raw_id: &str) -> Result<EndUser, AppError> {
        principal.require(Scope::Admin)?;
        let id = parse_id("id", raw_id, IdKind::MessagingEndUser)?;
        self.store
            .find_end_users(&principal.tenant, std::slice::from_ref(&id))
            .await?
            .pop()
            .ok_or_else(|| AppError::NotFound(format!("no messaging end user {id}")))
    }

    pub async fn list_end_users(
        &self,
        principal: &Principal,
        channel: &str,
        page: PageRequest,
    ) -> Result<Page<EndUser>, AppError> {
        principal.require(Scope::Admin)?;
        let (after, size) = page.parse()?;
        let channel = match channel.trim() {
            "" => None,
            raw => Some(parse_id("messaging_channel_id", raw, IdKind::MessagingChannel)?),
        };
        Ok(self.store.list_end_users(&principal.tenant, channel.as_ref(), after.as_ref(), size).await?)
    }

    pub async fn set_session_status(
        &self,
        principal: &Principal,
        raw_end_user: &str,
        status: Option<SessionStatus>,
    ) -> Result<Session, AppError> {
        principal.require(Scope::Admin)?;
        let end_user = parse_id("messaging_end_user_id", raw_end_user, IdKind::MessagingEndUser)?;
        let status = status.ok_or_else(|| {
            AppError::invalid(Violation::new(
                "status",
                ErrorKind::RequiredFieldMissing,
                format!("status is required ({})", SessionStatus::allowed()),
            ))
        })?;
        let session = self
            .store
            .set_session_status(&principal.tenant, &end_user, status, self.now())
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no messaging end user {end_user}")))?;
        // Messages held for this end user may be sendable now.
        self.events.work_available();
        Ok(session)
    }

    pub async fn upsert_subscription(
        &self,
        principal: &Principal,
        spec: SubscriptionSpec,
    ) -> Result<(Subscription, bool), AppError> {
        principal.require(Scope::Admin)?;
        let upsert = spec.check().map_err(AppError::Invalid)?;
        if let Some(id) = &upsert.id
            && self.store.get_subscription(&principal.tenant, id).await?.is_none()
        {
            return Err(AppError::invalid(not_this_tenants(
                "communication_subscription.id",
                "communication subscription",
                id,
            )));
        }
        Ok(self.store.upsert_subscription(&principal.tenant, upsert, self.now()).await?)
    }

    pub async fn set_subscription_consent(
        &self,
        principal: &Principal,
        raw_subscription: &str,
        raw_end_users: &[String],
        status: Option<SubscriptionConsentStatus>,
    ) -> Result<u32, AppError> {
        principal.require(Scope::Admin)?;
        let subscription = parse_id("communication_subscription_id", raw_subscription, IdKind::CommSubscription)?;
        let status = status.ok_or_else(|| {
            AppError::invalid(Violation::new(
                "status",
                ErrorKind::RequiredFieldMissing,
                "status is required (OPTED_IN or OPTED_OUT)",
            ))
        })?;
        if raw_end_users.is_empty() || raw_end_users.len() > MAX_END_USERS_PER_UPSERT {
            return Err(AppError::invalid(Violation::new(
                "messaging_end_user_ids",
                ErrorKind::InvalidInput,
                format!("give 1 to {MAX_END_USERS_PER_UPSERT} end user ids"),
            )));
        }
        let end_users = raw_end_users
            .iter()
            .enumerate()
            .map(|(i, raw)| parse_id(&format!("messaging_end_user_ids[{i}]"), raw, IdKind::MessagingEndUser))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .store
            .set_subscription_consent(&principal.tenant, &subscription, &end_users, status, self.now())
            .await?)
    }
}
