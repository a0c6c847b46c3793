//! Pure delivery policies: the retry schedule with jitter and `Retry-After` (a channel's
//! send slots are `domain::rates`). Time comes in as milliseconds; nothing here sleeps.

use std::time::Duration;

/// The longest `Retry-After` honoured: a provider asking for more is retried after this.
pub const MAX_RETRY_AFTER_MS: u64 = 3_600_000;

/// When to try a message again after a transient failure.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt; past the end, retries are exhausted.
    pub schedule_ms: Vec<u64>,
    /// ± this fraction of each delay, at random, so retries of many messages spread out.
    pub jitter: f64,
}

impl RetryPolicy {
    /// The delay before the next attempt after `attempts` attempts, or `None` when they
    /// are exhausted. `unit` is a random number in [0, 1). A provider's `Retry-After`
    /// is honoured when it asks for longer than the schedule.
    pub fn next_delay_ms(&self, attempts: u32, retry_after: Option<Duration>, unit: f64) -> Option<u64> {
        let base = *self.schedule_ms.get(attempts.checked_sub(1)? as usize)?;
        let spread = 1.0 + self.jitter.clamp(0.0, 1.0) * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = (base as f64 * spread).round() as u64;
        let asked = retry_after.map(|d| (d.as_millis() as u64).min(MAX_RETRY_AFTER_MS)).unwrap_or(0);
        Some(jittered.max(asked))
    }

    /// Attempts a message gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.schedule_ms.len() as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { schedule_ms: vec![1_000, 5_000, 30_000], jitter: 0.2 }
    }

    #[test]
    fn delays_follow_the_schedule_within_the_jitter_and_then_run_out() {
        let p = policy();
        assert_eq!(p.next_delay_ms(1, None, 0.5), Some(1_000));
        assert_eq!(p.next_delay_ms(1, None, 0.0), Some(800));
        assert_eq!(p.next_delay_ms(2, None, 0.999_999), Some(6_000));
        assert_eq!(p.next_delay_ms(3, None, 0.5), Some(30_000));
        assert_eq!(p.next_delay_ms(4, None, 0.5), None);
        assert_eq!(p.max_attempts(), 4);
    }

    #[test]
    fn a_longer_retry_after_wins_and_a_shorter_one_does_not() {
        let p = policy();
        assert_eq!(p.next_delay_ms(1, Some(Duration::from_secs(10)), 0.5), Some(10_000));
        assert_eq!(p.next_delay_ms(2, Some(Duration::from_secs(1)), 0.5), Some(5_000));
        assert_eq!(p.next_delay_ms(1, Some(Duration::from_secs(86_400)), 0.5), Some(MAX_RETRY_AFTER_MS));
    }
}
