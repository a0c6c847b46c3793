//! SOQL date literals (`TODAY`, `LAST_N_DAYS:7`, `THIS_QUARTER`, …) as ranges of
//! instants, evaluated in **UTC** at a given moment, with weeks starting on Sunday (the
//! `en_US` locale's) and the fiscal year equal to the calendar year (an org's default).
//! Each literal is a half-open range `[start, end)` of Unix milliseconds; SOQL's `=`
//! means "inside", `<` "before start", `>` "at or after end". Pure arithmetic on
//! calendar dates; no clock is read here.

use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime};

/// The calendar unit a literal counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

/// Which periods, relative to the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The current period (`TODAY`, `THIS_MONTH`).
    This,
    /// The period before it (`YESTERDAY`, `LAST_MONTH`).
    Previous,
    /// The period after it (`TOMORROW`, `NEXT_MONTH`).
    Following,
    /// `LAST_N_…:n`: the n periods before the current one — and, for days, today as well
    /// (`LAST_N_DAYS:1` is yesterday and today, as Salesforce documents).
    LastN(u32),
    /// `NEXT_N_…:n`: the n periods after the current one — and, for days, today as well
    /// (`NEXT_N_DAYS:1` is today and tomorrow).
    NextN(u32),
    /// `N_…_AGO:n`: the one period n before the current one.
    Ago(u32),
    /// `NEXT_90_DAYS`: the 90 days after today (today excluded).
    FollowingN(u32),
}

/// A date literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateLiteral {
    pub unit: Unit,
    pub span: Span,
}

/// The largest `n` accepted (about 270 years of days), so that no range overflows.
pub const MAX_N: u32 = 100_000;

/// Literals without an argument, by name.
const PLAIN: [(&str, Unit, Span); 20] = [
    ("YESTERDAY", Unit::Day, Span::Previous),
    ("TODAY", Unit::Day, Span::This),
    ("TOMORROW", Unit::Day, Span::Following),
    ("LAST_WEEK", Unit::Week, Span::Previous),
    ("THIS_WEEK", Unit::Week, Span::This),
    ("NEXT_WEEK", Unit::Week, Span::Following),
    ("LAST_MONTH", Unit::Month, Span::Previous),
    ("THIS_MONTH", Unit::Month, Span::This),
    ("NEXT_MONTH", Unit::Month, Span::Following),
    ("LAST_90_DAYS", Unit::Day, Span::LastN(90)),
    ("NEXT_90_DAYS", Unit::Day, Span::FollowingN(90)),
    ("LAST_QUARTER", Unit::Quarter, Span::Previous),
    ("THIS_QUARTER", Unit::Quarter, Span::This),
    ("NEXT_QUARTER", Unit::Quarter, Span::Following),
    ("LAST_YEAR", Unit::Year, Span::Previous),
    ("THIS_YEAR", Unit::Year, Span::This),
    ("NEXT_YEAR", Unit::Year, Span::Following),
    ("LAST_FISCAL_YEAR", Unit::Year, Span::Previous),
    ("THIS_FISCAL_YEAR", Unit::Year, Span::This),
    ("NEXT_FISCAL_YEAR", Unit::Year, Span::Following),
];

/// How a literal that takes `:n` makes its span from `n`.
type MakeSpan = fn(u32) -> Span;

