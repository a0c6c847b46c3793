//! When a request may be claimed: its priority lane and its `send_at`. Pure rules, no
//! I/O — the claim (`store::sql::queue`) and the accept path (`service::send`) apply them.
//!
//! **Lanes.** Transactional requests (the default) are claimed before bulk ones, FIFO
//! within each lane. So that a bulk request's wait is bounded however much transactional
//! traffic arrives, bulk has a guaranteed share: while both lanes have ready requests, at
//! most `BULK_SHARE_EVERY - 1` transactional requests are claimed in a row, then one bulk
//! request. The streak is counted across claims and replicas (one stored row, updated under
//! the claim lock), so the share holds even when every claim takes a single slot. A
//! transactional request therefore waits, behind a bulk backlog of any size, only for the
//! transactional requests ahead of it plus at most one bulk request per
//! `BULK_SHARE_EVERY - 1` of them — in practice the next slot that frees.
//!
//! **Send later.** `send_at` may lie at most `SEND_AT_PAST_TOLERANCE_MS` in the past
//! (clock skew between caller and server; such a request is sent at once) and at most
//! `SEND_AT_MAX_AHEAD_MS` ahead (35 days, as Twilio's scheduling).

use super::violation::{ErrorKind, Violation};

/// One claimed slot in this many goes to bulk while both lanes wait.
pub const BULK_SHARE_EVERY: i64 = 5;
/// How far in the past a `send_at` may be (then it means "now").
pub const SEND_AT_PAST_TOLERANCE_MS: i64 = 60_000;
/// How far ahead a `send_at` may be.
pub const SEND_AT_MAX_AHEAD_MS: i64 = 35 * 24 * 3_600_000;

/// How a claim's free slots are shared between the lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSplit {
    pub transactional: usize,
    pub bulk: usize,
    /// The streak to store for the next claim.
    pub streak: i64,
}

/// Shares `room` slots between `transactional_ready` and `bulk_ready` requests (each
/// already capped at `room` by the caller's query), given the transactional `streak` left
/// by earlier claims.
pub fn split_room(room: usize, transactional_ready: usize, bulk_ready: usize, streak: i64) -> LaneSplit {
    let (mut t, mut b, mut streak) = (0usize, 0usize, streak.clamp(0, BULK_SHARE_EVERY - 1));
    for _ in 0..room {
        let t_left = t < transactional_ready;
        let b_left = b < bulk_ready;
        if b_left && (!t_left || streak >= BULK_SHARE_EVERY - 1) {
            b += 1;
            streak = 0;
        } else if t_left {
            t += 1;
            streak = (streak + 1).min(BULK_SHARE_EVERY - 1);
        } else {
            break;
        }
    }
    LaneSplit { transactional: t, bulk: b, streak }
}

/// Checks a requested send time against `now_ms`: `Ok(Some(due))` when it is later than
/// now, `Ok(None)` when it means "now" (absent, or past within the tolerance), and a
/// violation naming `sendAt` otherwise.
pub fn check_send_at(send_at_ms: Option<i64>, now_ms: i64) -> Result<Option<i64>, Violation> {
    let Some(at) = send_at_ms else { return Ok(None) };
    if at < now_ms - SEND_AT_PAST_TOLERANCE_MS {
        return Err(Violation::new(
            "sendAt",
            ErrorKind::InvalidInput,
            format!(
                "sendAt is {} s in the past; it may be at most {} s in the past (then the request is sent at once)",
                (now_ms - at) / 1000,
                SEND_AT_PAST_TOLERANCE_MS / 1000
            ),
        ));
    }
    if at > now_ms + SEND_AT_MAX_AHEAD_MS {
        return Err(Violation::new(
            "sendAt",
            ErrorKind::InvalidInput,
            format!(
                "sendAt is more than {} days ahead; schedule at most 35 days ahead",
                SEND_AT_MAX_AHEAD_MS / 86_400_000
            ),
        ));
    }
    Ok(Some(at).filter(|at| *at > now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `claims` single-slot claims with both lanes always ready; which lane each took.
    fn one_slot_claims(claims: usize) -> Vec<char> {
        let mut streak = 0;
        (0..claims)
            .map(|_| {
                let split = split_room(1, 1, 1, streak);
                streak = split.streak;
                if split.bulk == 1 { 'b' } else { 't' }
            })
            .collect()
    }

    #[test]
    fn transactional_requests_are_claimed_before_bulk_ones() {
        assert_eq!(split_room(3, 10, 10, 0), LaneSplit { transactional: 3, bulk: 0, streak: 3 });
        assert_eq!(split_room(3, 1, 10, 0), LaneSplit { transactional: 1, bulk: 2, streak: 0 });
    }

    #[test]
    fn bulk_gets_one_slot_in_every_five_while_both_lanes_wait_even_one_slot_at_a_time() {
        let lanes: String = one_slot_claims(15).into_iter().collect();
        assert_eq!(lanes, "ttttbttttbttttb");
        let split = split_room(50, 50, 50, 0);
        assert_eq!((split.transactional, split.bulk), (40, 10));
    }

    #[test]
    fn a_transactional_request_behind_a_bulk_backlog_takes_the_next_free_slot() {
        // Only bulk was claimed so far (streak 0): the next slot is transactional.
        assert_eq!(split_room(1, 1, 10_000, 0).transactional, 1);
        // At worst the share's bulk slot comes first, then the transactional one.
        assert_eq!(split_room(2, 1, 10_000, BULK_SHARE_EVERY - 1), LaneSplit { transactional: 1, bulk: 1, streak: 1 });
    }

    #[test]
    fn a_lane_alone_takes_every_slot_and_nothing_more_than_is_ready() {
        assert_eq!(split_room(5, 0, 3, 2), LaneSplit { transactional: 0, bulk: 3, streak: 0 });
        assert_eq!(split_room(5, 7, 0, 0).transactional, 5);
        assert_eq!(split_room(0, 7, 7, 0), LaneSplit { transactional: 0, bulk: 0, streak: 0 });
    }

    #[test]
    fn send_at_in_the_past_beyond_a_minute_or_beyond_35_days_is_refused_naming_the_field() {
        let now = 1_767_225_600_000;
        assert_eq!(check_send_at(None, now), Ok(None));
        assert_eq!(check_send_at(Some(now - 59_000), now), Ok(None));
        assert_eq!(check_send_at(Some(now + 1), now), Ok(Some(now + 1)));
        assert_eq!(check_send_at(Some(now + SEND_AT_MAX_AHEAD_MS), now), Ok(Some(now + SEND_AT_MAX_AHEAD_MS)));
        for bad in [now - 61_000, now + SEND_AT_MAX_AHEAD_MS + 1] {
            let v = check_send_at(Some(bad), now).unwrap_err();
            assert_eq!((v.field.as_str(), v.kind), ("sendAt", ErrorKind::InvalidInput));
        }
    }
}
