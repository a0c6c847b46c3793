//! Logging: `tracing` to stdout as JSON (default) or human-readable text. `RUST_LOG`
//! overrides the configured filter. Secrets, tokens and message bodies are never logged.

use std::io::Write;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber; a second call (tests) is a no-op.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// A caller's W3C `traceparent` value, kept with a send request for the dispatcher;
/// anything that does not look like one (four dash-separated parts, at most 128
/// characters) is dropped rather than stored.
pub fn traceparent(value: Option<&str>) -> Option<String> {
    let value = value?;
    (value.len() <= 128 && value.split('-').count() == 4).then(|| value.to_owned())
}

/// Flushes what telemetry has buffered, last thing before the process exits: the log
/// lines on standard output (an exporter, once there is one, is shut down here too).
pub fn flush() {
    let _ = std::io::stdout().lock().flush();
}
