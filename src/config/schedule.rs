//! Schedules: when a dialer may send.
//!
//! A schedule is defined once in the config and named by dialers:
//!
//! ```toml
//! [schedule.office]
//! time_zone = "America/Montevideo"
//!
//! [[schedule.office.window]]
//! days = "mon-fri"            # or ["mon", "wed", "fri"], or "sat,sun", "fri-mon"
//! from = "09:00"
//! to = "13:00"
//!
//! [[schedule.office.window]]   # several windows a day are fine
//! days = "mon-fri"
//! from = "14:00"
//! to = "18:00"
//!
//! [[schedule.office.exception]] # a holiday: closed all day
//! date = "2026-12-25"
//! closed = true
//!
//! [[schedule.office.exception]] # a short day: these ranges replace the week's
//! date = "2026-12-24"
//! ranges = [{ from = "09:00", to = "12:00" }]
//! ```
//!
//! Meaning, decided here:
//! - Times are wall-clock times in `time_zone` (IANA name, read from the
//!   system's /usr/share/zoneinfo by jiff, so tzdata updates apply).
//! - A window is open from `from` (included) to `to` (excluded). `to = "24:00"`
//!   means the end of the day.
//! - `to` must be after `from`. A window does NOT cross midnight: an overnight
//!   window is written as two, "22:00"-"24:00" on one day and "00:00"-"02:00"
//!   on the next. That keeps it clear which day an exception closes.
//! - Overlapping or touching windows merge ("09:00-12:00" + "12:00-18:00" is
//!   one window with no change at noon; "mon 00:00-24:00" + "tue 00:00-24:00"
//!   has no change at midnight).
//! - An exception replaces the weekly windows of its date entirely.
//! - Daylight saving time: a time that does not exist on the day the clocks
//!   go forward (02:30 in Madrid on the last Sunday of March) is read with
//!   the offset from before the jump, so it means 03:30 summer time; a time
//!   that happens twice when the clocks go back means its first occurrence.
//!   This is RFC 5545's (iCalendar's) rule and jiff's "compatible"
//!   disambiguation. A window is thus always one unbroken span of real time.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

/// `[schedule.NAME]` as written in the config. Turn it into a [`Schedule`]
/// with [`ScheduleConfig::compile`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA time zone name, e.g. "America/Montevideo".
    pub time_zone: String,
    /// `[[schedule.NAME.window]]`: the weekly opening hours.
    #[serde(default, rename = "window")]
    pub windows: Vec<WindowConfig>,
    /// `[[schedule.NAME.exception]]`: dates that differ from the week.
    #[serde(default, rename = "exception")]
    pub exceptions: Vec<ExceptionConfig>,
}

/// One weekly window: these days, from .. to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub days: DaysConfig,
    pub from: String,
    pub to: String,
}

/// `days = "mon-fri"` or `days = ["mon", "sat"]`. Each string may hold a
/// day, a comma-separated list or a range (ranges may wrap: "fri-mon").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DaysConfig {
    One(String),
    List(Vec<String>),
}

/// One date that differs from the weekly windows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionConfig {
    /// "YYYY-MM-DD", in the schedule's time zone.
    pub date: String,
    /// Closed all day.
    #[serde(default)]
    pub closed: bool,
    /// Or open only in these ranges.
    #[serde(default)]
    pub ranges: Vec<RangeConfig>,
}

/// A time range within one day.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig {
    pub from: String,
    pub to: String,
}

/// Every problem found in one schedule, each a plain sentence. The config
/// loader prefixes them with the schedule's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct ScheduleError {
    pub problems: Vec<String>,
}

/// How far ahead [`Schedule::next_change`] looks for an exception.
const MAX_SCAN_DAYS: i64 = 3660;

/// Minutes since local midnight, 0..=1440 (1440 only as an end: "24:00").
type Minute = u16;
const END_OF_DAY: Minute = 24 * 60;

/// A validated schedule, ready to answer "open now?" and "until when?".
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    /// Monday first; each day's ranges sorted and merged.
    weekly: [Vec<(Minute, Minute)>; 7],
    exceptions: BTreeMap<Date, Vec<(Minute, Minute)>>,
}

