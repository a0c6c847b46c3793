//! Query locators — the `01g…-2000` of `nextRecordsUrl` — without server state. A
//! locator carries everything the next page needs: the SOQL text, the moment its date
//! literals were evaluated (so `TODAY` means the same day on every page), the sort
//! values of the last record returned, how many records came so far, the total and the
//! batch size. Any replica behind a load balancer can serve it; none keeps a cursor.
//!
//! Shape: `01g` + base64url(check ‖ payload) + `-` + records returned so far, where
//! `payload` is compact JSON and `check` the first 8 bytes of SHA-256 over the caller's
//! tenant and the payload. The check makes a truncated, altered or another tenant's
//! locator `INVALID_QUERY_LOCATOR`; it is not a secret (a forged locator could only run a
//! query its holder may run anyway). Locators do not expire.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::domain::ErrorKind;
use crate::domain::query::SortValue;
use crate::error::AppError;
use crate::service::Cursor;

/// Salesforce's key prefix of query locators.
pub const PREFIX: &str = "01g";
const CHECK_BYTES: usize = 8;

/// What the next page of a query needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Locator {
    #[serde(rename = "q")]
    pub soql: String,
    /// When the query's date literals were evaluated (Unix ms).
    #[serde(rename = "at")]
    pub now_ms: i64,
    /// The sort values of the last record returned.
    #[serde(rename = "k")]
    pub after: Vec<SortValue>,
    /// Records returned so far.
    #[serde(rename = "n")]
    pub returned: u64,
    /// `totalSize`.
    #[serde(rename = "t")]
    pub total: u64,
    #[serde(rename = "b")]
    pub batch: u32,
}

impl Locator {
    pub fn cursor(&self) -> Cursor {
        Cursor { after: Some(self.after.clone()), returned: self.returned }
    }
}

fn check(tenant: &str, payload: &[u8]) -> [u8; CHECK_BYTES] {
    let mut hash = Sha256::new();
    hash.update(tenant.as_bytes());
    hash.update([0]);
    hash.update(payload);
    let digest = hash.finalize();
    let mut out = [0; CHECK_BYTES];
    out.copy_from_slice(&digest[..CHECK_BYTES]);
    out
}

/// The locator text for `tenant`.
pub fn encode(tenant: &str, locator: &Locator) -> String {
    let payload = serde_json::to_vec(locator).unwrap_or_default();
    let mut bytes = check(tenant, &payload).to_vec();
    bytes.extend_from_slice(&payload);
    format!("{PREFIX}{}-{}", URL_SAFE_NO_PAD.encode(bytes), locator.returned)
}

fn invalid(text: &str) -> AppError {
    let shown: String = text.chars().take(40).collect();
    let ellipsis = if text.chars().count() > 40 { "…" } else { "" };
    AppError::Request {
        kind: ErrorKind::InvalidQueryLocator,
        message: format!("invalid query locator: {shown}{ellipsis}"),
    }
}

/// The locator `text` names, if this server issued it for `tenant`.
pub fn decode(tenant: &str, text: &str) -> Result<Locator, AppError> {
    let body = text.strip_prefix(PREFIX).ok_or_else(|| invalid(text))?;
    let (encoded, returned) = body.rsplit_once('-').ok_or_else(|| invalid(text))?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid(text))?;
    if bytes.len() <= CHECK_BYTES {
        return Err(invalid(text));
    }
    let (sum, payload) = bytes.split_at(CHECK_BYTES);
    if sum != check(tenant, payload) {
        return Err(invalid(text));
    }
    let locator: Locator = serde_json::from_slice(payload).map_err(|_| invalid(text))?;
    if returned != locator.returned.to_string() {
        return Err(invalid(text));
    }
    Ok(locator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Locator {
        Locator {
            soql: "SELECT Id FROM ConvMessageSendRequest WHERE Name LIKE 'MSJ-%'".into(),
            now_ms: 1_767_225_600_000,
            after: vec![SortValue::Int(5), SortValue::Null, SortValue::Text("1sr\"x/".into()), SortValue::Bool(true)],
            returned: 2000,
            total: 4500,
            batch: 2000,
        }
    }

    #[test]
    fn a_locator_round_trips_for_its_tenant_and_is_one_url_segment_ending_in_the_count() {
        let text = encode("acme", &sample());
        assert!(text.starts_with("01g") && text.ends_with("-2000"), "{text}");
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{text}");
        assert_eq!(decode("acme", &text).unwrap(), sample());
        assert_eq!(decode("acme", &text).unwrap().cursor().returned, 2000);
    }

    #[test]
    fn another_tenant_s_altered_truncated_or_foreign_locator_is_invalid() {
        let text = encode("acme", &sample());
        let kind = |t: &str, tenant: &str| decode(tenant, t).unwrap_err().kind();
        assert_eq!(kind(&text, "other"), ErrorKind::InvalidQueryLocator);
        let mut altered = text.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        assert_eq!(kind(&String::from_utf8(altered).unwrap(), "acme"), ErrorKind::InvalidQueryLocator);
        assert_eq!(kind(&text[..text.len() / 2], "acme"), ErrorKind::InvalidQueryLocator);
        assert_eq!(kind(&text.replace("-2000", "-4000"), "acme"), ErrorKind::InvalidQueryLocator);
        for foreign in ["01gD0000002HU6KIAW-2000", "nonsense", "", "01g-1"] {
            assert_eq!(kind(foreign, "acme"), ErrorKind::InvalidQueryLocator, "{foreign}");
        }
    }
}
