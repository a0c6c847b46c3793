//! Time as the service sees it. Everything that records, compares or waits for times
//! takes a `Clock`, so tests drive retries, leases, rate limits and session waits by
//! moving a `ManualClock` instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Resolves once `now_ms() >= deadline_ms`.
    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()>;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        since.as_millis() as i64
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let wait = deadline_ms.saturating_sub(self.now_ms()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug)]
struct Manual {
    now: AtomicI64,
    advanced: Notify,
    /// `sleep_until` futures waiting now, so a test can move time only while the code
    /// under test waits on it (not while it is busy with the database).
    sleepers: AtomicUsize,
}

/// Counts one waiting `sleep_until` for as long as it lives.
struct Sleeping(Arc<Manual>);

impl Drop for Sleeping {
    fn drop(&mut self) {
        self.0.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ManualClock {
    pub fn new(start_ms: i64) -> Self {
        ManualClock(Arc::new(Manual {
            now: AtomicI64::new(start_ms),
            advanced: Notify::new(),
            sleepers: AtomicUsize::new(0),
        }))
    }

    /// How many `sleep_until` futures are waiting for the clock now.
    pub fn sleepers(&self) -> usize {
        self.0.sleepers.load(Ordering::SeqCst)
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.now.fetch_add(ms, Ordering::SeqCst);
        self.0.advanced.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, deadline_ms: i64) -> BoxFuture<'static, ()> {
        let inner = self.0.clone();
        Box::pin(async move {
            if inner.now.load(Ordering::SeqCst) >= deadline_ms {
                return;
            }
            inner.sleepers.fetch_add(1, Ordering::SeqCst);
            let _sleeping = Sleeping(inner.clone());
            loop {
                let advanced = inner.advanced.notified();
                tokio::pin!(advanced);
                advanced.as_mut().enable();
                if inner.now.load(Ordering::SeqCst) >= deadline_ms {
                    return;
                }
                advanced.await;
            }
        })
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_is_advanced_past_its_deadline() {
        let clock = ManualClock::new(0);
        let sleeper = tokio::spawn(clock.sleep_until(100));
        clock.advance_ms(50);
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance_ms(50);
        sleeper.await.unwrap();
    }
}