impl ScheduleConfig {
    /// Validates and compiles, reporting every problem at once.
    pub fn compile(&self) -> Result<Schedule, ScheduleError> {
        let mut problems = Vec::new();
        let tz = match TimeZone::get(self.time_zone.trim()) {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.push(format!(
                    "time_zone {:?} is not a time zone this system knows; use an IANA name such as \"America/Montevideo\"",
                    self.time_zone
                ));
                None
            }
        };
        let mut weekly: [Vec<(Minute, Minute)>; 7] = Default::default();
        for (i, w) in self.windows.iter().enumerate() {
            let at = format!("window {}", i + 1);
            let days = parse_days(&w.days, &at, &mut problems);
            if let Some(range) = parse_range(&w.from, &w.to, &at, &mut problems) {
                for d in days {
                    weekly[d].push(range);
                }
            }
        }
        let mut exceptions = BTreeMap::new();
        for (i, e) in self.exceptions.iter().enumerate() {
            let at = format!("exception {} ({})", i + 1, e.date);
            let date = match e.date.trim().parse::<Date>() {
                Ok(d) => Some(d),
                Err(_) => {
                    problems.push(format!(
                        "exception {}: date {:?} is not a date written as YYYY-MM-DD",
                        i + 1,
                        e.date
                    ));
                    None
                }
            };
            if e.closed && !e.ranges.is_empty() {
                problems.push(format!(
                    "{at}: says both closed = true and gives ranges; keep one"
                ));
            }
            if !e.closed && e.ranges.is_empty() {
                problems.push(format!(
                    "{at}: say closed = true, or give the ranges when it is open"
                ));
            }
            let mut ranges = Vec::new();
            for (j, r) in e.ranges.iter().enumerate() {
                let at = format!("{at}, range {}", j + 1);
                if let Some(range) = parse_range(&r.from, &r.to, &at, &mut problems) {
                    ranges.push(range);
                }
            }
            if let Some(date) = date
                && exceptions.insert(date, merge(ranges)).is_some()
            {
                problems.push(format!(
                    "{at}: the date {date} has more than one exception; put its ranges in one"
                ));
            }
        }
        if self.windows.is_empty() && self.exceptions.iter().all(|e| e.ranges.is_empty()) {
            problems.push(
                "the schedule has no window, so a dialer using it would never send".to_owned(),
            );
        }
        match tz {
            Some(tz) if problems.is_empty() => Ok(Schedule {
                tz,
                weekly: weekly.map(merge),
                exceptions,
            }),
            _ => Err(ScheduleError { problems }),
        }
    }
}

impl Schedule {
    /// Whether a dialer on this schedule may send at `at`.
    pub fn is_open(&self, at: Timestamp) -> bool {
        let Some(day) = self.local_date(at) else {
            return false;
        };
        // A window belongs to the day it starts on; the day before can only
        // reach into `day` through a DST shift, but asking costs little.
        [day.yesterday().ok(), Some(day)]
            .into_iter()
            .flatten()
            .flat_map(|d| self.spans(d))
            .any(|(s, e)| s <= at && at < e)
    }

    /// The next instant after `at` when the schedule opens or closes, so a
    /// dialer can sleep until then. `None` when nothing will ever change
    /// (open all the time, or never open again), looking at most ten years
    /// ahead.
    pub fn next_change(&self, at: Timestamp) -> Option<Timestamp> {
        let today = self.local_date(at)?;
        // The week repeats, so once past the last exception a change, if
        // any, comes within eight days. Scan day by day to there, but not
        // beyond ten years: an exception further ahead is not seen (the
        // dialer re-asks after every change and on every config reload).
        let mut horizon = today.checked_add(jiff::Span::new().days(9)).ok()?;
        if let Some(last) = self.exceptions.keys().next_back()
            && let Ok(after_last) = last.checked_add(jiff::Span::new().days(9))
        {
            let cap = today
                .checked_add(jiff::Span::new().days(MAX_SCAN_DAYS))
                .unwrap_or(Date::MAX);
            horizon = horizon.max(after_last.min(cap));
        }
        let mut days = Vec::new();
        let mut d = today.yesterday().ok()?;
        while d <= horizon {
            days.push(d);
            d = d.tomorrow().ok()?;
        }
        // `open_until`: the end of the merged open run containing `at`.
        let mut open_until: Option<Timestamp> = None;
        for day in days {
            for (s, e) in self.spans(day) {
                if e <= at {
                    continue;
                }
                match open_until {
                    None if s > at => return Some(s),
                    None => open_until = Some(e),
                    Some(end) if s <= end => open_until = Some(end.max(e)),
                    Some(end) => return Some(end),
                }
            }
            if let Some(end) = open_until {
                // A day that adds nothing contiguous ends the run.
                let next_day_start = self.resolve(day.tomorrow().ok()?, 0)?;
                if end < next_day_start {
                    return Some(end);
                }
            }
        }
        None
    }

