//! Delivery receipts in: the providers' callbacks, on the one listener beside the REST
//! bridge. Each URL names a channel (`/receipts/<provider>/<channel id>…`), which names
//! its tenant and so the secret; no bearer token — every call is authenticated the
//! provider's own way (`twilio`: `X-Twilio-Signature`; `whatsapp`: the verify-token
//! handshake and `X-Hub-Signature-256`; `gateway`: Standard Webhooks with the channel's
//! webhook secret), and refused 401 (no signature) or 403 (a wrong one, or no secret to
//! check it with) with nothing written. Receipts are recorded through the store's
//! delivery writer (`Store::record_receipts`); unknown ids are acknowledged (2xx, so the
//! provider does not retry forever) and counted in `convmsg_receipts`.
//!
//! This module reads and checks what the providers send and answers them; the rules of
//! a receipt live in `domain::receipt`, the writes in `store::sql::receipts`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::ReceiptsConfig;
use crate::domain::ids::IdKind;
use crate::domain::model::{Channel, ProviderName};
use crate::domain::{RecordId, receipt::Report};
use crate::metrics::Metrics;
use crate::providers::webhook::SigningKeys;
use crate::service::Service;
use crate::store::{MessageKey, Receipt, ReceiptOutcome, StoreError};

pub mod gateway;
pub mod twilio;
pub mod whatsapp;

/// What the handlers share.
pub struct ReceiptsState {
    pub service: Service,
    pub config: ReceiptsConfig,
    /// `providers.twilio.auth_token`: the account convmsg sends with signs its callbacks
    /// unless `[receipts.tenants…]` names another.
    pub twilio_auth_token: Option<String>,
    /// The webhook provider's signing keys, which also check gateway acknowledgements.
    pub webhook_keys: SigningKeys,
    pub metrics: Arc<Metrics>,
    /// Whether the listener serves TLS (the scheme of the URL Twilio signed, when no
    /// public base URL is configured).
    pub tls: bool,
}

/// The receipt routes, behind `admission` (the same global limit as every other call).
pub fn router(state: ReceiptsState) -> Router {
    Router::new()
        .route("/receipts/twilio/{channel}", post(twilio::status_callback))
        .route("/receipts/whatsapp/{channel}", get(whatsapp::verify).post(whatsapp::notification))
        .route(
            "/receipts/webhook/{channel}/v1/acknowledgement",
            post(gateway::per_item::<gateway::AcknowledgementCall>),
        )
        .route("/receipts/webhook/{channel}/v1/delivery-failed", post(gateway::per_item::<gateway::FailureCall>))
        .with_state(Arc::new(state))
}

/// The route template of a receipts path, for span names and metric labels (never the
/// raw path, which holds a channel id).
pub fn route_template(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/receipts/")?;
    let (provider, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (_, tail) = rest.split_once('/').unwrap_or((rest, ""));
    Some(match (provider, tail) {
        ("twilio", "") => "/receipts/twilio/{channel}",
        ("whatsapp", "") => "/receipts/whatsapp/{channel}",
        ("webhook", "v1/acknowledgement") => "/receipts/webhook/{channel}/v1/acknowledgement",
        ("webhook", "v1/delivery-failed") => "/receipts/webhook/{channel}/v1/delivery-failed",
        _ => "/receipts/{unknown}",
    })
}

/// Why a callback is refused.
#[derive(Debug)]
pub enum Refusal {
    /// No such channel, or not one of this provider's.
    NotFound,
    /// The signature header is missing.
    Unsigned(&'static str),
    /// The signature does not verify, or there is no secret to verify it with.
    Forbidden(String),
    /// The body is not what the provider sends; names the field.
    Malformed(String),
    /// The database cannot take it now: the provider should retry.
    Unavailable(StoreError),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "no such channel for this provider\n").into_response(),
            Refusal::Unsigned(header) => (StatusCode::UNAUTHORIZED, format!("missing {header}\n")).into_response(),
            Refusal::Forbidden(why) => {
                tracing::warn!(reason = %why, "refused a provider callback");
                (StatusCode::FORBIDDEN, "signature does not verify\n").into_response()
            }
            Refusal::Malformed(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
            Refusal::Unavailable(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "could not record receipts");
                (StatusCode::SERVICE_UNAVAILABLE, [(http::header::RETRY_AFTER, "5")], "try again later\n")
                    .into_response()
            }
        }
    }
}

