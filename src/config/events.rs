//! `[events]`: sending status events to tenants' event endpoints (`events`). The
//! endpoints themselves are records (`StatusEvents` admin RPCs); these are the task's
//! knobs. Retries follow the dispatcher's `retry_schedule_ms` and `retry_jitter`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Run the sending task on this replica (events are still recorded when off, and
    /// any replica that sends delivers them).
    pub enabled: bool,
    /// Most event POSTs in flight at once, all endpoints together: sending never takes
    /// more than this, whatever the endpoints do, so it cannot slow accepting or sending.
    pub max_in_flight: u32,
    /// Longest one POST may take, connecting included; past it the attempt failed.
    pub timeout_ms: u64,
    /// How often the task looks for due events when nothing woke it.
    pub poll_interval_ms: u64,
    /// How long a claimed event is this replica's before another may send it.
    pub lease_ms: u64,
    /// An endpoint whose every delivery failed for this long is disabled (a log event
    /// and `convmsg_event_endpoints_disabled`); re-enable it with UpdateEventEndpoint.
    pub disable_after_ms: u64,
    /// Also send to `http://` URLs (off: `https://` only).
    pub allow_http: bool,
    /// Networks (CIDR) endpoint URLs may reach although they are not public. Empty:
    /// public addresses only.
    pub allowed_networks: Vec<String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: true,
            max_in_flight: 16,
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
            lease_ms: 60_000,
            disable_after_ms: 5 * 24 * 3_600_000,
            allow_http: false,
            allowed_networks: Vec::new(),
        }
    }
}

/// `[[event_endpoints]]`: an endpoint declared in the file, upserted at every start by
/// tenant and name (URL, types and secret follow the file; whether it is enabled is
/// left as the API or the failure rule set it).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventEndpointConfig {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub name: String,
    pub url: String,
    /// Empty: every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// `whsec_` + base64: the key events are signed with.
    pub secret: String,
}

fn default_tenant() -> String {
    "default".into()
}

impl std::fmt::Debug for EventEndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEndpointConfig")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("event_types", &self.event_types)
            .field("secret", &"<redacted>")
            .finish()
    }
}
