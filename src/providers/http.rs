//! What the HTTP providers share: one way to build a client (rustls on the `ring`
//! provider, a total timeout, no redirects), to read a response body with a size cap,
//! to read `Retry-After`, and to classify transport failures. It must not decide what a
//! provider's own error codes mean: each provider maps those itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

use super::guard::{Destinations, GuardedResolver};
use super::{ProviderError, ProviderName};
use crate::domain::reason::FailureReason;

/// Most of a response body a provider reads; the rest is dropped. Provider answers are
/// small JSON documents; this keeps a misbehaving endpoint from filling memory.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The `User-Agent` every provider sends.
pub(crate) const USER_AGENT: &str = concat!("convmsg/", env!("CARGO_PKG_VERSION"));

/// A client whose every request gives up after `timeout` (connecting included). Redirects
/// are not followed: a provider API that redirects a POST is misconfigured, and
/// following it would resend the message body to an address nobody configured.
pub(crate) fn build_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(builder(timeout).build()?)
}

/// A client for tenant-controlled URLs: as `build_client`, but every name is resolved
/// through the guard (refused addresses never reach the connector) and no proxy from
/// the environment is used (it would connect on the guard's behalf).
pub(crate) fn build_guarded_client(timeout: Duration, rules: Arc<Destinations>) -> anyhow::Result<reqwest::Client> {
    Ok(builder(timeout).no_proxy().dns_resolver(Arc::new(GuardedResolver { rules })).build()?)
}

fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    // reqwest is built with `rustls-no-provider`: it uses the process default crypto
    // provider. Install ring's unless something installed one first (then that one is used).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
}

/// Records the outgoing request on the current span (`provider.send` declares the
/// fields): `http.request.method`, `url.full` and `server.address`. The URL never
/// carries secrets there: user info and query values are redacted, and `keep_path =
/// false` drops the path too (webhook URLs are often capability URLs).
pub(crate) fn record_request(method: &http::Method, url: &reqwest::Url, keep_path: bool) {
    let span = tracing::Span::current();
    span.record("http.request.method", method.as_str());
    span.record("url.full", redacted_url(url, keep_path));
    if let Some(host) = url.host_str() {
        span.record("server.address", host);
    }
}

/// Records the answer's status on the current span.
pub(crate) fn record_status(status: reqwest::StatusCode) {
    tracing::Span::current().record("http.response.status_code", status.as_u16());
}

/// `url` as it may appear in telemetry (OpenTelemetry's `url.full` redaction rules).
pub(crate) fn redacted_url(url: &reqwest::Url, keep_path: bool) -> String {
    let mut shown = url.clone();
    if !shown.username().is_empty() || shown.password().is_some() {
        let _ = shown.set_username("REDACTED");
        let _ = shown.set_password(Some("REDACTED"));
    }
    shown.set_fragment(None);
    if !keep_path {
        shown.set_path("/");
        shown.set_query(None);
        return shown.to_string();
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        shown.query_pairs_mut().clear().extend_pairs(keys.iter().map(|k| (k.as_str(), "REDACTED")));
    }
    shown.to_string()
}

/// Parses `base` as an absolute http(s) URL, naming `setting` in the error.
pub(crate) fn parse_base_url(setting: &str, base: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(base).map_err(|e| anyhow::anyhow!("{setting} = {base:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("{setting} = {base:?} must be an http or https URL");
    }
    Ok(url)
}

/// `base` joined with path segments, each percent-encoded as one segment.
pub(crate) fn url_with_segments(base: &reqwest::Url, segments: &[&str]) -> Result<reqwest::Url, ProviderError> {
    let mut url = base.clone();
    {
        let mut path = url.path_segments_mut().map_err(|()| ProviderError::Permanent {
            reason: FailureReason::ProviderMisconfigured,
            detail: format!("{base} cannot carry a path"),
        })?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}

/// A request that got no usable answer: timeouts, refused or reset connections, a body
/// cut short. All are worth retrying.
pub(crate) fn transport_error(provider: ProviderName, err: &reqwest::Error) -> ProviderError {
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    ProviderError::Transient { detail: format!("{provider}: {what}: {}", error_chain(err)), retry_after: None }
}

/// An error and its sources on one line (reqwest's own message omits the cause).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads at most [`MAX_BODY_BYTES`] of the body. A failure while reading is transient.
pub(crate) async fn read_body(
    provider: ProviderName,
    mut response: reqwest::Response,
) -> Result<Vec<u8>, ProviderError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(provider, &e))? {
        let room = MAX_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BODY_BYTES {
            break;
        }
    }
    Ok(body)
}

/// 408, 429 and every 5xx: the server may well take the same request later.
pub(crate) fn is_transient_status(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `Retry-After` as a delay from `now`: either delay-seconds or an HTTP-date (RFC 9110
/// §10.2.3). A date in the past is a zero delay; anything unparseable is ignored.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The first 300 characters of a response body, for failure details.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn urls_in_telemetry_carry_no_credentials_query_values_or_webhook_paths() {
        let url =
            reqwest::Url::parse("https://user:pw@api.example.com/v1/Accounts/AC1/Messages.json?token=s3cret").unwrap();
        let shown = redacted_url(&url, true);
        assert_eq!(shown, "https://REDACTED:REDACTED@api.example.com/v1/Accounts/AC1/Messages.json?token=REDACTED");
        let hook = reqwest::Url::parse("https://hooks.example.com/services/T000/B000/XXXXSECRET").unwrap();
        assert_eq!(redacted_url(&hook, false), "https://hooks.example.com/");
    }

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_in_seconds_is_that_many_seconds() {
        assert_eq!(retry_after(&with_retry_after("120"), SystemTime::now()), Some(Duration::from_secs(120)));
    }

    #[test]
    fn retry_after_as_an_http_date_is_the_time_until_then() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let headers = with_retry_after("Sun, 06 Nov 1994 08:50:07 GMT");
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn retry_after_in_the_past_is_no_wait_and_garbage_is_ignored() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(retry_after(&with_retry_after("Sun, 06 Nov 1994 08:00:00 GMT"), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&with_retry_after("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn url_segments_are_encoded_one_by_one() {
        let base = parse_base_url("x", "http://127.0.0.1:9/api/").unwrap();
        let url = url_with_segments(&base, &["v21.0", "12/34", "messages"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/api/v21.0/12%2F34/messages");
    }

    #[test]
    fn a_base_url_must_be_http() {
        assert!(parse_base_url("providers.x.base_url", "ftp://example.com").is_err());
        let err = parse_base_url("providers.x.base_url", "not a url").unwrap_err();
        assert!(err.to_string().contains("providers.x.base_url"), "{err}");
    }
}
