//! One typed configuration, layered: built-in defaults, then the TOML file
//! (`--config` / `CONVMSG_CONFIG`), then `CONVMSG_*` environment variables (sections
//! with `__`: `CONVMSG_ADMISSION__MAX_CONCURRENT_REQUESTS=500`; see `env`), then
//! command-line flags. The commented reference is `config/convmsg.example.toml`.

use std::path::Path;

use crate::providers::ProvidersConfig;
pub use crate::telemetry::config::{LogConfig, LogFormat, OtlpProtocol, TelemetryConfig};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

mod env;
pub mod events;
pub mod receipts;
mod records;
mod redact;

pub use events::{EventEndpointConfig, EventsConfig};
pub use receipts::ReceiptsConfig;
pub use records::{
    ChannelConfig, DefinitionConfig, EndUserConfig, ParameterConfig, ProvisioningConfig, TemplateConfig, TenantConfig,
    TokenConfig,
};

pub use crate::dispatch::config::DispatchConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the one listener (gRPC, REST, health, metrics).
    pub listen: String,
    /// `sqlite://file.db` (created if missing) or `postgres://user@host:port/db`
    /// (several replicas may share it).
    pub database_url: String,
    /// A token upserted for tenant `default` with every scope at each start.
    pub bootstrap_token: Option<String>,
    /// TLS on the listener; off unless both files are set.
    pub tls: TlsConfig,
    /// How many connections may be open and how long each may stay silent or idle.
    pub connections: ConnectionsConfig,
    /// How tokens are checked and how fast revocations spread.
    pub auth: AuthConfig,
    /// What happens between SIGTERM and exit.
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub admission: AdmissionConfig,
    pub database: DatabaseConfig,
    pub dispatch: DispatchConfig,
    pub retention: RetentionConfig,
    /// Channel providers' endpoints, credentials and timeouts (`[providers.*]`).
    pub providers: ProvidersConfig,
    pub rest: RestConfig,
    /// Delivery receipts from providers: the public URL and the callbacks' secrets.
    pub receipts: ReceiptsConfig,
    /// Status events to tenants' endpoints: the sending task's knobs.
    pub events: EventsConfig,
    pub tenants: Vec<TenantConfig>,
    pub channels: Vec<ChannelConfig>,
    pub definitions: Vec<DefinitionConfig>,
    pub end_users: Vec<EndUserConfig>,
    /// Event endpoints declared here, upserted at start (`[[event_endpoints]]`).
    pub event_endpoints: Vec<EventEndpointConfig>,
    /// What happens to the records the file declares.
    pub provisioning: ProvisioningConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:50051".into(),
            database_url: "sqlite://convmsg.db".into(),
            bootstrap_token: None,
            tls: TlsConfig::default(),
            connections: ConnectionsConfig::default(),
            auth: AuthConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            admission: AdmissionConfig::default(),
            database: DatabaseConfig::default(),
            dispatch: DispatchConfig::default(),
            retention: RetentionConfig::default(),
            providers: ProvidersConfig::default(),
            rest: RestConfig::default(),
            receipts: ReceiptsConfig::default(),
            events: EventsConfig::default(),
            tenants: Vec::new(),
            channels: Vec::new(),
            definitions: Vec::new(),
            end_users: Vec::new(),
            event_endpoints: Vec::new(),
            provisioning: ProvisioningConfig::default(),
        }
    }
}

/// `[tls]`: serve gRPC, HTTP/1.1 and h2 over TLS on the one listener, for deployments
/// without a mesh that terminates TLS. Both paths or neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_path: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: Option<String>,
}

impl TlsConfig {
    /// The certificate and key files, `None` when TLS is off; an error when only one is set.
    pub fn files(&self) -> Result<Option<(&Path, &Path)>, String> {
        match (&self.cert_path, &self.key_path) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some((Path::new(cert), Path::new(key)))),
            (Some(_), None) => Err("tls.cert_path is set but tls.key_path is not; set both or neither".into()),
            (None, Some(_)) => Err("tls.key_path is set but tls.cert_path is not; set both or neither".into()),
        }
    }
}

/// `[connections]`: the leash every connection of the listener is on, so that silent or
/// idle sockets cannot pile up and starve the process of file descriptors (see
/// `serve`). Durations of 0 turn `idle_timeout_ms` and the HTTP/2 pings off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Connections open at once; one more is closed as soon as it is accepted. Keep it
    /// below the process's file limit (`ulimit -n`) minus the database pool and providers.
    pub max: usize,
    /// From accept until the first request's headers have arrived (TLS handshake and the
    /// HTTP/2 preface included); past it the connection is dropped. HTTP/1.1 also waits
    /// at most this long for each later request's headers.
    pub first_request_timeout_ms: u64,
    /// A connection with no call in flight (a streaming response counts until its end)
    /// for this long is closed gracefully (HTTP/2 GOAWAY).
    pub idle_timeout_ms: u64,
    /// How often an HTTP/2 peer is pinged.
    pub http2_keepalive_interval_ms: u64,
    /// How long a ping may go unanswered before the connection is closed.
    pub http2_keepalive_timeout_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        ConnectionsConfig {
            max: 4096,
            first_request_timeout_ms: 10_000,
            idle_timeout_ms: 300_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 10_000,
        }
    }
}

