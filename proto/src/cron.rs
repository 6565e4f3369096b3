//! Cron schedules as Kubernetes reads them (robfig/cron's standard parser), for the
//! apiserver's validation of CronJobs and the controller that runs them: five
//! fields — minute, hour, day of month, month, day of week — each a list of `*`,
//! `?`, values, ranges `a-b` and steps `*/n`, `a-b/n`, `a/n` (from a to the end),
//! with month and weekday names (JAN, MON, any case); or one of the macros
//! @yearly @annually @monthly @weekly @daily @midnight @hourly. As in cron, when
//! both day fields are restricted a day matches if either does.
//!
//! Times are wall-clock times in an IANA time zone: a time a daylight-saving jump
//! skips does not happen that day, and a time the clocks repeat happens twice.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Why a schedule does not parse; the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expected exactly 5 fields (minute hour day-of-month month day-of-week), found {0}")]
    FieldCount(usize),
    #[error("unknown macro \"{0}\": use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly")]
    UnknownMacro(String),
    #[error("cannot use TZ or CRON_TZ in the schedule: set spec.timeZone instead")]
    TimeZoneInSchedule,
    #[error("{field} field \"{text}\": {problem}")]
    Field { field: &'static str, text: String, problem: String },
}

/// An unknown `spec.timeZone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone \"{0}\": use an IANA name such as \"Etc/UTC\" or \"Europe/Berlin\"")]
pub struct UnknownTimeZone(pub String);

/// A CronJob's time zone: UTC unless spec.timeZone names another.
pub fn time_zone(name: Option<&str>) -> Result<Tz, UnknownTimeZone> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| UnknownTimeZone(name.to_string())),
    }
}

/// One field's allowed values as bits, and whether it was written as `*` or `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

impl Field {
    fn has(self, value: u32) -> bool {
        self.bits & (1 << value) != 0
    }
}

struct Bounds {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds { name: "minute", min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { name: "hour", min: 0, max: 23, names: &[] };
const DAY_OF_MONTH: Bounds = Bounds { name: "day-of-month", min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
};
const DAY_OF_WEEK: Bounds =
    Bounds { name: "day-of-week", min: 0, max: 6, names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"] };

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: Field,
    hour: Field,
    day_of_month: Field,
    month: Field,
    day_of_week: Field,
}

/// How far ahead `next` looks before deciding a schedule never fires (Feb 30).
const SEARCH_YEARS: i32 = 5;

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err(ScheduleError::TimeZoneInSchedule);
        }
        let expanded = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => return Err(ScheduleError::UnknownMacro(other.to_string())),
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = fields[..] else {
            return Err(ScheduleError::FieldCount(fields.len()));
        };
        Ok(Schedule {
            minute: parse_field(minute, &MINUTE)?,
            hour: parse_field(hour, &HOUR)?,
            day_of_month: parse_field(day_of_month, &DAY_OF_MONTH)?,
            month: parse_field(month, &MONTH)?,
            day_of_week: parse_field(day_of_week, &DAY_OF_WEEK)?,
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let by_month = self.day_of_month.has(date.day());
        let by_week = self.day_of_week.has(date.weekday().num_days_from_sunday());
        if self.day_of_month.star || self.day_of_week.star { by_month && by_week } else { by_month || by_week }
    }

    /// The first time of the schedule strictly after `after`, in zone `tz`; None
    /// if it never comes (a day that does not exist, such as February 30).
    pub fn next(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // Walks real minutes (so a repeated wall-clock hour is walked twice and a
        // skipped one not at all), jumping whole months, days and hours that
        // cannot match.
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let give_up = after.with_timezone(&tz).year() + SEARCH_YEARS;
        let mut t = start;
        loop {
            let local = t.with_timezone(&tz);
            if local.year() > give_up {
                return None;
            }
            if !self.month.has(local.month()) {
                let (year, month) =
                    if local.month() == 12 { (local.year() + 1, 1) } else { (local.year(), local.month() + 1) };
                t = start_of_local_day(NaiveDate::from_ymd_opt(year, month, 1)?, tz)?;
                continue;
            }
            if !self.day_matches(local.date_naive()) {
                t = start_of_local_day(local.date_naive().succ_opt()?, tz)?;
                continue;
            }
            if !self.hour.has(local.hour()) {
                t += Duration::minutes(i64::from(60 - local.minute()));
                continue;
            }
            if !self.minute.has(local.minute()) {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
    }
}

/// The first instant of `date` in `tz` (later than midnight where a jump skips it).
fn start_of_local_day(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let mut wall: NaiveDateTime = date.and_hms_opt(0, 0, 0)?;
    // Daylight-saving jumps are at most a few hours; some zones jump at midnight.
    for _ in 0..(24 * 4) {
        if let Some(t) = tz.from_local_datetime(&wall).earliest() {
            return Some(t.with_timezone(&Utc));
        }
        wall += Duration::minutes(15);
    }
    None
}

fn parse_field(text: &str, bounds: &Bounds) -> Result<Field, ScheduleError> {
    let error = |problem: String| ScheduleError::Field { field: bounds.name, text: text.to_string(), problem };
    let mut field = Field { bits: 0, star: false };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step.parse().map_err(|_| error(format!("step \"{step}\" is not a positive number")))?;
                if step == 0 {
                    return Err(error("a step must be at least 1".into()));
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high, star) = if range == "*" || range == "?" {
            (bounds.min, bounds.max, true)
        } else if let Some((low, high)) = range.split_once('-') {
            (value(low, bounds).map_err(error)?, value(high, bounds).map_err(error)?, false)
        } else {
            let low = value(range, bounds).map_err(error)?;
            // "a/n" runs from a to the end, as robfig/cron reads it.
            (low, if step.is_some() { bounds.max } else { low }, false)
        };
        if low > high {
            return Err(error(format!("range {low}-{high} runs backwards")));
        }
        let step = step.unwrap_or(1);
        for v in (low..=high).step_by(usize::try_from(step).unwrap_or(usize::MAX)) {
            field.bits |= 1 << v;
        }
        // `*/2` restricts the field; only a plain `*` leaves it open.
        field.star |= star && step == 1;
    }
    Ok(field)
}

/// A number or a name within `bounds`.
fn value(text: &str, bounds: &Bounds) -> Result<u32, String> {
    if let Some(i) = bounds.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(bounds.min + u32::try_from(i).unwrap_or(0));
    }
    let range = || {
        let names = match bounds.names {
            [] => String::new(),
            names => format!(" or {}-{}", names[0], names[names.len() - 1]),
        };
        format!("{}-{}{names}", bounds.min, bounds.max)
    };
    let n: u32 = text.parse().map_err(|_| format!("\"{text}\" is not a number or name (use {})", range()))?;
    if n < bounds.min || n > bounds.max {
        return Err(format!("{n} is out of range (use {})", range()));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule).unwrap().next(utc(after), Tz::UTC).unwrap().to_rfc3339()
    }

