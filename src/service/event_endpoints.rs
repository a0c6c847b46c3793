//! Event endpoint administration (the `StatusEvents` RPCs): a tenant's admin registers,
//! lists, changes, re-enables and deletes its endpoints, and replays a time window. An
//! endpoint's URL must pass the SSRF guard's rules already when it is registered; its
//! secret is answered once. Another tenant's endpoint is NOT_FOUND, like an unknown one.

use base64::Engine;

use crate::domain::events::{EventEndpoint, check_endpoint};
use crate::domain::principal::{Principal, Scope};
use crate::domain::{ErrorKind, Violation};
use crate::error::AppError;
use crate::providers::guard::Destinations;
use crate::providers::webhook::decode_secret;
use crate::service::Service;
use crate::store::EndpointChange;

/// What a new endpoint is made of.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    /// `whsec_…`; empty: generated.
    pub secret: String,
}

impl NewEndpoint {
    /// Checks the name, event types and URL (against the SSRF guard's rules too) and
    /// makes the endpoint: a new id, enabled, created now.
    fn endpoint(&self, destinations: &Destinations, now_ms: i64) -> Result<EventEndpoint, AppError> {
        let event_types = check_endpoint(&self.name, &self.url, &self.event_types).map_err(AppError::Invalid)?;
        check_url(destinations, &self.url)?;
        Ok(EventEndpoint {
            id: format!("ep_{}", uuid::Uuid::new_v4().simple()),
            name: self.name.trim().to_owned(),
            url: self.url.trim().to_owned(),
            event_types,
            enabled: true,
            disabled_reason: None,
            failing_since_ms: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        })
    }
}

/// A secret given by the caller must be a Standard Webhooks secret (`whsec_` + base64).
fn check_secret(secret: &str) -> Result<(), AppError> {
    decode_secret(secret, "secret")
        .map(drop)
        .map_err(|e| AppError::invalid(Violation::new("secret", ErrorKind::InvalidInput, e.to_string())))
}

fn check_url(destinations: &Destinations, url: &str) -> Result<(), AppError> {
    let parsed = reqwest::Url::parse(url.trim())
        .map_err(|e| AppError::invalid(Violation::new("url", ErrorKind::InvalidInput, format!("url: {e}"))))?;
    destinations.check_url(&parsed).map_err(|refused| {
        AppError::invalid(Violation::new("url", ErrorKind::InvalidInput, format!("url: {}", refused.0)))
    })
}

/// The endpoint a config file declares, created or brought in line with the file (its
/// id and whether it is enabled are kept).
pub async fn declare(
    service: &Service,
    destinations: &Destinations,
    tenant: &str,
    new: NewEndpoint,
) -> Result<EventEndpoint, AppError> {
    let endpoint = new.endpoint(destinations, service.clock().now_ms())?;
    check_secret(&new.secret)?;
    Ok(service.store().declare_event_endpoint(tenant, &endpoint, new.secret.trim()).await?)
}

/// Registers an endpoint; it and its secret.
pub async fn create(
    service: &Service,
    destinations: &Destinations,
    principal: &Principal,
    new: NewEndpoint,
) -> Result<(EventEndpoint, String), AppError> {
    principal.require(Scope::Admin)?;
    let endpoint = new.endpoint(destinations, service.clock().now_ms())?;
    let secret = if new.secret.trim().is_empty() {
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>()))
    } else {
        check_secret(&new.secret)?;
        new.secret.trim().to_owned()
    };
    let created =
        service.store().create_event_endpoint(&principal.tenant, &endpoint, &secret).await?.ok_or_else(|| {
            AppError::Duplicate {
                field: "name".into(),
                message: format!("an event endpoint named {} exists", endpoint.name),
            }
        })?;
    tracing::info!(tenant = %principal.tenant, endpoint = %created.id, name = %created.name, "event endpoint created");
    Ok((created, secret))
}

pub async fn list(service: &Service, principal: &Principal) -> Result<Vec<EventEndpoint>, AppError> {
    principal.require(Scope::Admin)?;
    Ok(service.store().list_event_endpoints(&principal.tenant).await?)
}

/// Changes an endpoint; `event_types` `Some(empty)` means every type.
pub async fn update(
    service: &Service,
    destinations: &Destinations,
    principal: &Principal,
    id: &str,
    url: Option<String>,
    event_types: Option<Vec<String>>,
    enabled: Option<bool>,
) -> Result<EventEndpoint, AppError> {
    principal.require(Scope::Admin)?;
    if let Some(url) = &url {
        check_endpoint("x", url, &[]).map_err(AppError::Invalid)?;
        check_url(destinations, url)?;
    }
    let event_types =
        event_types.map(|types| check_endpoint("x", "https://x", &types).map_err(AppError::Invalid)).transpose()?;
    let change = EndpointChange { url: url.map(|u| u.trim().to_owned()), event_types, enabled };
    let now = service.clock().now_ms();
    let updated = service
        .store()
        .update_event_endpoint(&principal.tenant, id, &change, now)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no event endpoint {id}")))?;
    if let Some(enabled) = enabled {
        tracing::info!(tenant = %principal.tenant, endpoint = %id, enabled, "event endpoint enabled or disabled");
    }
    Ok(updated)
}

pub async fn delete(service: &Service, principal: &Principal, id: &str) -> Result<(), AppError> {
    principal.require(Scope::Admin)?;
    if service.store().delete_event_endpoint(&principal.tenant, id).await? {
        Ok(())
    } else {
        Err(AppError::NotFound(format!("no event endpoint {id}")))
    }
}

/// Queues again what the endpoint (or every one) missed in [`since_ms`, `until_ms`).
pub async fn replay(
    service: &Service,
    principal: &Principal,
    endpoint: Option<&str>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> Result<u64, AppError> {
    principal.require(Scope::Admin)?;
    let now = service.clock().now_ms();
    let since = since_ms.ok_or_else(|| {
        AppError::invalid(Violation::new("since", ErrorKind::RequiredFieldMissing, "since is required"))
    })?;
    let until = until_ms.unwrap_or(now + 1);
    if until <= since {
        return Err(AppError::invalid(Violation::new("until", ErrorKind::InvalidInput, "until must be after since")));
    }
    if let Some(id) = endpoint {
        let known = service.store().list_event_endpoints(&principal.tenant).await?.iter().any(|e| e.id == id);
        if !known {
            return Err(AppError::NotFound(format!("no event endpoint {id}")));
        }
    }
    let queued = service.store().replay_events(&principal.tenant, endpoint, since, until, now).await?;
    tracing::info!(tenant = %principal.tenant, endpoint = endpoint.unwrap_or("all"), since, until, queued, "events replayed");
    service.events().events_enqueued();
    Ok(queued)
}
