//! The span export queue: a `SpanProcessor` that hands each finished span to a bounded
//! queue with `try_send` and never waits — when the queue is full the span is dropped
//! and counted (`convmsg_trace_spans_dropped_total`). The SDK's own batch processor
//! keeps its drop count private, hence this one.
//!
//! Export runs on a thread of its own with a single-threaded runtime: it takes up to a
//! batch from the queue every interval (or as soon as a batch is waiting) and calls the
//! OTLP exporter with a timeout. A slow or dead collector therefore fills the queue and
//! costs dropped spans, never request latency, and flushing from synchronous code
//! (`force_flush`, `shutdown`) cannot deadlock the service's runtime.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{Notify, mpsc};

/// What the queue is sized and timed by.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub queue_size: usize,
    pub batch_size: usize,
    pub interval: Duration,
    pub export_timeout: Duration,
}

enum Control {
    /// Export everything queued, then answer.
    Flush(std_mpsc::Sender<OTelSdkResult>),
    /// Export everything queued, shut the exporter down, answer and stop.
    Shutdown(std_mpsc::Sender<OTelSdkResult>),
}

#[derive(Debug)]
pub struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    /// Wakes the export thread early when a full batch is waiting.
    batch_ready: Arc<Notify>,
    batch_size: usize,
    /// Spans refused because the queue was full (or export had stopped).
    dropped: Counter,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::Flush(_) => "Flush",
            Control::Shutdown(_) => "Shutdown",
        })
    }
}

impl QueueProcessor {
    /// Starts the export thread. `make_exporter` runs on that thread, inside its runtime
    /// (the tonic exporter needs one to build); its error is returned here.
    pub fn start<E, F>(settings: QueueSettings, dropped: Counter, make_exporter: F) -> anyhow::Result<QueueProcessor>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> anyhow::Result<E> + Send + 'static,
    {
        let queue_size = settings.queue_size.max(1);
        // A batch larger than the queue is never waiting in full: export then runs on
        // the interval only.
        let batch_size = settings.batch_size.max(1);
        let (spans, queue) = mpsc::channel(queue_size);
        let (control, control_rx) = mpsc::unbounded_channel();
        let batch_ready = Arc::new(Notify::new());
        let (built_tx, built_rx) = std_mpsc::channel::<anyhow::Result<()>>();
        let wake = batch_ready.clone();
        let settings = QueueSettings { batch_size, ..settings };
        std::thread::Builder::new().name("convmsg-span-export".into()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = built_tx.send(Err(e.into()));
                    return;
                }
            };
            let exporter = {
                let _entered = runtime.enter();
                make_exporter()
            };
            match exporter {
                Ok(exporter) => {
                    let _ = built_tx.send(Ok(()));
                    runtime.block_on(run_export_until_shutdown(exporter, queue, control_rx, wake, settings));
                }
                Err(e) => {
                    let _ = built_tx.send(Err(e));
                }
            }
        })?;
        built_rx.recv().map_err(|_| anyhow::anyhow!("the span export thread ended while starting"))??;
        Ok(QueueProcessor { spans, control, batch_ready, batch_size, dropped })
    }

    fn ask(&self, make: impl FnOnce(std_mpsc::Sender<OTelSdkResult>) -> Control, timeout: Duration) -> OTelSdkResult {
        let (reply, answer) = std_mpsc::channel();
        if self.control.send(make(reply)).is_err() {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(std_mpsc::RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.dropped.inc();
            return;
        }
        let queued = self.spans.max_capacity() - self.spans.capacity();
        if queued >= self.batch_size {
            self.batch_ready.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Control::Flush, Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }
}

async fn run_export_until_shutdown<E: SpanExporter>(
    exporter: E,
    mut queue: mpsc::Receiver<SpanData>,
    mut control: mpsc::UnboundedReceiver<Control>,
    batch_ready: Arc<Notify>,
    settings: QueueSettings,
) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = control.recv() => {
                let (reply, stop) = match command {
                    Some(Control::Flush(reply)) => (Some(reply), false),
                    Some(Control::Shutdown(reply)) => (Some(reply), true),
                    None => (None, true),
                };
                let mut result = export_queued(&exporter, &mut queue, &settings, usize::MAX).await;
                if stop {
                    queue.close();
                    // Spans that raced in before the close still go out.
                    let last = export_queued(&exporter, &mut queue, &settings, usize::MAX).await;
                    result = result.and(last).and(exporter.shutdown_with_timeout(settings.export_timeout));
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                if stop {
                    return;
                }
            }
            _ = tick.tick() => {
                let _ = export_queued(&exporter, &mut queue, &settings, 1).await;
            }
            _ = batch_ready.notified() => {
                let _ = export_queued(&exporter, &mut queue, &settings, 1).await;
            }
        }
    }
}

/// Exports up to `max_batches` batches of what is queued now; the first failure is
/// the result (later batches are still tried: a collector may recover).
async fn export_queued<E: SpanExporter>(
    exporter: &E,
    queue: &mut mpsc::Receiver<SpanData>,
    settings: &QueueSettings,
    max_batches: usize,
) -> OTelSdkResult {
    let mut result = Ok(());
    for _ in 0..max_batches {
        let mut batch = Vec::with_capacity(settings.batch_size);
        while batch.len() < settings.batch_size {
            match queue.try_recv() {
                Ok(span) => batch.push(span),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        let outcome = match tokio::time::timeout(settings.export_timeout, exporter.export(batch)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(OTelSdkError::Timeout(settings.export_timeout)),
        };
        if let Err(e) = outcome {
            // The SDK's internal logs are off; say it once per failed export at debug
            // level (an unreachable collector must not flood the service's own logs).
            tracing::debug!(error = %e, "span export failed");
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}