    fn next_in(schedule: &str, after: &str, tz: &str) -> String {
        let tz: Tz = tz.parse().unwrap();
        Schedule::parse(schedule).unwrap().next(utc(after), tz).unwrap().to_rfc3339()
    }

    #[test]
    fn every_minute_is_the_next_whole_minute() {
        assert_eq!(next("* * * * *", "2026-12-03T06:30:20Z"), "2026-12-03T06:31:00+00:00");
        assert_eq!(next("* * * * *", "2026-12-03T06:31:00Z"), "2026-12-03T06:32:00+00:00");
        assert_eq!(next("* * * * *", "2026-12-31T23:59:00Z"), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn steps_ranges_and_lists() {
        assert_eq!(next("*/15 * * * *", "2026-12-03T06:31:00Z"), "2026-12-03T06:45:00+00:00");
        assert_eq!(next("5/20 * * * *", "2026-12-03T06:26:00Z"), "2026-12-03T06:45:00+00:00");
        assert_eq!(next("0 9-17/4 * * *", "2026-12-03T13:00:00Z"), "2026-12-03T17:00:00+00:00");
        assert_eq!(next("0 9-17/4 * * *", "2026-12-03T17:00:00Z"), "2026-12-04T09:00:00+00:00");
        assert_eq!(next("10,20,40 * * * *", "2026-12-03T06:20:00Z"), "2026-12-03T06:40:00+00:00");
        assert_eq!(next("0 0 1,15 * *", "2026-12-03T00:00:00Z"), "2026-12-15T00:00:00+00:00");
    }

    #[test]
    fn names_in_any_case() {
        // 2026-12-03 is a Thursday.
        assert_eq!(next("0 8 * * MON-FRI", "2026-12-04T09:00:00Z"), "2026-12-07T08:00:00+00:00");
        assert_eq!(next("0 8 * * sat,Sun", "2026-12-03T09:00:00Z"), "2026-12-05T08:00:00+00:00");
        assert_eq!(next("0 0 1 jan-MAR *", "2026-12-03T09:00:00Z"), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("0 0 1 JUN *", "2026-12-03T09:00:00Z"), "2027-06-01T00:00:00+00:00");
    }

    #[test]
    fn macros() {
        let after = "2026-12-03T06:30:00Z";
        assert_eq!(next("@hourly", after), "2026-12-03T07:00:00+00:00");
        assert_eq!(next("@daily", after), "2026-12-04T00:00:00+00:00");
        assert_eq!(next("@midnight", after), "2026-12-04T00:00:00+00:00");
        assert_eq!(next("@weekly", after), "2026-12-06T00:00:00+00:00");
        assert_eq!(next("@monthly", after), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@yearly", after), "2027-01-01T00:00:00+00:00");
        assert_eq!(next("@annually", after), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn both_day_fields_restricted_means_either() {
        // The 13th, or any Friday: Friday 2026-12-04 comes first.
        assert_eq!(next("0 0 13 * FRI", "2026-12-03T00:00:00Z"), "2026-12-04T00:00:00+00:00");
        assert_eq!(next("0 0 13 * FRI", "2026-12-11T00:00:00Z"), "2026-12-13T00:00:00+00:00");
        // A star in one of them: both must hold (Fridays only).
        assert_eq!(next("0 0 * * FRI", "2026-12-04T00:00:00Z"), "2026-12-11T00:00:00+00:00");
        // A stepped star restricts: the 1st, 3rd, ... or a Friday.
        assert_eq!(next("0 0 */2 * FRI", "2026-12-03T00:00:00Z"), "2026-12-04T00:00:00+00:00");
        // `?` is `*`.
        assert_eq!(next("0 0 ? * FRI", "2026-12-04T00:00:00Z"), "2026-12-11T00:00:00+00:00");
    }

    #[test]
    fn leap_days_and_days_that_never_come() {
        assert_eq!(next("0 0 29 2 *", "2026-12-03T00:00:00Z"), "2028-02-29T00:00:00+00:00");
        let never = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(never.next(utc("2026-12-03T00:00:00Z"), Tz::UTC), None);
    }

    #[test]
    fn time_zones_shift_wall_clock_times() {
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(next_in("0 9 * * *", "2026-12-03T09:00:00Z", "Europe/Berlin"), "2026-12-04T08:00:00+00:00");
        assert_eq!(next_in("0 9 * * *", "2026-07-03T09:00:00Z", "Europe/Berlin"), "2026-07-04T07:00:00+00:00");
        assert_eq!(next_in("30 0 * * *", "2026-12-03T00:00:00Z", "Asia/Kolkata"), "2026-12-03T19:00:00+00:00");
    }

    #[test]
    fn daylight_saving_gaps_skip_and_repeats_run_twice() {
        // New York springs forward at 02:00 on 2026-03-08: 02:30 does not exist that day.
        assert_eq!(next_in("30 2 * * *", "2026-03-07T12:00:00Z", "America/New_York"), "2026-03-09T06:30:00+00:00");
        // ...and falls back at 02:00 on 2026-11-01: 01:30 happens at 05:30 and 06:30 UTC.
        let first = next_in("30 1 * * *", "2026-11-01T04:00:00Z", "America/New_York");
        assert_eq!(first, "2026-11-01T05:30:00+00:00");
        assert_eq!(next_in("30 1 * * *", &first, "America/New_York"), "2026-11-01T06:30:00+00:00");
        // Midnight skipped by a jump (Santiago, 2026-09-06): the day starts at 01:00.
        assert_eq!(next_in("0 * * * *", "2026-09-06T03:30:00Z", "America/Santiago"), "2026-09-06T04:00:00+00:00");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let error = |s: &str| Schedule::parse(s).unwrap_err().to_string();
        assert!(error("* * * *").contains("found 4"), "{}", error("* * * *"));
        assert!(error("* * * * * *").contains("found 6"));
        assert!(error("@sometimes").contains("unknown macro \"@sometimes\""));
        assert!(error("TZ=UTC * * * * *").contains("spec.timeZone"));
        let e = error("61 * * * *");
        assert!(e.contains("minute field \"61\"") && e.contains("out of range (use 0-59)"), "{e}");
        let e = error("* * * FOO *");
        assert!(e.contains("month field") && e.contains("JAN-DEC"), "{e}");
        assert!(error("* * * * 7").contains("use 0-6 or SUN-SAT"));
        assert!(error("*/0 * * * *").contains("at least 1"));
        assert!(error("* 5-2 * * *").contains("runs backwards"));
        assert!(error("* * 0 * *").contains("day-of-month"));
        assert!(error("*/x * * * *").contains("step \"x\""));
    }

    #[test]
    fn time_zone_names() {
        assert_eq!(time_zone(None), Ok(Tz::UTC));
        assert_eq!(time_zone(Some("Europe/Berlin")), Ok(Tz::Europe__Berlin));
        let error = time_zone(Some("Mars/Olympus_Mons")).unwrap_err().to_string();
        assert!(error.contains("unknown time zone \"Mars/Olympus_Mons\""), "{error}");
    }
}
