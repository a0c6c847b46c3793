//! Whether the database is up, as the store has last seen it. A failure that says the
//! database cannot be reached or cannot serve (`StoreError::Unavailable`) makes it
//! suspect, and the probe asks it at once on a fresh connection: one connection cut (a
//! killed backend, a network blip) is not an outage. If the probe fails, the database is
//! down: every store call fails at once with UNAVAILABLE instead of each waiting for a
//! pool connection that cannot come, `/readyz` answers 503, and the probe asks again
//! every `PROBE_EVERY` until the database answers, which marks it up. A database that
//! answers but slowly is busy, not down (`StoreError::Busy`): it is never suspected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{StoreError, StoreResult};

/// How often a down database is asked again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
    /// Wakes the probe when a call found the database unavailable.
    suspect: Notify,
}

impl Health {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// `Err(Unavailable)` at once while the database is known down.
    pub fn check(&self) -> StoreResult<()> {
        if self.is_down() { Err(StoreError::Unavailable(std::sync::Arc::new(sqlx::Error::PoolClosed))) } else { Ok(()) }
    }

    /// Notes what a store call came to: an unavailable database is probed at once.
    pub fn observe<T>(&self, result: StoreResult<T>) -> StoreResult<T> {
        if matches!(&result, Err(StoreError::Unavailable(_))) && !self.is_down() {
            self.suspect.notify_one();
        }
        result
    }

    /// What the probe found.
    pub fn set_down(&self, down: bool) {
        if self.down.swap(down, Ordering::AcqRel) != down {
            if down {
                tracing::warn!("the database does not answer; calls fail fast until it does");
            } else {
                tracing::info!("the database answers again");
            }
        }
    }

    /// Waits until a call found the database unavailable.
    pub async fn suspected(&self) {
        self.suspect.notified().await;
    }
}