/// The channel a callback URL names, with its tenant, if it is one of `provider`'s.
async fn channel_for(state: &ReceiptsState, raw: &str, provider: ProviderName) -> Result<(String, Channel), Refusal> {
    let id = RecordId::parse(raw, IdKind::MessagingChannel).map_err(|_| Refusal::NotFound)?;
    match state.service.store().find_channel_owner(&id).await {
        Ok(Some((tenant, channel))) if channel.provider == provider => Ok((tenant, channel)),
        Ok(_) => Err(Refusal::NotFound),
        Err(e) => Err(Refusal::Unavailable(e)),
    }
}

/// One receipt read from a callback, before it is tied to its channel.
#[derive(Debug, Clone)]
pub struct Reported {
    pub key: MessageKey,
    pub report: Report,
    /// The provider's time for it, when it gives one.
    pub at_ms: Option<i64>,
}

/// Records what a callback reported for `channel`; the outcomes in order. Status
/// streams of the requests that changed are told at once.
async fn record(
    state: &ReceiptsState,
    provider: ProviderName,
    tenant: &str,
    channel: &Channel,
    reported: Vec<Reported>,
) -> Result<Vec<ReceiptOutcome>, Refusal> {
    let now_ms = state.service.clock().now_ms();
    let receipts: Vec<Receipt> = reported
        .into_iter()
        .map(|r| Receipt {
            tenant: tenant.to_owned(),
            channel_id: channel.id.clone(),
            key: r.key,
            report: r.report,
            at_ms: r.at_ms.unwrap_or(now_ms),
            now_ms,
        })
        .collect();
    let outcomes = state.service.store().record_receipts(receipts).await.map_err(Refusal::Unavailable)?;
    for outcome in &outcomes {
        let label = match outcome {
            ReceiptOutcome::Unknown => "unknown",
            ReceiptOutcome::Matched { changed: false, .. } => "unchanged",
            ReceiptOutcome::Matched { request_id, changed: true, .. } => {
                state.service.events().request_changed(request_id);
                "applied"
            }
        };
        state.metrics.count_receipt(provider, label);
    }
    Ok(outcomes)
}

/// The URL a provider called, as it saw it: the configured public base URL, else the
/// `Host` header over the listener's scheme; then the path and query.
fn called_url(state: &ReceiptsState, headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let base = match &state.config.public_base_url {
        Some(base) => base.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).or(uri.host())?;
            format!("{}://{host}", if state.tls { "https" } else { "http" })
        }
    };
    Some(format!("{base}{path}"))
}

/// A header's value as text, if present.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The body as UTF-8, or a refusal naming it.
fn text(body: &Bytes) -> Result<&str, Refusal> {
    std::str::from_utf8(body).map_err(|_| Refusal::Malformed("the body is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_paths_have_route_templates_without_the_channel_id() {
        assert_eq!(route_template("/receipts/twilio/0MjXX0000000001AAA"), Some("/receipts/twilio/{channel}"));
        assert_eq!(route_template("/receipts/whatsapp/0MjXX0000000001AAA"), Some("/receipts/whatsapp/{channel}"));
        assert_eq!(
            route_template("/receipts/webhook/0MjXX0000000001AAA/v1/acknowledgement"),
            Some("/receipts/webhook/{channel}/v1/acknowledgement")
        );
        assert_eq!(route_template("/receipts/other/x/y"), Some("/receipts/{unknown}"));
        assert_eq!(route_template("/services/data"), None);
    }
}
