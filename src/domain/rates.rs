//! A channel's rate limit as a pure rule: which send slots a channel grants, and a pause
//! a provider asked for. Shared by the in-process limiter (SQLite: one process) and the
//! row every replica updates (PostgreSQL), so both hold the same limit. No I/O.

/// A channel's send slots, handed out by the generic cell rate algorithm (GCRA): a
/// burst of up to one second's worth of messages (at least one), then one every
/// `1000 / rate` ms. Its whole state is one number, the theoretical arrival time `tat`,
/// so the same rule runs in process (SQLite) and on a row shared by every replica
/// (PostgreSQL: `store::sql::rates`). Over any interval of `W` seconds at most
/// `rate · W + max(rate, 1)` slots start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotGrant {
    /// When the first granted slot is (ms; may be before now: send at once).
    pub first_ms: f64,
    /// Between two granted slots.
    pub interval_ms: f64,
    /// How many of those asked for got a slot within the horizon.
    pub granted: u32,
    /// When the others should ask again (ms), once the slots before them are near.
    pub retry_at_ms: i64,
    /// The state to keep for the next grant.
    pub tat: f64,
}

impl SlotGrant {
    /// When the `i`-th granted slot may send, not before `now_ms`.
    pub fn send_at(&self, i: u32, now_ms: i64) -> i64 {
        ((self.first_ms + f64::from(i) * self.interval_ms).ceil() as i64).max(now_ms)
    }
}

/// Grants up to `want` slots at `rate` per second from state `tat` (`None`: a channel
/// never used), only slots within `horizon_ms` of `now_ms` — the others wait in the
/// queue, not in a sleeping task — and returns the new state with them.
pub fn grant_slots(tat: Option<f64>, now_ms: i64, rate: f64, want: u32, horizon_ms: i64) -> SlotGrant {
    let interval = 1000.0 / rate;
    let tolerance = (rate.max(1.0) - 1.0) * interval;
    let now = now_ms as f64;
    let base = tat.unwrap_or(f64::MIN).max(now - tolerance);
    let room = now + horizon_ms as f64 - base;
    let fits = if room < 0.0 { 0 } else { (room / interval).floor() as u64 + 1 };
    let granted = u32::try_from(fits.min(u64::from(want))).unwrap_or(want);
    let next = base + f64::from(granted) * interval;
    let retry_at_ms = ((next - horizon_ms as f64).ceil() as i64).max(now_ms + 1);
    SlotGrant {
        first_ms: base,
        interval_ms: interval,
        granted,
        retry_at_ms,
        tat: if granted > 0 { next } else { base },
    }
}

/// A provider asked the channel to wait until `until_ms` (429 + `Retry-After`): no slot
/// starts before then.
pub fn pause_slots(tat: Option<f64>, until_ms: i64) -> f64 {
    tat.unwrap_or(f64::MIN).max(until_ms as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends at `now` one at a time, as the old per-message bucket did.
    fn one_by_one(rate: f64, now: i64, n: usize, tat: &mut Option<f64>) -> Vec<i64> {
        (0..n)
            .map(|_| {
                let g = grant_slots(*tat, now, rate, 1, 60_000);
                *tat = Some(g.tat);
                g.send_at(0, now)
            })
            .collect()
    }

    #[test]
    fn slots_allow_a_seconds_burst_then_space_sends_at_the_rate() {
        let mut tat = None;
        assert_eq!(one_by_one(2.0, 0, 4, &mut tat), [0, 0, 500, 1_000]);
        // After a quiet while the burst is back, and no more than it.
        let mut tat = None;
        one_by_one(2.0, 0, 2, &mut tat);
        assert_eq!(one_by_one(2.0, 1_000, 3, &mut tat), [1_000, 1_000, 1_500]);
        // Asked for all at once: the same slots.
        let g = grant_slots(None, 0, 2.0, 4, 60_000);
        assert_eq!((0..4).map(|i| g.send_at(i, 0)).collect::<Vec<_>>(), [0, 0, 500, 1_000]);
    }

    #[test]
    fn a_slow_rate_below_one_per_second_still_sends_the_first_at_once() {
        let mut tat = None;
        assert_eq!(one_by_one(0.5, 0, 2, &mut tat), [0, 2_000]);
    }

    #[test]
    fn only_slots_within_the_horizon_are_granted_and_the_rest_ask_again_when_theirs_are_near() {
        let g = grant_slots(None, 0, 10.0, 100, 1_000);
        // A burst of ten (at -900 … 0 ms), then ten more up to 1 s ahead.
        assert_eq!(g.granted, 20);
        assert_eq!(g.send_at(19, 0), 1_000);
        assert_eq!(g.retry_at_ms, 100);
        let later = grant_slots(Some(g.tat), 100, 10.0, 100, 1_000);
        assert_eq!((later.granted, later.send_at(0, 100)), (1, 1_100));
        // Nothing near: nothing granted, the state unchanged.
        let none = grant_slots(Some(50_000.0), 0, 10.0, 5, 1_000);
        assert_eq!((none.granted, none.tat, none.retry_at_ms), (0, 50_000.0, 49_000));
    }

    #[test]
    fn over_any_window_no_more_than_the_rate_plus_one_burst_starts() {
        let (rate, mut tat, mut starts) = (7.0, None, Vec::new());
        for now in (0..10_000).step_by(37) {
            let g = grant_slots(tat, now, rate, 3, 500);
            tat = Some(g.tat);
            starts.extend((0..g.granted).map(|i| g.send_at(i, now)));
        }
        starts.sort_unstable();
        for (i, first) in starts.iter().enumerate() {
            let within = starts[i..].iter().take_while(|t| **t < first + 2_000).count();
            assert!(within as f64 <= rate * 2.0 + rate, "{within} starts in 2 s from {first}");
        }
    }

    #[test]
    fn a_pause_holds_every_slot_until_it_ends() {
        let paused = pause_slots(None, 5_000);
        let g = grant_slots(Some(paused), 0, 100.0, 3, 10_000);
        assert_eq!(g.send_at(0, 0), 5_000);
        assert_eq!(pause_slots(Some(9_000.0), 5_000), 9_000.0);
    }
}
