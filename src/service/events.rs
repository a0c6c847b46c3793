//! In-process signals: "there may be work" (wakes the dispatcher at once after an accept
//! or a session change) and "this request changed" (feeds status streams, and wakes the
//! status-event sender). The store
//! stays the truth: a missed signal only delays, since both sides also poll.

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};

use crate::domain::RecordId;

#[derive(Clone)]
pub struct Events {
    work: Arc<Notify>,
    changes: broadcast::Sender<RecordId>,
    /// "A change may have enqueued status events": wakes the event sender.
    outbox: Arc<Notify>,
}

impl Default for Events {
    fn default() -> Self {
        Events { work: Arc::new(Notify::new()), changes: broadcast::channel(4096).0, outbox: Arc::new(Notify::new()) }
    }
}

impl Events {
    pub fn work_available(&self) {
        self.work.notify_one();
    }

    pub async fn wait_for_work(&self) {
        self.work.notified().await;
    }

    /// Tells the request's watchers (streams). Changes that queue status events say so
    /// apart (`events_enqueued`): most changes queue none, and waking the event sender
    /// for each would have it read the outbox for every message sent.
    pub fn request_changed(&self, id: &RecordId) {
        // No subscribers is fine.
        let _ = self.changes.send(id.clone());
    }

    /// Status events may have been queued (a message failed, a request completed or was
    /// cancelled, a replay): wakes the sender.
    pub fn events_enqueued(&self) {
        self.outbox.notify_one();
    }

    /// Waits until a change may have enqueued status events.
    pub async fn wait_for_events(&self) {
        self.outbox.notified().await;
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RecordId> {
        self.changes.subscribe()
    }
}