/// `[auth]`: tokens are checked against an in-memory copy of the token table, which
/// every replica reloads this often; a token revoked on one replica (API or CLI) stops
/// working there at once and on the others within this interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub token_reload_interval_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { token_reload_interval_ms: 10_000 }
    }
}

/// `[shutdown]`: on SIGTERM, health turns NOT_SERVING and the dispatcher stops claiming
/// at once; the listener closes after `stop_accepting_after_ms`; sends and calls in flight
/// get until `dispatch.drain_period_ms` (counted from the signal) to finish.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long the listener keeps accepting calls after health turned NOT_SERVING, so
    /// that load balancers and Kubernetes endpoints stop routing here before it closes
    /// (what a preStop sleep would otherwise do). Capped at the drain period.
    pub stop_accepting_after_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Calls served at once across the listener; beyond this, a call waits at most
    /// `queue_timeout_ms` for a slot, then is refused with RESOURCE_EXHAUSTED / HTTP 503.
    pub max_concurrent_requests: usize,
    /// Longest a call waits for a slot before it is refused (0: refused at once).
    pub queue_timeout_ms: u64,
    /// Longest a unary call may take before DEADLINE_EXCEEDED / HTTP 503.
    pub request_timeout_ms: u64,
    /// Retry advice sent with an overload answer.
    pub retry_after_ms: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_concurrent_requests: 1024,
            queue_timeout_ms: 100,
            request_timeout_ms: 30_000,
            retry_after_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connections in the pool. SQLite: read connections (its writer has one more of
    /// its own). PostgreSQL: every connection of this replica, the accept writer's
    /// included; mind the server's `max_connections` across all replicas.
    pub max_connections: u32,
    /// How long a call waits for a connection or a database lock before it is refused as
    /// busy (RESOURCE_EXHAUSTED; the database is up, the server is overloaded).
    pub acquire_timeout_ms: u64,
    /// PostgreSQL: longest one statement may run, lock waits included, before it is
    /// cancelled and the call refused as busy (0 = no limit). SQLite ignores it.
    pub statement_timeout_ms: u64,
    /// Most send requests one group commit records.
    pub accept_batch_max: usize,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            max_connections: 8,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 30_000,
            accept_batch_max: 256,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Completed requests (with their messages and idempotency keys) older than this are
    /// deleted; 0 keeps them forever. Pending and in-progress requests are never purged.
    pub completed_max_age_ms: u64,
    /// How often the purge runs (in every replica; they skip each other's rows).
    pub purge_interval_ms: u64,
    /// Most requests one purge transaction deletes (short transactions, small locks).
    pub purge_batch: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { completed_max_age_ms: 30 * 24 * 3_600_000, purge_interval_ms: 600_000, purge_batch: 500 }
    }
}

/// The Salesforce REST bridge (`/services/data/…`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RestConfig {
    /// Largest request body accepted; a larger one is answered 413 before it is parsed,
    /// so one caller cannot make the server buffer an unbounded body.
    pub body_limit_bytes: usize,
    /// Most `inputs` one invocation may carry. Each input is its own send request (up to
    /// 100 recipients), so this bounds the work — and the time — of one HTTP call.
    pub max_inputs_per_call: usize,
    /// Longest the whole request body may take to arrive; a slower one is answered 408
    /// and its slot in admission is freed, so stalled uploads cannot hold slots.
    pub body_timeout_ms: u64,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig { body_limit_bytes: 1_048_576, max_inputs_per_call: 100, body_timeout_ms: 10_000 }
    }
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "TlsOverrides::is_empty")]
    pub tls: TlsOverrides,
}

/// `--tls-cert` / `--tls-key`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TlsOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
}

impl TlsOverrides {
    fn is_empty(&self) -> bool {
        self.cert_path.is_none() && self.key_path.is_none()
    }
}

impl Config {
    /// Defaults ← file ← `CONVMSG_*` env (this process's) ← flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, Box<figment::Error>> {
        Config::load_layers(file, env::EnvLayer::from_process(), overrides)
    }

    /// As `load`, with `vars` standing for the process environment (tests).
    pub fn load_with_env(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, Box<figment::Error>> {
        Config::load_layers(file, env::EnvLayer::from_vars(vars), overrides)
    }

    fn load_layers(
        file: Option<&Path>,
        env: env::EnvLayer,
        overrides: &Overrides,
    ) -> Result<Config, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!("config file {} does not exist", path.display()))));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(env).merge(Serialized::defaults(overrides));
        // Errors never quote the file's values: they may be secrets.
        figment.extract().map_err(|e| Box::new(redact::config_error(e)))
    }
}

