//! Applies what the config file declares — tenants' tokens, the bootstrap token,
//! channels, messaging components, end users — at every start (GitOps / ConfigMap),
//! and with `provisioning.prune` removes the declared records the file stopped listing.
//! Declared records go through the same checks as the admin API; a bad entry stops the
//! start with an error naming it.

use std::collections::HashMap;

use anyhow::{Context, anyhow, bail};

use crate::config::{ChannelConfig, Config, DefinitionConfig, EndUserConfig};
use crate::domain::RecordId;
use crate::domain::admin::{ChannelSpec, DefinitionSpec, EndUserSpec};
use crate::domain::model::*;
use crate::domain::principal::{Principal, Scope, generate_token, hash_token, parse_scopes};
use crate::error::AppError;
use crate::service::Service;
use crate::service::auth::{Authenticator, Grant};
use crate::store::{DeclaredKind, TokenGrant, TokenSource};

pub const DEFAULT_TENANT: &str = "default";

fn admin_of(tenant: &str) -> Principal {
    Principal { tenant: tenant.to_owned(), scopes: Scope::ALL.to_vec() }
}

fn pick<T: Picklist>(what: &str, raw: &str, allowed: String) -> anyhow::Result<T> {
    T::parse_api(raw).ok_or_else(|| anyhow!("{what} = {raw:?} is not one of {allowed}"))
}

fn pick_opt<T: Picklist>(what: &str, raw: &Option<String>, allowed: String) -> anyhow::Result<Option<T>> {
    raw.as_deref().map(|r| pick(what, r, allowed)).transpose()
}

/// Makes the token table the config's: grants `[[tenants.tokens]]` and the bootstrap
/// token, and removes the tokens an earlier start granted that the config no longer
/// lists — config tokens taken out of the file, a rotated bootstrap token, and the
/// generated token once the config grants any. Tokens revoked through the API stay
/// revoked even if the file still lists them (a warning names them). If the config
/// grants nothing and no generated token is active, one is generated for tenant
/// `default` and returned, to be shown once.
pub async fn tokens(config: &Config, service: &Service, now_ms: i64) -> anyhow::Result<Option<String>> {
    let store = service.store();
    let mut configured: Vec<String> = Vec::new();
    for (t, tenant) in config.tenants.iter().enumerate() {
        for (k, token) in tenant.tokens.iter().enumerate() {
            let what = format!("tenants[{t}].tokens[{k}]");
            let hash = token.sha256.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("{what}.sha256 must be 64 hex characters (the SHA-256 that `convmsg token new` prints)");
            }
            let scopes =
                parse_scopes(token.scopes.iter().map(String::as_str)).map_err(|e| anyhow!("{what}.scopes: {e}"))?;
            let expires_ms = token
                .expires_at
                .as_deref()
                .map(|at| {
                    crate::domain::params::parse_datetime(at.trim())
                        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                        .ok_or_else(|| anyhow!("{what}.expires_at = {at:?} is not an RFC 3339 date-time"))
                })
                .transpose()?;
            let grant = TokenGrant {
                sha256: hash.clone(),
                principal: Principal { tenant: tenant.name.clone(), scopes },
                label: token.label.clone(),
                source: TokenSource::Config,
                expires_ms,
            };
            if !store.upsert_token(&grant, now_ms).await.with_context(|| what.clone())? {
                tracing::warn!(token = what, "this token was revoked and stays revoked; remove it from the config");
            }
            configured.push(hash);
        }
    }
    let bootstrap = config.bootstrap_token.as_deref().filter(|t| !t.is_empty()).map(hash_token);
    if let Some(hash) = &bootstrap {
        let grant = TokenGrant {
            sha256: hash.clone(),
            principal: admin_of(DEFAULT_TENANT),
            label: "bootstrap".into(),
            source: TokenSource::Bootstrap,
            expires_ms: None,
        };
        if !store.upsert_token(&grant, now_ms).await? {
            tracing::warn!("the bootstrap token was revoked and stays revoked; set a new one");
        }
    }
    let mut removed = store.remove_tokens_except(TokenSource::Config, &configured).await?;
    removed += store.remove_tokens_except(TokenSource::Bootstrap, bootstrap.as_slice()).await?;
    let config_grants = !configured.is_empty() || bootstrap.is_some();
    if config_grants {
        removed += store.remove_tokens_except(TokenSource::Generated, &[]).await?;
    }
    if removed > 0 {
        tracing::info!(removed, "tokens the config no longer grants were removed");
    }
    // With nothing granted by the config, an active token can only be a generated one.
    if !config_grants && store.load_tokens(now_ms).await?.is_empty() {
        let token = generate_token();
        let grant = TokenGrant {
            sha256: hash_token(&token),
            principal: admin_of(DEFAULT_TENANT),
            label: "generated bootstrap".into(),
            source: TokenSource::Generated,
            expires_ms: None,
        };
        store.upsert_token(&grant, now_ms).await?;
        return Ok(Some(token));
    }
    Ok(None)
}

