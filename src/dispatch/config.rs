//! `[dispatch]`: the dispatcher's section of the configuration file, owned here and
//! composed into `config::Config`, and its conversion into the `DispatchSettings` the
//! dispatcher runs with (floors applied, durations typed).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DispatchSettings;
use super::policy::RetryPolicy;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DispatchConfig {
    /// Run the dispatcher in this process (turn off for an accept-only replica).
    pub enabled: bool,
    /// Requests in progress at once across all replicas; the rest wait in the queue.
    pub max_in_progress_requests: u32,
    /// Messages of one request in flight at once.
    pub per_request_concurrency: usize,
    /// How long a claim stays with a replica without renewal; a dead replica's work is
    /// taken over after this.
    pub lease_ms: u64,
    /// Most requests claimed in one go.
    pub claim_batch: u32,
    /// How often the dispatcher looks for due work when nothing wakes it (changes made
    /// by other replicas, retries coming due).
    pub poll_interval_ms: u64,
    /// Longest a message is held by session gating before it fails SessionWaitExpired.
    pub session_wait_max_ms: u64,
    /// Longest one provider call may take before it counts as a transient failure.
    pub provider_timeout_ms: u64,
    /// On shutdown, how long sends and calls in flight may take to finish, counted from
    /// the signal; keep it shorter than the pod's `terminationGracePeriodSeconds`.
    pub drain_period_ms: u64,
    /// Delay after the 1st, 2nd, … transient failure; past the end: RetriesExhausted.
    pub retry_schedule_ms: Vec<u64>,
    /// ± this fraction of each retry delay, at random.
    pub retry_jitter: f64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            enabled: true,
            max_in_progress_requests: 200,
            per_request_concurrency: 5,
            lease_ms: 30_000,
            claim_batch: 50,
            poll_interval_ms: 1_000,
            session_wait_max_ms: 48 * 3_600_000,
            provider_timeout_ms: 15_000,
            drain_period_ms: 20_000,
            retry_schedule_ms: vec![1_000, 5_000, 30_000, 120_000, 600_000],
            retry_jitter: 0.2,
        }
    }
}

impl DispatchConfig {
    pub fn settings(&self) -> DispatchSettings {
        DispatchSettings {
            max_in_progress_requests: self.max_in_progress_requests.max(1),
            per_request_concurrency: self.per_request_concurrency.max(1),
            lease_ms: self.lease_ms.max(100) as i64,
            claim_batch: self.claim_batch.max(1),
            poll_interval: Duration::from_millis(self.poll_interval_ms.max(10)),
            session_wait_max_ms: self.session_wait_max_ms as i64,
            provider_timeout: Duration::from_millis(self.provider_timeout_ms.max(1)),
            drain_period: Duration::from_millis(self.drain_period_ms),
            retry: RetryPolicy { schedule_ms: self.retry_schedule_ms.clone(), jitter: self.retry_jitter },
        }
    }
}
