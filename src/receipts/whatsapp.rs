//! WhatsApp Cloud API webhooks (<https://developers.facebook.com/docs/graph-api/webhooks/getting-started>):
//! the `GET` verification handshake (`hub.mode=subscribe`, `hub.verify_token` = the
//! token entered in the app's webhook settings → answer `hub.challenge`), and `POST`
//! notifications signed in `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret,
//! raw body)>`, whose `entry[].changes[].value.statuses[]` report `sent`, `delivered`,
//! `read` or `failed` (with `errors[].code`) for a `wamid…` id. Everything else in a
//! notification (inbound messages, other fields) is acknowledged and left alone.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::{ReceiptsState, Refusal, Reported, channel_for, header, record};
use crate::config::receipts::ReceiptSecret;
use crate::domain::model::ProviderName;
use crate::domain::receipt::Report;
use crate::store::MessageKey;

const SIGNATURE: &str = "x-hub-signature-256";

/// `GET /receipts/whatsapp/{channel}`: Meta's subscription check.
pub async fn verify(State(state): State<Arc<ReceiptsState>>, Path(channel): Path<String>, uri: Uri) -> Response {
    let (tenant, channel) = match channel_for(&state, &channel, ProviderName::WhatsApp).await {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let field = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let expected = state.config.secret(&tenant, &channel.developer_name, ReceiptSecret::WhatsAppVerifyToken);
    let Some(expected) = expected else {
        return Refusal::Forbidden(format!(
            "no WhatsApp verify token for channel {} of tenant {tenant}: set \
             receipts.tenants.{tenant}.whatsapp_verify_token",
            channel.developer_name
        ))
        .into_response();
    };
    let given = field("hub.verify_token").unwrap_or("");
    let token_matches = hmac_equal(given.as_bytes(), expected.as_bytes());
    match (field("hub.mode"), field("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if token_matches => (StatusCode::OK, challenge.to_owned()).into_response(),
        (Some("subscribe"), Some(_)) => Refusal::Forbidden("hub.verify_token does not match".into()).into_response(),
        _ => Refusal::Malformed("hub.mode=subscribe and hub.challenge are required".into()).into_response(),
    }
}

/// Compares two secrets in constant time (an HMAC of each under one key).
fn hmac_equal(a: &[u8], b: &[u8]) -> bool {
    let mac = |v: &[u8]| {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"convmsg verify token")
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        m.update(v);
        m
    };
    mac(a).verify_slice(&mac(b).finalize().into_bytes()).is_ok()
}

/// Whether `header` (`sha256=<hex>`) signs `body` with `app_secret` (constant-time).
pub fn verify_signature(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=").and_then(decode_hex) else { return false };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(app_secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

#[derive(Deserialize)]
struct Notification {
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct Value {
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
    /// Unix seconds, as a string.
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    errors: Vec<StatusError>,
}

#[derive(Deserialize)]
struct StatusError {
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// The receipts a notification reports, in order; statuses convmsg does not know are
/// skipped.
fn receipts(body: &[u8]) -> Result<Vec<Reported>, Refusal> {
    let notification: Notification =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(format!("not a WhatsApp notification: {e}")))?;
    let statuses =
        notification.entry.into_iter().flat_map(|e| e.changes).filter_map(|c| c.value).flat_map(|v| v.statuses);
    Ok(statuses
        .filter_map(|s| {
            let report = match s.status.as_str() {
                "sent" => Report::Sent,
                "delivered" => Report::Delivered,
                "read" => Report::Read,
                "failed" => Report::Failed {
                    code: s.errors.into_iter().find_map(|e| match e.code? {
                        serde_json::Value::Number(n) => Some(n.to_string()),
                        serde_json::Value::String(s) if !s.is_empty() => Some(s),
                        _ => None,
                    }),
                },
                _ => return None,
            };
            let at_ms = s.timestamp.and_then(|t| t.trim().parse::<i64>().ok()).and_then(|t| t.checked_mul(1000));
            Some(Reported { key: MessageKey::ProviderId(s.id), report, at_ms })
        })
        .collect())
}

/// `POST /receipts/whatsapp/{channel}`.
pub async fn notification(
    State(state): State<Arc<ReceiptsState>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let handled = async {
        let (tenant, channel) = channel_for(&state, &channel, ProviderName::WhatsApp).await?;
        let signature = header(&headers, SIGNATURE).ok_or(Refusal::Unsigned("X-Hub-Signature-256"))?;
        let secret = state
            .config
            .secret(&tenant, &channel.developer_name, ReceiptSecret::WhatsAppAppSecret)
            .ok_or_else(|| {
                Refusal::Forbidden(format!(
                    "no WhatsApp app secret for channel {} of tenant {tenant}: set \
                     receipts.tenants.{tenant}.whatsapp_app_secret",
                    channel.developer_name
                ))
            })?;
        if !verify_signature(&secret, &body, signature) {
            return Err(Refusal::Forbidden("X-Hub-Signature-256 does not match the body".into()));
        }
        let reported = receipts(&body)?;
        if !reported.is_empty() {
            record(&state, ProviderName::WhatsApp, &tenant, &channel, reported).await?;
        }
        Ok(())
    };
    match handled.await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_raw_body() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"app-secret").unwrap();
        mac.update(body);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert!(verify_signature("app-secret", body, &format!("sha256={hex}")));
        assert!(!verify_signature("app-secret", body, &format!("sha256={}", hex.to_uppercase().replace('A', "B"))));
        assert!(!verify_signature("other", body, &format!("sha256={hex}")));
        assert!(!verify_signature("app-secret", b"{}", &format!("sha256={hex}")));
        assert!(!verify_signature("app-secret", body, &hex), "the sha256= prefix is required");
    }

    #[test]
    fn statuses_are_read_in_order_with_their_time_and_error_code() {
        let body = br#"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages",
            "value":{"messaging_product":"whatsapp","statuses":[
              {"id":"wamid.A","status":"delivered","timestamp":"1767225601","recipient_id":"1555"},
              {"id":"wamid.B","status":"failed","timestamp":"1767225602","errors":[{"code":131047,"title":"Re-engagement message"}]},
              {"id":"wamid.C","status":"deleted","timestamp":"1767225603"}]}}]}]}"#;
        let got = receipts(body).unwrap();
        assert_eq!(got.len(), 2, "an unknown status is skipped");
        assert_eq!(got[0].key, MessageKey::ProviderId("wamid.A".into()));
        assert_eq!((got[0].report.clone(), got[0].at_ms), (Report::Delivered, Some(1_767_225_601_000)));
        assert_eq!(got[1].report, Report::Failed { code: Some("131047".into()) });
        assert!(receipts(b"[1,2]").is_err());
        assert!(receipts(br#"{"entry":[{"changes":[{"value":{"messages":[{"id":"x"}]}}]}]}"#).unwrap().is_empty());
    }
}