/// Loads the active tokens into the authenticator.
pub async fn reload_tokens(service: &Service, auth: &Authenticator, now_ms: i64) -> anyhow::Result<usize> {
    let tokens: HashMap<String, Grant> = service
        .store()
        .load_tokens(now_ms)
        .await?
        .into_iter()
        .map(|t| (t.sha256, Grant { principal: t.principal, expires_ms: t.expires_ms }))
        .collect();
    let n = tokens.len();
    auth.replace(tokens);
    Ok(n)
}

/// Refuses a declared webhook channel that no secret of its own tenant signs for: it
/// could only ever fail `ProviderMisconfigured`. Warns when the top-level webhook secret
/// is set and other declared tenants have none (it signs for tenant `default` only).
fn check_webhook_secrets(config: &Config) -> anyhow::Result<()> {
    let webhook = &config.providers.webhook;
    for (i, c) in config.channels.iter().enumerate().filter(|(_, c)| c.provider == ProviderName::Webhook.as_str()) {
        if webhook.secret_setting_for(&c.tenant, &c.developer_name).is_none() {
            let (tenant, name) = (&c.tenant, &c.developer_name);
            bail!(
                "channels[{i}] ({name}) is a webhook channel of tenant {tenant} and no secret of that tenant signs for \
                 it: set providers.webhook.tenants.{tenant}.secrets.{name} or providers.webhook.tenants.{tenant}.secret"
            );
        }
    }
    if webhook.secret.is_some() {
        let unsigned: Vec<&str> = config
            .tenants
            .iter()
            .map(|t| t.name.as_str())
            .filter(|t| *t != DEFAULT_TENANT && !webhook.tenants.contains_key(*t))
            .collect();
        if !unsigned.is_empty() {
            tracing::warn!(
                tenants = unsigned.join(","),
                "providers.webhook.secret signs for tenant default only; these tenants have no webhook secret, so \
                 their webhook channels fail ProviderMisconfigured until providers.webhook.tenants.<tenant>.secret is set"
            );
        }
    }
    Ok(())
}

/// Upserts declared channels, components and end users, in that order, and marks them
/// declared; with `provisioning.prune`, then deletes what an earlier start declared and
/// the file no longer lists (`prune`).
pub async fn records(config: &Config, service: &Service) -> anyhow::Result<()> {
    check_webhook_secrets(config)?;
    let mut channels = Vec::new();
    for (i, c) in config.channels.iter().enumerate() {
        let what = format!("channels[{i}] ({})", c.developer_name);
        let spec = channel_spec(c).with_context(|| what.clone())?;
        let (channel, _) = service.upsert_channel(&admin_of(&c.tenant), spec).await.with_context(|| what.clone())?;
        channels.push((c.tenant.clone(), channel.id));
    }
    let mut definitions = Vec::new();
    for (i, d) in config.definitions.iter().enumerate() {
        let what = format!("definitions[{i}] ({})", d.api_name);
        let spec = definition_spec(d).with_context(|| what.clone())?;
        let (definition, _) =
            service.upsert_definition(&admin_of(&d.tenant), spec).await.with_context(|| what.clone())?;
        definitions.push((d.tenant.clone(), definition.id));
    }
    let mut end_users = Vec::new();
    for (i, u) in config.end_users.iter().enumerate() {
        let what = format!("end_users[{i}] ({})", u.messaging_platform_key);
        let principal = admin_of(&u.tenant);
        let channel = service
            .get_channel(&principal, &u.channel)
            .await
            .with_context(|| format!("{what}: channel {:?}", u.channel))?;
        let spec = end_user_spec(u, channel.id.to_string()).with_context(|| what.clone())?;
        let users = service.declare_end_users(&principal, vec![spec]).await.with_context(|| what.clone())?;
        end_users.extend(users.into_iter().map(|user| (u.tenant.clone(), user.id)));
    }
    let store = service.store();
    // End users first, channels last: what a prune deletes goes in that order too.
    let declared = [
        (DeclaredKind::EndUser, end_users),
        (DeclaredKind::Definition, definitions),
        (DeclaredKind::Channel, channels),
    ];
    for (kind, records) in &declared {
        store.mark_declared(*kind, records).await.with_context(|| format!("marking declared {}s", kind.as_str()))?;
    }
    let destinations =
        crate::providers::guard::Destinations::new(config.events.allow_http, &config.events.allowed_networks)?;
    for (i, e) in config.event_endpoints.iter().enumerate() {
        let what = format!("event_endpoints[{i}] ({})", e.name);
        let new = crate::service::event_endpoints::NewEndpoint {
            name: e.name.clone(),
            url: e.url.clone(),
            event_types: e.event_types.clone(),
            secret: e.secret.clone(),
        };
        crate::service::event_endpoints::declare(service, &destinations, &e.tenant, new)
            .await
            .with_context(|| what.clone())?;
    }
    if config.provisioning.prune {
        for (kind, records) in &declared {
            prune(service, *kind, records).await?;
        }
    }
    Ok(())
}