/// The `CONVMSG_*` variables of this process that set nothing (a misspelt name, a
/// single `_` where `__` separates a section), each with a hint where one is likely;
/// `serve` warns about them at start.
pub fn ignored_environment_variables() -> Vec<String> {
    env::EnvLayer::from_process().ignored()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_listen_on_loopback_50051_with_an_embedded_sqlite_file() {
        let c = Config::default();
        assert_eq!(c.listen, "127.0.0.1:50051");
        assert_eq!(c.database_url, "sqlite://convmsg.db");
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/convmsg.example.toml");
        let c = Config::load(Some(&path), &Overrides::default()).expect("example config parses");
        assert!(!c.tenants.is_empty() && !c.channels.is_empty() && !c.definitions.is_empty());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\n[admission]\nmax_concurrent_requests = 7\n").unwrap();
        let c = Config::load(Some(&path), &Overrides { listen: Some("127.0.0.1:2".into()), ..Overrides::default() })
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.admission.max_concurrent_requests, 7);
    }

    #[test]
    fn a_tls_flag_overrides_one_file_and_keeps_the_other_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[tls]\ncert_path = \"/file/cert.pem\"\nkey_path = \"/file/key.pem\"\n").unwrap();
        let overrides = Overrides {
            tls: TlsOverrides { cert_path: Some("/flag/cert.pem".into()), key_path: None },
            ..Overrides::default()
        };
        let c = Config::load(Some(&path), &overrides).unwrap();
        let (cert, key) = c.tls.files().unwrap().unwrap();
        assert_eq!((cert, key), (Path::new("/flag/cert.pem"), Path::new("/file/key.pem")));
    }

    #[test]
    fn tls_with_a_certificate_but_no_key_is_an_error_naming_the_missing_key() {
        let tls = TlsConfig { cert_path: Some("cert.pem".into()), key_path: None };
        assert!(tls.files().unwrap_err().contains("tls.key_path"));
        assert_eq!(TlsConfig::default().files().unwrap(), None);
    }

    #[test]
    fn a_providers_section_in_the_file_sets_credentials_and_keeps_other_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[providers.whatsapp]\naccess_token = \"EAAG\"\n[providers.twilio]\ntimeout_ms = 2500\n")
            .unwrap();
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.providers.whatsapp.access_token.as_deref(), Some("EAAG"));
        assert_eq!(c.providers.whatsapp.api_version, "v21.0");
        assert_eq!(c.providers.twilio.timeout_ms, 2500);
        assert_eq!(c.providers.twilio.base_url, "https://api.twilio.com");
    }

    #[test]
    fn the_rest_limits_default_to_one_mebibyte_and_100_inputs_and_read_from_the_file() {
        assert_eq!(
            RestConfig::default(),
            RestConfig { body_limit_bytes: 1_048_576, max_inputs_per_call: 100, body_timeout_ms: 10_000 }
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[rest]\nmax_inputs_per_call = 5\n").unwrap();
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.rest, RestConfig { max_inputs_per_call: 5, ..RestConfig::default() });
    }

    #[test]
    fn the_connection_leash_has_documented_defaults_and_reads_from_the_file() {
        let d = ConnectionsConfig::default();
        assert_eq!(
            (d.max, d.first_request_timeout_ms, d.idle_timeout_ms, d.http2_keepalive_interval_ms),
            (4096, 10_000, 300_000, 30_000)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[connections]\nmax = 64\nidle_timeout_ms = 0\n").unwrap();
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!((c.connections.max, c.connections.idle_timeout_ms), (64, 0));
        assert_eq!(c.connections.first_request_timeout_ms, 10_000);
    }

    #[test]
    fn tokens_reload_every_ten_seconds_unless_set_and_may_carry_an_expiry() {
        assert_eq!(AuthConfig::default().token_reload_interval_ms, 10_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[auth]\ntoken_reload_interval_ms = 250\n[[tenants]]\nname = \"t\"\n[[tenants.tokens]]\nsha256 = \"x\"\n\
             scopes = [\"read\"]\nexpires_at = \"2027-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.auth.token_reload_interval_ms, 250);
        assert_eq!(c.tenants[0].tokens[0].expires_at.as_deref(), Some("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[admission]\nmax_concurent_requests = 7\n").unwrap();
        let err = Config::load(Some(&path), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("max_concurent_requests"), "{err}");
    }
}
