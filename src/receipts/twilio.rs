//! Twilio status callbacks (<https://www.twilio.com/docs/messaging/guides/track-outbound-message-status>):
//! a form-encoded `POST` with `MessageSid`, `MessageStatus` and, for failures,
//! `ErrorCode`, signed in `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, the full
//! URL Twilio called + every form parameter's name and value, sorted by name))
//! (<https://www.twilio.com/docs/usage/webhooks/webhooks-security>). Statuses before
//! `sent` (queued, accepted, sending, scheduled) report nothing yet and are acknowledged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac_sha1::{KeyInit, Mac};

use super::{ReceiptsState, Refusal, Reported, called_url, channel_for, header, record, text};
use crate::config::receipts::ReceiptSecret;
use crate::domain::model::ProviderName;
use crate::domain::receipt::Report;
use crate::store::MessageKey;

const SIGNATURE: &str = "x-twilio-signature";

type HmacSha1 = hmac_sha1::Hmac<sha1::Sha1>;

/// HMAC-SHA1 over what Twilio signs: the URL, then each parameter's name and value in
/// name order (a name given twice keeps its values in the order sent).
fn signed_mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha1 as KeyInit>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio would send.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    STANDARD.encode(signed_mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is Twilio's for this call (constant-time).
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else { return false };
    signed_mac(auth_token, url, params).verify_slice(&given).is_ok()
}

/// What a `MessageStatus` reports; `None` for the steps before `sent`.
fn report(status: &str, error_code: Option<&str>) -> Option<Report> {
    Some(match status {
        "sent" => Report::Sent,
        "delivered" => Report::Delivered,
        "read" => Report::Read,
        "undelivered" | "failed" => {
            Report::Failed { code: error_code.map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned) }
        }
        _ => return None,
    })
}

/// `POST /receipts/twilio/{channel}`.
pub async fn status_callback(
    State(state): State<Arc<ReceiptsState>>,
    Path(channel): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle(&state, &channel, &uri, &headers, &body).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn handle(state: &ReceiptsState, raw: &str, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Result<(), Refusal> {
    let (tenant, channel) = channel_for(state, raw, ProviderName::Twilio).await?;
    let signature = header(headers, SIGNATURE).ok_or(Refusal::Unsigned("X-Twilio-Signature"))?;
    let token = state
        .config
        .secret(&tenant, &channel.developer_name, ReceiptSecret::TwilioAuthToken)
        .or_else(|| state.twilio_auth_token.clone())
        .ok_or_else(|| {
            Refusal::Forbidden(format!(
                "no Twilio auth token for channel {} of tenant {tenant}: set \
                 receipts.tenants.{tenant}.twilio_auth_token or providers.twilio.auth_token",
                channel.developer_name
            ))
        })?;
    let url = called_url(state, headers, uri).ok_or(Refusal::Malformed("no Host header".into()))?;
    let params: Vec<(String, String)> =
        form_urlencoded::parse(text(body)?.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if !verify(&token, &url, &params, signature) {
        return Err(Refusal::Forbidden(format!("X-Twilio-Signature does not match {url}")));
    }
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let sid = field("MessageSid").or(field("SmsSid")).filter(|s| !s.is_empty());
    let sid = sid.ok_or(Refusal::Malformed("MessageSid is missing".into()))?;
    let status = field("MessageStatus").or(field("SmsStatus"));
    let status = status.ok_or(Refusal::Malformed("MessageStatus is missing".into()))?;
    let Some(report) = report(status, field("ErrorCode")) else { return Ok(()) };
    let reported = vec![Reported { key: MessageKey::ProviderId(sid.to_owned()), report, at_ms: None }];
    record(state, ProviderName::Twilio, &tenant, &channel, reported).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn signatures_match_twilio_s_published_examples() {
        // The example of Twilio's webhook security page (auth token 12345), in both of
        // its published versions (the Caller number changed between them).
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let params = |caller| {
            pairs(&[
                ("CallSid", "CA1234567890ABCDE"),
                ("Caller", caller),
                ("Digits", "1234"),
                ("From", caller),
                ("To", "+18005551212"),
            ])
        };
        assert_eq!(sign("12345", url, &params("+14158675310")), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert_eq!(sign("12345", url, &params("+14158675309")), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        let mut shuffled = params("+14158675310");
        shuffled.reverse();
        assert!(verify("12345", url, &shuffled, "GvWf1cFY/Q7PnoempGyD5oXAezc="), "the order sent does not matter");
    }

    #[test]
    fn a_changed_url_parameter_or_token_does_not_verify() {
        let params = pairs(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")]);
        let url = "https://convmsg.example.com/receipts/twilio/0Mj";
        let good = sign("token", url, &params);
        assert!(verify("token", url, &params, &good));
        assert!(!verify("other", url, &params, &good));
        assert!(!verify("token", "http://convmsg.example.com/receipts/twilio/0Mj", &params, &good));
        assert!(!verify("token", url, &pairs(&[("MessageSid", "SM1"), ("MessageStatus", "read")]), &good));
        assert!(!verify("token", url, &params, "not base64!"));
    }

    #[test]
    fn statuses_map_to_reports_and_the_early_ones_to_nothing() {
        assert_eq!(report("delivered", None), Some(Report::Delivered));
        assert_eq!(report("undelivered", Some("30003")), Some(Report::Failed { code: Some("30003".into()) }));
        assert_eq!(report("failed", Some("")), Some(Report::Failed { code: None }));
        for early in ["queued", "accepted", "sending", "scheduled"] {
            assert_eq!(report(early, None), None, "{early}");
        }
    }
}
