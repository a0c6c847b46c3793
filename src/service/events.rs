//! In-process signals: "there may be work" (wakes the dispatcher at once after an accept
//! or a session change) and "this request changed" (feeds status streams). The store
//! stays the truth: a missed signal only delays, since both sides also poll.

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};

use crate::domain::RecordId;

#[derive(Clone)]
pub struct Events {
    work: Arc<Notify>,
    changes: broadcast::Sender<RecordId>,
}

impl Default for Events {
    fn default() -> Self {
        Events { work: Arc::new(Notify::new()), changes: broadcast::channel(4096).0 }
    }
}

impl Events {
    pub fn work_available(&self) {
        self.work.notify_one();
    }

    pub async fn wait_for_work(&self) {
        self.work.notified().await;
    }

    pub fn request_changed(&self, id: &RecordId) {
        // No subscribers is fine.
        let _ = self.changes.send(id.clone());
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RecordId> {
        self.changes.subscribe()
    }
}
