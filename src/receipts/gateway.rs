//! A webhook (bring-your-own-channel) gateway's receipts, shaped like Salesforce's
//! Interaction Service API: `…/v1/acknowledgement` takes up to 25 `Delivered` / `Read`
//! acknowledgements (`acknowledgedConversationEntryIdentifier`, `acknowledgementType`,
//! `acknowledgementTimestamp` in epoch ms), `…/v1/delivery-failed` up to 25 failures
//! (`conversationEntryIdentifier`, `errorCode`, `failureTimestamp`). The identifier is
//! convmsg's message identifier (the `webhook-id` of the delivery) or the id the gateway
//! answered the delivery with. Each call is signed per Standard Webhooks with the
//! channel's webhook signing secret — the one its deliveries are signed with — and a
//! `webhook-timestamp` within `receipts.webhook_tolerance_ms` of convmsg's clock. The
//! answer has one result per item, in order; a bad item fails alone.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ReceiptsState, Refusal, Reported, channel_for, header, record};
use crate::domain::model::{Channel, ProviderName};
use crate::domain::receipt::Report;
use crate::providers::webhook;
use crate::store::{MessageKey, ReceiptOutcome};

/// Salesforce's limit per acknowledgement call, kept for failures too.
pub const MAX_ITEMS: usize = 25;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AcknowledgementCall {
    #[serde(default)]
    acknowledgements: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Acknowledgement {
    acknowledged_conversation_entry_identifier: String,
    acknowledgement_type: String,
    #[serde(default)]
    acknowledgement_timestamp: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FailureCall {
    #[serde(default)]
    failures: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Failure {
    conversation_entry_identifier: String,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    failure_timestamp: Option<i64>,
}

/// One item's result.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub(super) struct ItemResult {
    identifier: Option<String>,
    success: bool,
    /// `Applied`, `Unchanged` (a duplicate or a late report) or `Unknown` (no such
    /// message on this channel: acknowledged, nothing to do).
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl ItemResult {
    fn invalid(identifier: Option<String>, message: String) -> Self {
        ItemResult {
            identifier,
            success: false,
            status: None,
            error_code: Some("INVALID_INPUT"),
            message: Some(message),
        }
    }
}

/// A message identifier is a lowercase UUID; anything else is the gateway's own id.
fn key_of(identifier: &str) -> MessageKey {
    match uuid::Uuid::try_parse(identifier) {
        Ok(u) if u.hyphenated().to_string() == identifier => MessageKey::Identifier(identifier.to_owned()),
        _ => MessageKey::ProviderId(identifier.to_owned()),
    }
}

/// The channel, its tenant, and the verified body's JSON.
async fn authenticate(
    state: &ReceiptsState,
    raw: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Channel), Refusal> {
    let (tenant, channel) = channel_for(state, raw, ProviderName::Webhook).await?;
    let id = header(headers, "webhook-id").ok_or(Refusal::Unsigned("webhook-id"))?;
    let timestamp = header(headers, "webhook-timestamp").ok_or(Refusal::Unsigned("webhook-timestamp"))?;
    let signature = header(headers, "webhook-signature").ok_or(Refusal::Unsigned("webhook-signature"))?;
    let timestamp: i64 =
        timestamp.trim().parse().map_err(|_| Refusal::Forbidden("webhook-timestamp is not a number".into()))?;
    let now_s = state.service.clock().now_ms() / 1000;
    let tolerance_s = i64::try_from(state.config.webhook_tolerance_ms / 1000).unwrap_or(i64::MAX);
    if (now_s - timestamp).abs() > tolerance_s {
        return Err(Refusal::Forbidden(format!("webhook-timestamp {timestamp} is too far from now ({now_s})")));
    }
    let key = state.webhook_keys.key_for(&tenant, &channel.developer_name).ok_or_else(|| {
        Refusal::Forbidden(format!(
            "no webhook signing secret for channel {} of tenant {tenant}: set \
             providers.webhook.tenants.{tenant}.secrets.{} or providers.webhook.tenants.{tenant}.secret",
            channel.developer_name, channel.developer_name
        ))
    })?;
    if !webhook::verify(key, id, timestamp, body, signature) {
        return Err(Refusal::Forbidden("webhook-signature does not match".into()));
    }
    Ok((tenant, channel))
}

fn check_count(n: usize, field: &str) -> Result<(), Refusal> {
    match n {
        0 => Err(Refusal::Malformed(format!("{field}: at least one item is required"))),
        n if n > MAX_ITEMS => Err(Refusal::Malformed(format!("{field}: at most {MAX_ITEMS} items per call, not {n}"))),
        _ => Ok(()),
    }
}

/// Records the valid items and merges their outcomes with the invalid items' errors.
async fn answer(
    state: &ReceiptsState,
    tenant: &str,
    channel: &Channel,
    items: Vec<Result<(String, Reported), ItemResult>>,
) -> Result<Response, Refusal> {
    let valid: Vec<Reported> = items.iter().filter_map(|i| i.as_ref().ok()).map(|(_, r)| r.clone()).collect();
    let mut outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        record(state, ProviderName::Webhook, tenant, channel, valid).await?
    }
    .into_iter();
    let results: Vec<ItemResult> = items
        .into_iter()
        .map(|item| match item {
            Err(invalid) => invalid,
            Ok((identifier, _)) => {
                let status = match outcomes.next() {
                    Some(ReceiptOutcome::Matched { changed: true, .. }) => "Applied",
                    Some(ReceiptOutcome::Matched { changed: false, .. }) => "Unchanged",
                    _ => "Unknown",
                };
                ItemResult {
                    identifier: Some(identifier),
                    success: true,
                    status: Some(status),
                    error_code: None,
                    message: None,
                }
            }
        })
        .collect();
    Ok((StatusCode::OK, Json(serde_json::json!({ "results": results }))).into_response())
}

/// One kind of gateway call: its body, the list of items it carries, and what one
/// item reports.
pub(super) trait GatewayCall: serde::de::DeserializeOwned {
    type Item: serde::de::DeserializeOwned;
    /// What a body that does not read is not (`not an acknowledgement call`).
    const WHAT: &'static str;
    /// The field holding the items.
    const LIST: &'static str;
    fn items(self) -> Vec<serde_json::Value>;
    /// The item's identifier and report, or why it is invalid; `field` is `list[i]`.
    fn report(item: Self::Item, field: &str) -> Result<(String, Reported), ItemResult>;
}

/// `POST /receipts/webhook/{channel}/v1/acknowledgement`: `Delivered` or `Read`.
impl GatewayCall for AcknowledgementCall {
    type Item = Acknowledgement;
    const WHAT: &'static str = "an acknowledgement call";
    const LIST: &'static str = "acknowledgements";

    fn items(self) -> Vec<serde_json::Value> {
        self.acknowledgements
    }

    fn report(ack: Acknowledgement, field: &str) -> Result<(String, Reported), ItemResult> {
        let id = ack.acknowledged_conversation_entry_identifier;
        let report = match ack.acknowledgement_type.as_str() {
            "Delivered" => Report::Delivered,
            "Read" => Report::Read,
            other => {
                return Err(ItemResult::invalid(
                    Some(id),
                    format!("{field}.acknowledgementType: {other:?} is not Delivered or Read"),
                ));
            }
        };
        Ok((id.clone(), Reported { key: key_of(&id), report, at_ms: ack.acknowledgement_timestamp }))
    }
}

/// `POST /receipts/webhook/{channel}/v1/delivery-failed`: `Undelivered`, with the
/// gateway's error code when it gives one.
impl GatewayCall for FailureCall {
    type Item = Failure;
    const WHAT: &'static str = "a delivery-failed call";
    const LIST: &'static str = "failures";

    fn items(self) -> Vec<serde_json::Value> {
        self.failures
    }

    fn report(failure: Failure, _field: &str) -> Result<(String, Reported), ItemResult> {
        let id = failure.conversation_entry_identifier;
        let code = failure.error_code.filter(|c| !c.trim().is_empty());
        let report = Report::Failed { code };
        Ok((id.clone(), Reported { key: key_of(&id), report, at_ms: failure.failure_timestamp }))
    }
}

/// One gateway call of kind `C`: authenticated, its body read as `C` ("not {WHAT}" when
/// it is not), its items bounded to `MAX_ITEMS`, each read as `C::Item` and reported —
/// one that does not read is answered as invalid, naming its field `list[i]`, the others
/// are recorded — and answered item by item.
pub(super) async fn per_item<C: GatewayCall>(
    State(state): State<Arc<ReceiptsState>>,
    Path(raw_channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let handled = async {
        let (tenant, channel) = authenticate(&state, &raw_channel, &headers, &body).await?;
        let call: C = serde_json::from_slice(&body).map_err(|e| Refusal::Malformed(format!("not {}: {e}", C::WHAT)))?;
        let raw_items = call.items();
        check_count(raw_items.len(), C::LIST)?;
        let items = raw_items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                let field = format!("{}[{i}]", C::LIST);
                let item =
                    serde_json::from_value(raw).map_err(|e| ItemResult::invalid(None, format!("{field}: {e}")))?;
                C::report(item, &field)
            })
            .collect();
        answer(&state, &tenant, &channel, items).await
    };
    handled.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lowercase_uuid_is_a_message_identifier_and_anything_else_the_gateway_s_id() {
        let id = "0b9f8e6a-5c4d-4e3f-8a2b-1c0d9e8f7a6b";
        assert_eq!(key_of(id), MessageKey::Identifier(id.into()));
        assert_eq!(key_of(&id.to_uppercase()), MessageKey::ProviderId(id.to_uppercase()));
        assert_eq!(key_of("gw-123"), MessageKey::ProviderId("gw-123".into()));
    }

    #[test]
    fn a_call_holds_one_to_twenty_five_items() {
        assert!(check_count(0, "acknowledgements").is_err());
        assert!(check_count(1, "acknowledgements").is_ok());
        assert!(check_count(25, "acknowledgements").is_ok());
        assert!(matches!(check_count(26, "acknowledgements"), Err(Refusal::Malformed(m)) if m.contains("at most 25")));
    }
}
