//! The `log` provider, the embedded default: each message becomes one JSON line on
//! standard output or appended to a file, so a fresh `convmsg serve` "delivers" with
//! nothing else configured. It must not write the recipient in full (only its last four
//! characters) nor the message text unless `include_body` is set, and lines must never
//! interleave: every write goes whole through one lock.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::config::LogProviderConfig;
use super::{Delivered, OutboundMessage, Provider, ProviderError, ProviderName};

/// Where the lines go.
enum Sink {
    Stdout,
    File { path: String, file: File },
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            // One `write_all` under stdout's own lock: the line cannot interleave with
            // other stdout writers (the tracing subscriber) either.
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Sink::File { file, .. } => {
                file.write_all(line)?;
                file.flush()
            }
        }
    }

    fn describe(&self) -> &str {
        match self {
            Sink::Stdout => "standard output",
            Sink::File { path, .. } => path,
        }
    }
}

pub struct LogProvider {
    /// Serialises writes: one line at a time, whole. A std mutex, held only inside
    /// `spawn_blocking`, so file I/O never blocks a runtime worker.
    sink: Arc<Mutex<Sink>>,
    /// Copy of `providers.log.include_body`.
    include_body: bool,
}

impl std::fmt::Debug for LogProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogProvider").field("include_body", &self.include_body).finish_non_exhaustive()
    }
}

/// One line. Field order is the output order.
#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    message_identifier: &'a str,
    request_id: &'a str,
    tenant: &'a str,
    channel: &'a str,
    recipient: String,
    definition: &'a str,
    text_length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    template: Option<&'a str>,
}

impl LogProvider {
    /// Opens the file (append, created if missing) now, so a path that can never be
    /// written fails at start rather than on every message.
    pub fn from_config(config: &LogProviderConfig) -> anyhow::Result<LogProvider> {
        let sink = match config.path.as_deref().map(str::trim) {
            None | Some("") => Sink::Stdout,
            Some(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| {
                    anyhow::anyhow!("providers.log.path = {path:?} cannot be opened for appending: {e}")
                })?;
                Sink::File { path: path.to_string(), file }
            }
        };
        Ok(LogProvider { sink: Arc::new(Mutex::new(sink)), include_body: config.include_body })
    }

    fn render(&self, message: &OutboundMessage) -> Result<Vec<u8>, ProviderError> {
        let line = Line {
            timestamp: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            message_identifier: &message.message_identifier,
            request_id: &message.request_id,
            tenant: &message.tenant,
            channel: &message.channel_developer_name,
            recipient: mask_recipient(&message.recipient),
            definition: &message.definition_api_name,
            text_length: message.text.chars().count(),
            text: self.include_body.then_some(message.text.as_str()),
            template: message.template.as_ref().map(|t| t.name.as_str()),
        };
        let mut bytes = serde_json::to_vec(&line)
            .map_err(|e| ProviderError::transient(format!("log: cannot encode the line: {e}"), None))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[async_trait]
impl Provider for LogProvider {
    fn name(&self) -> ProviderName {
        ProviderName::Log
    }

    async fn send(&self, message: &OutboundMessage) -> Result<Delivered, ProviderError> {
        let line = self.render(message)?;
        let sink = Arc::clone(&self.sink);
        let written = tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-built value behind (a
            // failed write is just a failed write), so a poisoned lock is still usable.
            let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            sink.write_line(&line).map_err(|e| format!("cannot write to {}: {e}", sink.describe()))
        })
        .await
        .map_err(|e| ProviderError::transient(format!("log: the write task failed: {e}"), None))?;
        written.map_err(|detail| ProviderError::transient(format!("log: {detail}"), None))?;
        Ok(Delivered { provider_message_id: Some(format!("log-{}", message.message_identifier)) })
    }
}

/// The recipient with all but its last four characters replaced by `*`; one of four
/// characters or fewer is masked whole (keeping it would show all of it).
pub fn mask_recipient(recipient: &str) -> String {
    let count = recipient.chars().count();
    if count <= 4 {
        return "*".repeat(count);
    }
    let hidden = count - 4;
    recipient.chars().enumerate().map(|(i, c)| if i < hidden { '*' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_keeps_only_its_last_four_characters() {
        assert_eq!(mask_recipient("+15550123"), "*****0123");
        assert_eq!(mask_recipient("ab€defg"), "***defg");
        assert_eq!(mask_recipient("1234"), "****");
        assert_eq!(mask_recipient(""), "");
    }

    #[test]
    fn a_log_path_that_cannot_be_opened_fails_at_start_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("out.jsonl");
        let config = LogProviderConfig { path: Some(path.display().to_string()), include_body: false };
        let err = LogProvider::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("providers.log.path"), "{err}");
    }
}
