//! The rules of Salesforce's replication resources (`sObject Get Updated`, `sObject Get
//! Deleted`, SOAP `getUpdated()`/`getDeleted()`) as convmsg applies them: seconds are
//! ignored (start and end are truncated to the minute); start must come before end;
//! updated records are kept for 30 days back, deleted ones for 15 (Salesforce's delete
//! log), and a start earlier than that is `INVALID_REPLICATION_DATE`; one answer holds at
//! most 600,000 ids (`EXCEEDED_ID_LIMIT`, choose a shorter window).
//!
//! `latestDateCovered` is the end, or — if the end is later — one minute before now,
//! floored to the minute: a write stamped just before now may still be committing, and a
//! client that starts its next window at `latestDateCovered` then misses nothing.
//! Pure arithmetic; the caller gives the time.

use super::violation::{ErrorKind, Violation};

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MS: i64 = 86_400_000;
/// How far back `updated` reaches.
pub const UPDATED_DAYS: i64 = 30;
/// How long deletions are remembered (the tombstones' keeping time).
pub const DELETED_DAYS: i64 = 15;
/// Most ids one answer holds.
pub const MAX_IDS: u32 = 600_000;
/// How long a write may take from its timestamp to its commit, at most, for
/// `latestDateCovered`.
pub const IN_FLIGHT_MS: i64 = MINUTE_MS;

/// Which resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Updated,
    Deleted,
}

impl Kind {
    /// How many days back the resource reaches.
    pub fn days(self) -> i64 {
        match self {
            Kind::Updated => UPDATED_DAYS,
            Kind::Deleted => DELETED_DAYS,
        }
    }
}

/// A checked window, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive.
    pub start_ms: i64,
    /// Exclusive.
    pub end_ms: i64,
    pub latest_covered_ms: i64,
    /// The earliest start accepted now (`earliestDateAvailable` for deletions).
    pub earliest_ms: i64,
}

fn floor_minute(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// Checks `[start, end)` of a `kind` call made at `now_ms`.
pub fn window(kind: Kind, start_ms: i64, end_ms: i64, now_ms: i64) -> Result<Window, Violation> {
    let (start, end) = (floor_minute(start_ms), floor_minute(end_ms));
    let refuse = |field: &str, message: String| Violation::new(field, ErrorKind::InvalidReplicationDate, message);
    if start >= end {
        return Err(refuse("end", "end must be at least one minute after start (seconds are ignored)".to_owned()));
    }
    let earliest = floor_minute(now_ms - kind.days() * DAY_MS);
    if start < earliest {
        return Err(refuse(
            "start",
            format!(
                "start must be within the last {} days (convmsg keeps no older {} records)",
                kind.days(),
                match kind {
                    Kind::Updated => "updated",
                    Kind::Deleted => "deleted",
                }
            ),
        ));
    }
    let latest = floor_minute(now_ms - IN_FLIGHT_MS).min(end);
    Ok(Window { start_ms: start, end_ms: end, latest_covered_ms: latest.max(start), earliest_ms: earliest })
}

/// The refusal when a window holds more than `MAX_IDS` ids.
pub fn too_many_ids() -> Violation {
    Violation::new(
        "end",
        ErrorKind::ExceededIdLimit,
        format!("more than {MAX_IDS} ids are in this window; choose start and end dates that are closer together"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000 + 30 * MINUTE_MS + 42_000; // 2026-01-01T00:30:42Z

    #[test]
    fn seconds_are_ignored_and_the_latest_covered_date_stays_a_minute_behind_now() {
        let w = window(Kind::Updated, NOW - 3_600_000 + 15_000, NOW + 3_600_000, NOW).unwrap();
        assert_eq!(w.start_ms % MINUTE_MS, 0);
        assert_eq!(w.start_ms, floor_minute(NOW - 3_600_000));
        assert_eq!(w.latest_covered_ms, floor_minute(NOW) - MINUTE_MS);
        let past = window(Kind::Updated, NOW - 7_200_000, NOW - 3_600_000, NOW).unwrap();
        assert_eq!(past.latest_covered_ms, past.end_ms);
    }

    #[test]
    fn start_must_come_a_minute_before_end() {
        for (start, end) in [(NOW, NOW), (NOW, NOW - MINUTE_MS), (floor_minute(NOW), floor_minute(NOW) + 59_000)] {
            let e = window(Kind::Updated, start, end, NOW).unwrap_err();
            assert_eq!((e.kind, e.field.as_str()), (ErrorKind::InvalidReplicationDate, "end"));
        }
    }

    #[test]
    fn updates_reach_30_days_back_and_deletions_15() {
        assert!(window(Kind::Updated, NOW - 30 * DAY_MS, NOW, NOW).is_ok());
        let e = window(Kind::Updated, NOW - 31 * DAY_MS, NOW, NOW).unwrap_err();
        assert_eq!((e.kind, e.field.as_str()), (ErrorKind::InvalidReplicationDate, "start"));
        let w = window(Kind::Deleted, NOW - 15 * DAY_MS, NOW, NOW).unwrap();
        assert_eq!(w.earliest_ms, floor_minute(NOW - 15 * DAY_MS));
        assert!(window(Kind::Deleted, NOW - 16 * DAY_MS, NOW, NOW).is_err());
        assert_eq!(too_many_ids().kind, ErrorKind::ExceededIdLimit);
    }
}