    /// The schedule's time zone (for logs and the API's "in schedule" view).
    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    fn local_date(&self, at: Timestamp) -> Option<Date> {
        Some(self.tz.to_datetime(at).date())
    }

    /// The real-time spans in which `date`'s windows are open.
    fn spans(&self, date: Date) -> Vec<(Timestamp, Timestamp)> {
        let ranges = self
            .exceptions
            .get(&date)
            .unwrap_or(&self.weekly[weekday_index(date.weekday())]);
        ranges
            .iter()
            .filter_map(|&(from, to)| {
                let s = self.resolve(date, from)?;
                let e = self.resolve(date, to)?;
                (s < e).then_some((s, e))
            })
            .collect()
    }

    /// `minute` past local midnight of `date` as an instant (compatible
    /// disambiguation: see the module comment). 1440 is the next midnight.
    fn resolve(&self, date: Date, minute: Minute) -> Option<Timestamp> {
        let (date, minute) = if minute >= END_OF_DAY {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minute)
        };
        let dt = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
        self.tz.to_ambiguous_timestamp(dt).compatible().ok()
    }
}

fn weekday_index(w: Weekday) -> usize {
    (w.to_monday_zero_offset() as usize).min(6)
}

/// Sorts and merges overlapping or touching ranges.
fn merge(mut ranges: Vec<(Minute, Minute)>) -> Vec<(Minute, Minute)> {
    ranges.sort_unstable();
    let mut out: Vec<(Minute, Minute)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

const DAY_NAMES: [[&str; 2]; 7] = [
    ["mon", "monday"],
    ["tue", "tuesday"],
    ["wed", "wednesday"],
    ["thu", "thursday"],
    ["fri", "friday"],
    ["sat", "saturday"],
    ["sun", "sunday"],
];

fn day_index(name: &str) -> Option<usize> {
    let n = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|names| names.contains(&n.as_str()))
}

