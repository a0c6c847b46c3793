//! Pure delivery policies: the retry schedule with jitter and `Retry-After`, and a
//! token bucket per channel. Time comes in as milliseconds; nothing here sleeps.

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

/// A token bucket that hands out send times: up to one second's worth of messages at
/// once, then `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    tokens: f64,
    last_ms: i64,
}

impl TokenBucket {
    pub fn new(rate_per_sec: f64, now_ms: i64) -> Self {
        TokenBucket { rate_per_sec, tokens: Self::burst(rate_per_sec), last_ms: now_ms }
    }

    fn burst(rate: f64) -> f64 {
        rate.max(1.0)
    }

    pub fn rate(&self) -> f64 {
        self.rate_per_sec
    }

    /// Reserves one send and returns when it may happen (`now_ms` or later).
    pub fn reserve(&mut self, now_ms: i64) -> i64 {
        let elapsed = (now_ms - self.last_ms).max(0) as f64;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec / 1000.0).min(Self::burst(self.rate_per_sec));
        self.last_ms = now_ms.max(self.last_ms);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 { now_ms } else { now_ms + (-self.tokens * 1000.0 / self.rate_per_sec).ceil() as i64 }
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

    #[test]
    fn a_bucket_allows_a_seconds_burst_then_spaces_sends_at_the_rate() {
        let mut b = TokenBucket::new(2.0, 0);
        assert_eq!(b.reserve(0), 0);
        assert_eq!(b.reserve(0), 0);
        assert_eq!(b.reserve(0), 500);
        assert_eq!(b.reserve(0), 1_000);
        // After a quiet second the bucket has refilled by two.
        let mut b = TokenBucket::new(2.0, 0);
        b.reserve(0);
        b.reserve(0);
        assert_eq!(b.reserve(1_000), 1_000);
        assert_eq!(b.reserve(1_000), 1_000);
        assert_eq!(b.reserve(1_000), 1_500);
    }

    #[test]
    fn a_slow_rate_below_one_per_second_still_sends_the_first_at_once() {
        let mut b = TokenBucket::new(0.5, 0);
        assert_eq!(b.reserve(0), 0);
        assert_eq!(b.reserve(0), 2_000);
    }
}
