//! Retention: a background task that deletes completed requests (with their messages
//! and idempotency keys) once they are older than `[retention] completed_max_age_ms`.
//! Age is measured on the injected clock from the request's completion time. It never
//! touches pending or in-progress requests, and it deletes in small batches so that no
//! transaction holds many rows for long. Every replica may run it; on PostgreSQL the
//! batches skip rows another replica has locked.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::RetentionConfig;
use crate::domain::replication::{DAY_MS, DELETED_DAYS};
use crate::store::{Store, StoreResult};

/// Deletes every completed request older than `max_age_ms` at `now_ms`, `batch` at a
/// time, then dates the deletions' tombstones `now_ms` and forgets tombstones older than
/// 15 days (`sObject Get Deleted`). Returns how many requests were deleted.
pub async fn purge_expired(store: &dyn Store, now_ms: i64, max_age_ms: i64, batch: u32) -> StoreResult<u64> {
    let before = now_ms.saturating_sub(max_age_ms);
    let batch = batch.max(1);
    let mut total = 0;
    loop {
        let purged = store.purge_completed(before, batch).await?;
        total += purged;
        if purged < u64::from(batch) {
            break;
        }
    }
    store.record_tombstones(now_ms, now_ms.saturating_sub(DELETED_DAYS * DAY_MS)).await?;
    Ok(total)
}

/// Purges every `purge_interval_ms` until `shutdown`; does nothing when the maximum age
/// is 0 (keep forever). A failed purge is logged and tried again next time.
pub async fn run_retention_until_stopped(
    store: Arc<dyn Store>,
    clock: SharedClock,
    config: RetentionConfig,
    shutdown: CancellationToken,
) {
    if config.completed_max_age_ms == 0 {
        return;
    }
    let max_age = i64::try_from(config.completed_max_age_ms).unwrap_or(i64::MAX);
    let every = Duration::from_millis(config.purge_interval_ms.max(10));
    loop {
        match purge_expired(store.as_ref(), clock.now_ms(), max_age, config.purge_batch).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged completed requests past retention"),
            Err(e) => tracing::warn!(error = %crate::error::error_chain(&e), "purging completed requests failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