/// Deletes the records of `kind` an earlier start declared that are not among `kept`.
/// One still needed is kept, with a warning naming what needs it, and tried again at
/// the next start.
async fn prune(service: &Service, kind: DeclaredKind, kept: &[(String, RecordId)]) -> anyhow::Result<()> {
    let store = service.store();
    for (tenant, id) in store.list_declared(kind).await? {
        if kept.iter().any(|(_, k)| *k == id) {
            continue;
        }
        let principal = admin_of(&tenant);
        let deleted = match kind {
            DeclaredKind::EndUser => service.delete_end_user(&principal, id.as_str()).await,
            DeclaredKind::Definition => service.delete_definition(&principal, id.as_str()).await,
            DeclaredKind::Channel => service.delete_channel(&principal, id.as_str()).await,
        };
        match deleted {
            Ok(()) => {
                tracing::info!(kind = kind.as_str(), %tenant, %id, "pruned: the config no longer declares it");
                store.unmark_declared(kind, &id).await?;
            }
            Err(AppError::NotFound(_)) => store.unmark_declared(kind, &id).await?,
            Err(AppError::FailedPrecondition(why)) => {
                tracing::warn!(kind = kind.as_str(), %tenant, %id, reason = %why, "not pruned yet: still needed");
            }
            Err(e) => return Err(e).with_context(|| format!("pruning {} {id}", kind.as_str())),
        }
    }
    Ok(())
}

fn channel_spec(c: &ChannelConfig) -> anyhow::Result<ChannelSpec> {
    Ok(ChannelSpec {
        id: None,
        developer_name: c.developer_name.clone(),
        master_label: c.master_label.clone(),
        message_type: Some(pick("message_type", &c.message_type, MessageType::allowed())?),
        consent_type: pick_opt("consent_type", &c.consent_type, ChannelConsentLevel::allowed())?,
        provider: c.provider.clone(),
        messaging_platform_key: c.messaging_platform_key.clone(),
        is_active: c.is_active,
        rate_limit_per_second: c.rate_limit_per_second,
        provider_options: c.provider_options.clone(),
    })
}

fn definition_spec(d: &DefinitionConfig) -> anyhow::Result<DefinitionSpec> {
    let parameters = d
        .parameters
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(MessageParameter {
                name: p.name.clone(),
                label: p.label.clone(),
                value_type: pick(&format!("parameters[{i}].value_type"), &p.value_type, ParameterValueType::allowed())?,
                is_required: p.is_required,
                is_list: p.is_list,
                max_list_items: p.max_list_items,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let external_template = match &d.external_template {
        Some(t) => Some(ExternalTemplate {
            template_name: t.template_name.clone(),
            language: t.language.clone(),
            status: pick("external_template.status", &t.status, ExternalTemplateStatus::allowed())?,
            account_identifier: t.account_identifier.clone(),
            body_parameters: t.body_parameters.clone(),
        }),
        None => None,
    };
    Ok(DefinitionSpec {
        id: None,
        api_name: d.api_name.clone(),
        master_label: d.master_label.clone(),
        definition_type: pick_opt("definition_type", &d.definition_type, DefinitionType::allowed())?,
        is_active: d.is_active,
        parameters,
        text_layout: d.text_layout.clone(),
        external_template,
    })
}

fn end_user_spec(u: &EndUserConfig, channel_id: String) -> anyhow::Result<EndUserSpec> {
    Ok(EndUserSpec {
        id: u.id.clone(),
        channel_id,
        platform_key: u.messaging_platform_key.clone(),
        name: u.name.clone(),
        consent_status: pick_opt("consent_status", &u.consent_status, ConsentStatus::allowed())?,
    })
}