/// Literals that take `:n`, by name.
const WITH_N: [(&str, Unit, MakeSpan); 21] = [
    ("LAST_N_DAYS", Unit::Day, Span::LastN),
    ("NEXT_N_DAYS", Unit::Day, Span::NextN),
    ("N_DAYS_AGO", Unit::Day, Span::Ago),
    ("LAST_N_WEEKS", Unit::Week, Span::LastN),
    ("NEXT_N_WEEKS", Unit::Week, Span::NextN),
    ("N_WEEKS_AGO", Unit::Week, Span::Ago),
    ("LAST_N_MONTHS", Unit::Month, Span::LastN),
    ("NEXT_N_MONTHS", Unit::Month, Span::NextN),
    ("N_MONTHS_AGO", Unit::Month, Span::Ago),
    ("LAST_N_QUARTERS", Unit::Quarter, Span::LastN),
    ("NEXT_N_QUARTERS", Unit::Quarter, Span::NextN),
    ("N_QUARTERS_AGO", Unit::Quarter, Span::Ago),
    ("LAST_N_YEARS", Unit::Year, Span::LastN),
    ("NEXT_N_YEARS", Unit::Year, Span::NextN),
    ("N_YEARS_AGO", Unit::Year, Span::Ago),
    ("LAST_N_FISCAL_QUARTERS", Unit::Quarter, Span::LastN),
    ("NEXT_N_FISCAL_QUARTERS", Unit::Quarter, Span::NextN),
    ("N_FISCAL_QUARTERS_AGO", Unit::Quarter, Span::Ago),
    ("LAST_N_FISCAL_YEARS", Unit::Year, Span::LastN),
    ("NEXT_N_FISCAL_YEARS", Unit::Year, Span::NextN),
    ("N_FISCAL_YEARS_AGO", Unit::Year, Span::Ago),
];

/// The fiscal quarters without an argument (the fiscal year is the calendar year).
const FISCAL_QUARTERS: [(&str, Span); 3] = [
    ("LAST_FISCAL_QUARTER", Span::Previous),
    ("THIS_FISCAL_QUARTER", Span::This),
    ("NEXT_FISCAL_QUARTER", Span::Following),
];

/// What a name is as a date literal.
#[derive(Debug, Clone, Copy)]
pub enum Lookup {
    /// A complete literal.
    Plain(DateLiteral),
    /// A literal that needs `:n`.
    NeedsN(Unit, MakeSpan),
    NotALiteral,
}

/// Looks a name up, case-insensitively.
pub fn lookup(name: &str) -> Lookup {
    let upper = name.to_ascii_uppercase();
    if let Some((_, unit, span)) = PLAIN.iter().find(|(n, ..)| *n == upper) {
        return Lookup::Plain(DateLiteral { unit: *unit, span: *span });
    }
    if let Some((_, span)) = FISCAL_QUARTERS.iter().find(|(n, _)| *n == upper) {
        return Lookup::Plain(DateLiteral { unit: Unit::Quarter, span: *span });
    }
    match WITH_N.iter().find(|(n, ..)| *n == upper) {
        Some((_, unit, make)) => Lookup::NeedsN(*unit, *make),
        None => Lookup::NotALiteral,
    }
}

impl DateLiteral {
    /// `[start, end)` in Unix milliseconds for a query run at `now_ms`.
    pub fn range(self, now_ms: i64) -> (i64, i64) {
        let today = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .date();
        let current = period_start(today, self.unit);
        let shift = |n: i64| shift_periods(current, self.unit, n);
        let (start, end) = match self.span {
            Span::This => (current, shift(1)),
            Span::Previous => (shift(-1), current),
            Span::Following => (shift(1), shift(2)),
            Span::LastN(n) if self.unit == Unit::Day => (shift(-i64::from(n)), shift(1)),
            Span::LastN(n) => (shift(-i64::from(n)), current),
            Span::NextN(n) if self.unit == Unit::Day => (current, shift(i64::from(n) + 1)),
            Span::NextN(n) => (shift(1), shift(i64::from(n) + 1)),
            Span::Ago(n) => (shift(-i64::from(n)), shift(1 - i64::from(n))),
            Span::FollowingN(n) => (shift(1), shift(i64::from(n) + 1)),
        };
        (midnight_ms(start), midnight_ms(end))
    }
}

/// The first day of the period holding `day`.
fn period_start(day: Date, unit: Unit) -> Date {
    match unit {
        Unit::Day => day,
        Unit::Week => day - Duration::days(i64::from(day.weekday().number_days_from_sunday())),
        Unit::Month => first_of(day.year(), day.month() as u8),
        Unit::Quarter => first_of(day.year(), (day.month() as u8 - 1) / 3 * 3 + 1),
        Unit::Year => first_of(day.year(), 1),
    }
}

