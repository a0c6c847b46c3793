//! The `[log]` and `[telemetry]` sections of the configuration, owned here and composed
//! by `crate::config`. Settings only: nothing here opens a file or a socket.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `tracing` filter directives, e.g. `info,convmsg=debug`. `RUST_LOG` wins if set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Json, filter: "info".into() }
    }
}

/// How spans reach an OpenTelemetry collector. The standard `OTEL_EXPORTER_OTLP_*`
/// variables win over these settings (see `docs/observability.md`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://collector:4317` for gRPC, `…:4318` for
    /// HTTP, where `/v1/traces` is appended). Unset (and no `OTEL_EXPORTER_OTLP_*ENDPOINT`):
    /// no export.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub otlp_protocol: OtlpProtocol,
    /// Finished spans waiting for export; beyond this they are dropped and counted
    /// (`convmsg_trace_spans_dropped_total`), never waited for.
    pub export_queue_size: usize,
    /// Most spans in one export call.
    pub export_batch_size: usize,
    /// How often the queue is exported when it holds less than a batch.
    pub export_interval_ms: u64,
    /// Longest one export call may take.
    pub export_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Grpc,
            export_queue_size: 2048,
            export_batch_size: 512,
            export_interval_ms: 1_000,
            export_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}