/// Parses `days`, pushing a sentence for each bad name. Returns day indexes
/// (Monday = 0).
fn parse_days(days: &DaysConfig, at: &str, problems: &mut Vec<String>) -> Vec<usize> {
    let items: Vec<&str> = match days {
        DaysConfig::One(s) => s.split(',').collect(),
        DaysConfig::List(v) => v.iter().flat_map(|s| s.split(',')).collect(),
    };
    let mut out = Vec::new();
    let before = problems.len();
    for item in items {
        let item = item.trim();
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        match (day_index(a), day_index(b)) {
            (Some(a), Some(b)) => {
                // "fri-mon" wraps over the weekend.
                let mut d = a;
                loop {
                    if !out.contains(&d) {
                        out.push(d);
                    }
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            _ => problems.push(format!(
                "{at}: {item:?} is not a day; use mon, tue, wed, thu, fri, sat, sun, a list \"mon,wed\" or a range \"mon-fri\""
            )),
        }
    }
    if out.is_empty() && problems.len() == before {
        problems.push(format!("{at}: days is empty; name at least one day"));
    }
    out
}

/// Parses "HH:MM" (from) and "HH:MM" or "24:00" (to), requiring to > from.
fn parse_range(
    from: &str,
    to: &str,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<(Minute, Minute)> {
    let f = parse_time(from, false);
    let t = parse_time(to, true);
    if f.is_none() {
        problems.push(format!(
            "{at}: from = {from:?} is not a time of day written as HH:MM (00:00 to 23:59)"
        ));
    }
    if t.is_none() {
        problems.push(format!(
            "{at}: to = {to:?} is not a time of day written as HH:MM (00:00 to 24:00)"
        ));
    }
    let (f, t) = (f?, t?);
    if t <= f {
        problems.push(format!(
            "{at}: to = {to:?} is not after from = {from:?}; a window cannot cross midnight, so split it into \"{from}\"-\"24:00\" on one day and \"00:00\"-\"{to}\" on the next"
        ));
        return None;
    }
    Some((f, t))
}

fn parse_time(s: &str, allow_end_of_day: bool) -> Option<Minute> {
    let (h, m) = s.trim().split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return None;
    }
    let (h, m): (Minute, Minute) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) if allow_end_of_day => Some(END_OF_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(toml_text: &str) -> Schedule {
        let cfg: ScheduleConfig = toml::from_str(toml_text).expect("toml");
        cfg.compile().unwrap_or_else(|e| panic!("{e}"))
    }

    fn problems(toml_text: &str) -> Vec<String> {
        let cfg: ScheduleConfig = toml::from_str(toml_text).expect("toml");
        cfg.compile().expect_err("should be refused").problems
    }

    /// An instant given as local civil time plus its UTC offset, read
    /// exactly (no zone rules involved), e.g. "2026-03-29T03:00:00+02:00".
    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const OFFICE: &str = r#"
        time_zone = "America/Montevideo"
        [[window]]
        days = "mon-fri"
        from = "09:00"
        to = "13:00"
        [[window]]
        days = ["mon", "tue", "wed", "thu", "fri"]
        from = "14:00"
        to = "18:00"
        [[window]]
        days = "sat"
        from = "10:00"
        to = "12:00"
        [[exception]]
        date = "2026-12-25"
        closed = true
        [[exception]]
        date = "2026-12-24"
        ranges = [{ from = "09:00", to = "11:00" }]
    "#;

    #[test]
    fn several_windows_a_day() {
        let s = sched(OFFICE);
        // Montevideo is UTC-3 all year (no DST since 2015).
        assert!(!s.is_open(ts("2026-06-01T08:59:59-03:00")));
        assert!(s.is_open(ts("2026-06-01T09:00:00-03:00")));
        assert!(s.is_open(ts("2026-06-01T12:59:59-03:00")));
        assert!(!s.is_open(ts("2026-06-01T13:00:00-03:00")));
        assert!(s.is_open(ts("2026-06-01T14:00:00-03:00")));
        assert!(!s.is_open(ts("2026-06-01T18:00:00-03:00")));
        assert!(!s.is_open(ts("2026-06-07T11:00:00-03:00")), "Sunday");
        assert!(s.is_open(ts("2026-06-06T11:00:00-03:00")), "Saturday");
        assert_eq!(
            s.next_change(ts("2026-06-01T10:00:00-03:00")),
            Some(ts("2026-06-01T13:00:00-03:00"))
        );
        assert_eq!(
            s.next_change(ts("2026-06-01T13:00:00-03:00")),
            Some(ts("2026-06-01T14:00:00-03:00"))
        );
        // Friday evening: next opening is Saturday 10:00.
        assert_eq!(
            s.next_change(ts("2026-06-05T19:00:00-03:00")),
            Some(ts("2026-06-06T10:00:00-03:00"))
        );
        // Saturday noon: next opening is Monday 09:00.
        assert_eq!(
            s.next_change(ts("2026-06-06T12:00:00-03:00")),
            Some(ts("2026-06-08T09:00:00-03:00"))
        );
    }

    #[test]
    fn holiday_exceptions_replace_the_week() {
        let s = sched(OFFICE);
        // Christmas 2026 is a Friday: closed.
        assert!(!s.is_open(ts("2026-12-25T10:00:00-03:00")));
        // Christmas Eve: only 09:00-11:00.
        assert!(s.is_open(ts("2026-12-24T10:00:00-03:00")));
        assert!(!s.is_open(ts("2026-12-24T15:00:00-03:00")));
        assert_eq!(
            s.next_change(ts("2026-12-24T10:00:00-03:00")),
            Some(ts("2026-12-24T11:00:00-03:00"))
        );
        // From the Eve's close, the next opening skips Christmas: Sat 10:00.
        assert_eq!(
            s.next_change(ts("2026-12-24T11:00:00-03:00")),
            Some(ts("2026-12-26T10:00:00-03:00"))
        );
    }

    #[test]
    fn touching_windows_merge_and_24_7_never_changes() {
        let s = sched(
            r#"
            time_zone = "Europe/Madrid"
            [[window]]
            days = "mon-sun"
            from = "00:00"
            to = "24:00"
            "#,
        );
        assert!(s.is_open(ts("2026-03-29T02:30:00+01:00")));
        assert_eq!(s.next_change(ts("2026-03-29T02:30:00+01:00")), None);

        let s = sched(
            r#"
            time_zone = "Europe/Madrid"
            [[window]]
            days = "mon"
            from = "09:00"
            to = "12:00"
            [[window]]
            days = "mon"
            from = "12:00"
            to = "15:00"
            "#,
        );
        assert_eq!(
            s.next_change(ts("2026-06-01T10:00:00+02:00")),
            Some(ts("2026-06-01T15:00:00+02:00"))
        );
    }

    #[test]
    fn always_open_week_with_a_holiday_far_ahead() {
        let s = sched(
            r#"
            time_zone = "Europe/Madrid"
            [[window]]
            days = "mon-sun"
            from = "00:00"
            to = "24:00"
            [[exception]]
            date = "2026-12-25"
            closed = true
            "#,
        );
        assert_eq!(
            s.next_change(ts("2026-06-01T10:00:00+02:00")),
            Some(ts("2026-12-25T00:00:00+01:00"))
        );
        assert_eq!(
            s.next_change(ts("2026-12-25T10:00:00+01:00")),
            Some(ts("2026-12-26T00:00:00+01:00"))
        );
    }

    #[test]
    fn madrid_spring_forward_window_spanning_the_gap() {
        // 2026-03-29: at 02:00 CET the clocks jump to 03:00 CEST.
        let s = sched(
            r#"
            time_zone = "Europe/Madrid"
            [[window]]
            days = "sun"
            from = "01:30"
            to = "02:30"
            [[window]]
            days = "sun"
            from = "09:00"
            to = "18:00"
            "#,
        );
        // 02:30 does not exist; it means 03:30 summer time (RFC 5545).
        assert!(s.is_open(ts("2026-03-29T01:45:00+01:00")));
        assert!(s.is_open(ts("2026-03-29T03:15:00+02:00")));
        assert!(!s.is_open(ts("2026-03-29T03:30:00+02:00")));
        assert_eq!(
            s.next_change(ts("2026-03-29T01:45:00+01:00")),
            Some(ts("2026-03-29T03:30:00+02:00"))
        );
        // The day's office hours are in summer time.
        assert!(s.is_open(ts("2026-03-29T09:00:00+02:00")));
        assert!(!s.is_open(ts("2026-03-29T08:30:00+02:00")));
        assert_eq!(
            s.next_change(ts("2026-03-29T03:30:00+02:00")),
            Some(ts("2026-03-29T09:00:00+02:00"))
        );
    }

    #[test]
    fn madrid_fall_back_window_in_the_repeated_hour() {
        // 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET.
        let s = sched(
            r#"
            time_zone = "Europe/Madrid"
            [[window]]
            days = "sun"
            from = "02:30"
            to = "04:00"
            "#,
        );
        // Opens at the first 02:30 (summer time) and stays open through the
        // repeated hour: one unbroken span of 2.5 real hours.
        assert!(!s.is_open(ts("2026-10-25T02:29:00+02:00")));
        assert!(s.is_open(ts("2026-10-25T02:30:00+02:00")));
        assert!(s.is_open(ts("2026-10-25T02:10:00+01:00")), "second 02:10");
        assert!(s.is_open(ts("2026-10-25T03:59:00+01:00")));
        assert!(!s.is_open(ts("2026-10-25T04:00:00+01:00")));
        assert_eq!(
            s.next_change(ts("2026-10-25T02:40:00+02:00")),
            Some(ts("2026-10-25T04:00:00+01:00"))
        );
    }

    #[test]
    fn santiago_midnight_gap_and_fold() {
        // Chile: 2026-09-06 00:00 -04 does not exist (clocks go to 01:00 -03);
        // 2026-04-04 23:00-24:00 happens twice (24:00 -03 becomes 23:00 -04).
        let s = sched(
            r#"
            time_zone = "America/Santiago"
            [[window]]
            days = "sat"
            from = "22:00"
            to = "24:00"
            [[window]]
            days = "sun"
            from = "00:00"
            to = "02:00"
            "#,
        );
        // Saturday 22:00 to Sunday 02:00 runs as one span over the gap.
        assert!(s.is_open(ts("2026-09-05T23:30:00-04:00")));
        assert!(s.is_open(ts("2026-09-06T01:30:00-03:00")));
        assert!(!s.is_open(ts("2026-09-06T02:00:00-03:00")));
        assert_eq!(
            s.next_change(ts("2026-09-05T22:30:00-04:00")),
            Some(ts("2026-09-06T02:00:00-03:00"))
        );
        // Fold: Saturday 22:00 -03 to Sunday 02:00 -04 is five real hours.
        assert!(s.is_open(ts("2026-04-04T23:30:00-03:00")));
        assert!(s.is_open(ts("2026-04-04T23:30:00-04:00")));
        assert!(s.is_open(ts("2026-04-05T01:59:00-04:00")));
        assert_eq!(
            s.next_change(ts("2026-04-04T22:00:00-03:00")),
            Some(ts("2026-04-05T02:00:00-04:00"))
        );
    }

    #[test]
    fn days_accept_lists_ranges_and_wrapping() {
        let s = sched(
            r#"
            time_zone = "UTC"
            [[window]]
            days = "fri-mon"
            from = "10:00"
            to = "11:00"
            [[window]]
            days = ["Wednesday", "thu,tue"]
            from = "12:00"
            to = "13:00"
            "#,
        );
        // 2026-06-01 is a Monday.
        for (day, open10, open12) in [
            ("01", true, false),
            ("02", false, true),
            ("03", false, true),
            ("04", false, true),
            ("05", true, false),
            ("06", true, false),
            ("07", true, false),
        ] {
            assert_eq!(
                s.is_open(ts(&format!("2026-06-{day}T10:30:00Z"))),
                open10,
                "{day}"
            );
            assert_eq!(
                s.is_open(ts(&format!("2026-06-{day}T12:30:00Z"))),
                open12,
                "{day}"
            );
        }
    }

    #[test]
    fn never_open_schedule_has_no_next_change() {
        let s = sched(
            r#"
            time_zone = "UTC"
            [[exception]]
            date = "2020-01-01"
            ranges = [{ from = "09:00", to = "10:00" }]
            "#,
        );
        assert!(!s.is_open(ts("2026-06-01T09:30:00Z")));
        assert_eq!(s.next_change(ts("2026-06-01T09:30:00Z")), None);
    }

    #[test]
    fn all_problems_are_reported_in_plain_sentences() {
        let p = problems(
            r#"
            time_zone = "Mars/Olympus"
            [[window]]
            days = "mun-fri"
            from = "18:00"
            to = "09:00"
            [[window]]
            days = []
            from = "9h"
            to = "25:00"
            [[exception]]
            date = "2026-13-01"
            closed = true
            [[exception]]
            date = "2026-12-25"
            [[exception]]
            date = "2026-12-24"
            closed = true
            ranges = [{ from = "09:00", to = "10:00" }]
            "#,
        );
        let all = p.join("\n");
        assert!(all.contains("\"Mars/Olympus\" is not a time zone"), "{all}");
        assert!(all.contains("window 1: \"mun-fri\" is not a day"), "{all}");
        assert!(
            all.contains("window 1: to = \"09:00\" is not after from = \"18:00\""),
            "{all}"
        );
        assert!(all.contains("cannot cross midnight"), "{all}");
        assert!(all.contains("window 2: days is empty"), "{all}");
        assert!(all.contains("window 2: from = \"9h\""), "{all}");
        assert!(all.contains("window 2: to = \"25:00\""), "{all}");
        assert!(all.contains("exception 1: date \"2026-13-01\""), "{all}");
        assert!(
            all.contains("exception 2 (2026-12-25): say closed = true"),
            "{all}"
        );
        assert!(all.contains("exception 3 (2026-12-24): says both"), "{all}");
        assert_eq!(p.len(), 9, "{all}");
    }

    #[test]
    fn no_window_at_all_is_refused_and_duplicate_dates_too() {
        let p = problems("time_zone = \"UTC\"");
        assert!(p[0].contains("never send"), "{p:?}");
        let p = problems(
            r#"
            time_zone = "UTC"
            [[window]]
            days = "mon"
            from = "09:00"
            to = "10:00"
            [[exception]]
            date = "2026-12-25"
            closed = true
            [[exception]]
            date = "2026-12-25"
            closed = true
            "#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("more than one exception"), "{p:?}");
    }

    #[test]
    fn unknown_keys_are_refused_by_serde() {
        let r: Result<ScheduleConfig, _> = toml::from_str(
            r#"
            time_zone = "UTC"
            timezone = "UTC"
            "#,
        );
        assert!(r.is_err());
        let r: Result<ScheduleConfig, _> = toml::from_str(
            r#"
            time_zone = "UTC"
            [[window]]
            day = "mon"
            from = "09:00"
            to = "10:00"
            "#,
        );
        assert!(r.is_err());
    }

    #[test]
    fn time_parsing_edges() {
        assert_eq!(parse_time("00:00", false), Some(0));
        assert_eq!(parse_time("9:05", false), Some(545));
        assert_eq!(parse_time("23:59", false), Some(1439));
        assert_eq!(parse_time("24:00", false), None);
        assert_eq!(parse_time("24:00", true), Some(1440));
        for bad in [
            "", "9", "09:5", "09:60", "-1:00", "09:00:00", "aa:bb", "123:00",
        ] {
            assert_eq!(parse_time(bad, true), None, "{bad:?}");
        }
    }
}