/// `start` moved by `n` periods (a period start stays one).
fn shift_periods(start: Date, unit: Unit, n: i64) -> Date {
    match unit {
        Unit::Day => start + Duration::days(n),
        Unit::Week => start + Duration::weeks(n),
        Unit::Month => add_months(start, n),
        Unit::Quarter => add_months(start, n * 3),
        Unit::Year => add_months(start, n * 12),
    }
}

/// The first of the month `n` months after the month of `start`.
fn add_months(start: Date, n: i64) -> Date {
    let index = i64::from(start.year()) * 12 + i64::from(start.month() as u8 - 1) + n;
    let year = i32::try_from(index.div_euclid(12)).unwrap_or(start.year());
    first_of(year, (index.rem_euclid(12) + 1) as u8)
}

fn first_of(year: i32, month: u8) -> Date {
    let month = Month::try_from(month).unwrap_or(Month::January);
    Date::from_calendar_date(year.clamp(-9999, 9999), month, 1).unwrap_or(Date::MIN)
}

/// An ISO 8601 date-time with seconds and an offset — `2026-01-31T08:00:00Z`,
/// `…+01:00`, `…-0800`, optionally with a fraction of a second — as Unix milliseconds.
pub fn parse_instant(text: &str) -> Option<i64> {
    let normalised = match text.len().checked_sub(5).map(|i| text.split_at(i)) {
        Some((head, zone)) if zone.starts_with(['+', '-']) && zone[1..].bytes().all(|b| b.is_ascii_digit()) => {
            format!("{head}{}:{}", &zone[..3], &zone[3..])
        }
        _ => text.to_owned(),
    };
    let at = OffsetDateTime::parse(&normalised, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

fn midnight_ms(day: Date) -> i64 {
    let seconds = day.midnight().assume_utc().unix_timestamp();
    seconds.saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-14T15:30:00Z, a Wednesday.
    const NOW: i64 = 1_768_404_600_000;
    const DAY: i64 = 86_400_000;

    fn ms(text: &str) -> i64 {
        let date = Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).unwrap();
        midnight_ms(date)
    }

    fn range(name: &str, n: Option<u32>) -> (i64, i64) {
        let literal = match (lookup(name), n) {
            (Lookup::Plain(l), None) => l,
            (Lookup::NeedsN(unit, make), Some(n)) => DateLiteral { unit, span: make(n) },
            other => panic!("{name}: {other:?}"),
        };
        literal.range(NOW)
    }

    #[test]
    fn day_literals_are_utc_days_around_today() {
        assert_eq!(range("TODAY", None), (ms("2026-01-14"), ms("2026-01-15")));
        assert_eq!(range("yesterday", None), (ms("2026-01-13"), ms("2026-01-14")));
        assert_eq!(range("TOMORROW", None), (ms("2026-01-15"), ms("2026-01-16")));
        assert_eq!(range("LAST_N_DAYS", Some(1)), (ms("2026-01-13"), ms("2026-01-15")));
        assert_eq!(range("LAST_N_DAYS", Some(7)), (ms("2026-01-07"), ms("2026-01-15")));
        assert_eq!(range("LAST_90_DAYS", None), (ms("2026-01-14") - 90 * DAY, ms("2026-01-15")));
        assert_eq!(range("NEXT_N_DAYS", Some(1)), (ms("2026-01-14"), ms("2026-01-16")));
        assert_eq!(range("NEXT_90_DAYS", None), (ms("2026-01-15"), ms("2026-01-15") + 90 * DAY));
        assert_eq!(range("N_DAYS_AGO", Some(3)), (ms("2026-01-11"), ms("2026-01-12")));
    }

    #[test]
    fn weeks_start_on_sunday() {
        assert_eq!(range("THIS_WEEK", None), (ms("2026-01-11"), ms("2026-01-18")));
        assert_eq!(range("LAST_WEEK", None), (ms("2026-01-04"), ms("2026-01-11")));
        assert_eq!(range("NEXT_WEEK", None), (ms("2026-01-18"), ms("2026-01-25")));
        assert_eq!(range("LAST_N_WEEKS", Some(2)), (ms("2025-12-28"), ms("2026-01-11")));
        assert_eq!(range("NEXT_N_WEEKS", Some(2)), (ms("2026-01-18"), ms("2026-02-01")));
        assert_eq!(range("N_WEEKS_AGO", Some(1)), (ms("2026-01-04"), ms("2026-01-11")));
    }

    #[test]
    fn months_quarters_and_years_cross_year_boundaries() {
        assert_eq!(range("THIS_MONTH", None), (ms("2026-01-01"), ms("2026-02-01")));
        assert_eq!(range("LAST_MONTH", None), (ms("2025-12-01"), ms("2026-01-01")));
        assert_eq!(range("LAST_N_MONTHS", Some(14)), (ms("2024-11-01"), ms("2026-01-01")));
        assert_eq!(range("NEXT_N_MONTHS", Some(2)), (ms("2026-02-01"), ms("2026-04-01")));
        assert_eq!(range("N_MONTHS_AGO", Some(13)), (ms("2024-12-01"), ms("2025-01-01")));
        assert_eq!(range("THIS_QUARTER", None), (ms("2026-01-01"), ms("2026-04-01")));
        assert_eq!(range("LAST_QUARTER", None), (ms("2025-10-01"), ms("2026-01-01")));
        assert_eq!(range("THIS_FISCAL_QUARTER", None), range("THIS_QUARTER", None));
        assert_eq!(range("N_QUARTERS_AGO", Some(4)), (ms("2025-01-01"), ms("2025-04-01")));
        assert_eq!(range("THIS_YEAR", None), (ms("2026-01-01"), ms("2027-01-01")));
        assert_eq!(range("LAST_N_YEARS", Some(2)), (ms("2024-01-01"), ms("2026-01-01")));
        assert_eq!(range("NEXT_FISCAL_YEAR", None), (ms("2027-01-01"), ms("2028-01-01")));
        assert_eq!(range("N_FISCAL_YEARS_AGO", Some(1)), (ms("2025-01-01"), ms("2026-01-01")));
    }

    #[test]
    fn names_that_need_an_argument_or_are_no_literal_are_told_apart() {
        assert!(matches!(lookup("last_n_days"), Lookup::NeedsN(Unit::Day, _)));
        assert!(matches!(lookup("LAST_N_FORTNIGHTS"), Lookup::NotALiteral));
        assert!(matches!(lookup("Name"), Lookup::NotALiteral));
        assert!(matches!(lookup("this_fiscal_quarter"), Lookup::Plain(DateLiteral { unit: Unit::Quarter, .. })));
    }

    #[test]
    fn instants_parse_in_every_soql_offset_form() {
        let at = 1_769_846_400_000; // 2026-01-31T08:00:00Z
        assert_eq!(parse_instant("2026-01-31T08:00:00Z"), Some(at));
        assert_eq!(parse_instant("2026-01-31T09:00:00+01:00"), Some(at));
        assert_eq!(parse_instant("2026-01-31T00:00:00-0800"), Some(at));
        assert_eq!(parse_instant("2026-01-31T08:00:00.250Z"), Some(at + 250));
        for bad in ["2026-01-31", "2026-01-31T08:00Z", "2026-02-30T08:00:00Z", "2026-01-31T08:00:00", "soon"] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_largest_n_does_not_overflow() {
        let (start, end) = DateLiteral { unit: Unit::Year, span: Span::LastN(MAX_N) }.range(NOW);
        assert!(start < end);
        let (start, end) = DateLiteral { unit: Unit::Day, span: Span::NextN(MAX_N) }.range(NOW);
        assert!(start < end);
    }
}
