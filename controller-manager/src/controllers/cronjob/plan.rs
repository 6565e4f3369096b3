//! What a CronJob should do now, as a pure function of the clock, its schedule and
//! what it has already done — Kubernetes' rules:
//!
//! - the schedule times counted are those after the last schedule time (or the
//!   CronJob's creation), and no older than startingDeadlineSeconds;
//! - of the times missed (a controller that was down, a Forbid that waited), only
//!   the most recent is started: no flood of Jobs after downtime; when more than
//!   100 were missed the caller says so in an Event;
//! - a time further back than startingDeadlineSeconds is a miss, never started;
//! - Forbid skips a start while a Job is active, Replace deletes the active ones;
//! - whatever happens, look again at the next schedule time.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use proto::cron::Schedule;

/// More missed start times than this earn a TooManyMissedTimes event.
pub const MANY_MISSED: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Allow,
    Forbid,
    Replace,
}

impl Policy {
    /// spec.concurrencyPolicy; the apiserver defaults "" to Allow and refuses others.
    pub fn from_spec(text: &str) -> Policy {
        match text {
            "Forbid" => Policy::Forbid,
            "Replace" => Policy::Replace,
            _ => Policy::Allow,
        }
    }
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct State<'a> {
    pub now: DateTime<Utc>,
    pub schedule: &'a Schedule,
    pub tz: Tz,
    pub created: DateTime<Utc>,
    pub last_schedule: Option<DateTime<Utc>>,
    pub starting_deadline_seconds: Option<i64>,
    pub policy: Policy,
    /// The names of the Jobs now active.
    pub active: &'a [String],
    /// The CronJob's name, which its Jobs' names start with.
    pub name: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No start time is due.
    Wait,
    /// The latest time is further back than startingDeadlineSeconds allows.
    Missed { scheduled: DateTime<Utc> },
    /// The due time's Job was started already.
    AlreadyStarted { scheduled: DateTime<Utc> },
    /// Forbid, and a Job is still active.
    Forbidden { scheduled: DateTime<Utc> },
    /// Start the Job `job` for `scheduled`, first deleting the active Jobs if `replace`.
    Start { scheduled: DateTime<Utc>, job: String, replace: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub decision: Decision,
    /// More than MANY_MISSED start times went by unstarted.
    pub too_many_missed: bool,
    /// When to look again: the next schedule time (None if it never comes).
    pub next: Option<DateTime<Utc>>,
}

/// Why there is no plan: the schedule never fires after the given time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the schedule has no time after {0}: check the day and month fields (February 30 never comes)")]
pub struct NeverFires(pub DateTime<Utc>);

/// The name of the Job for `scheduled`: the CronJob's name and the minutes since
/// the epoch, as Kubernetes names them (so a second start of one time collides).
pub fn job_name(cronjob: &str, scheduled: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", scheduled.timestamp().div_euclid(60))
}

pub fn plan(state: &State) -> Result<Plan, NeverFires> {
    let State { now, schedule, tz, .. } = *state;
    let since = state.last_schedule.unwrap_or(state.created);
    let earliest = match state.starting_deadline_seconds {
        Some(deadline) => since.max(now - Duration::seconds(deadline)),
        None => since,
    };
    // The next look: the first time after now (or after the earliest, if the
    // clock reads earlier than the CronJob's creation).
    let next = schedule.next(now.max(earliest), tz);
    let (due, missed) = most_recent_due(schedule, tz, earliest, now)?;
    let too_many_missed = missed > MANY_MISSED;
    let Some(scheduled) = due else {
        // A time that startingDeadlineSeconds ruled out is a miss worth telling.
        let decision = match most_recent_due(schedule, tz, since, now)? {
            (Some(scheduled), _) if earliest > since => Decision::Missed { scheduled },
            _ => Decision::Wait,
        };
        return Ok(Plan { decision, too_many_missed, next });
    };
    let job = job_name(state.name, scheduled);
    let decision = if state.active.contains(&job) || state.last_schedule == Some(scheduled) {
        Decision::AlreadyStarted { scheduled }
    } else if state.policy == Policy::Forbid && !state.active.is_empty() {
        Decision::Forbidden { scheduled }
    } else {
        Decision::Start { scheduled, job, replace: state.policy == Policy::Replace && !state.active.is_empty() }
    };
    Ok(Plan { decision, too_many_missed, next })
}

/// The most recent schedule time in (earliest, now], and how many there were
/// (counted exactly up to MANY_MISSED + 1).
fn most_recent_due(
    schedule: &Schedule,
    tz: Tz,
    earliest: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(Option<DateTime<Utc>>, usize), NeverFires> {
    let Some(first) = schedule.next(earliest, tz) else {
        return Err(NeverFires(earliest));
    };
    if first > now {
        return Ok((None, 0));
    }
    let (mut latest, mut count) = (first, 1);
    while count <= MANY_MISSED {
        match schedule.next(latest, tz) {
            Some(t) if t <= now => (latest, count) = (t, count + 1),
            _ => return Ok((Some(latest), count)),
        }
    }
    // Very many missed (a long downtime, a clock far off): rather than walk
    // every one, walk only a window before now, widening it until it holds one.
    let mut window = Duration::minutes(1);
    loop {
        let from = (now - window).max(latest);
        let mut found = None;
        let mut t = from;
        while let Some(next) = schedule.next(t, tz).filter(|n| *n <= now) {
            found = Some(next);
            t = next;
        }
        if let Some(found) = found {
            return Ok((Some(found), count));
        }
        if from == latest {
            return Ok((Some(latest), count));
        }
        window = window * 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    struct Case {
        schedule: Schedule,
        now: &'static str,
        created: &'static str,
        last: Option<&'static str>,
        deadline: Option<i64>,
        policy: Policy,
        active: Vec<String>,
    }

    fn case(schedule: &str, now: &'static str) -> Case {
        Case {
            schedule: Schedule::parse(schedule).unwrap(),
            now,
            created: "2026-12-03T06:00:30Z",
            last: None,
            deadline: None,
            policy: Policy::Allow,
            active: Vec::new(),
        }
    }

    impl Case {
        fn plan(&self) -> Plan {
            plan(&State {
                now: utc(self.now),
                schedule: &self.schedule,
                tz: Tz::UTC,
                created: utc(self.created),
                last_schedule: self.last.map(utc),
                starting_deadline_seconds: self.deadline,
                policy: self.policy,
                active: &self.active,
                name: "backup",
            })
            .unwrap()
        }
    }

    fn start(at: &str) -> Decision {
        let scheduled = utc(at);
        Decision::Start { scheduled, job: job_name("backup", scheduled), replace: false }
    }

    #[test]
    fn jobs_are_named_by_minutes_since_the_epoch() {
        assert_eq!(job_name("backup", utc("2026-12-03T06:31:00Z")), format!("backup-{}", 1_796_279_460 / 60));
        assert_eq!(job_name("backup", utc("1970-01-01T01:00:00Z")), "backup-60");
    }

    #[test]
    fn nothing_is_due_before_the_first_time() {
        let plan = case("* * * * *", "2026-12-03T06:00:50Z").plan();
        assert_eq!(plan.decision, Decision::Wait);
        assert_eq!(plan.next, Some(utc("2026-12-03T06:01:00Z")));
        assert!(!plan.too_many_missed);
    }

    #[test]
    fn a_due_time_starts_once_and_the_next_look_is_the_next_time() {
        let mut c = case("* * * * *", "2026-12-03T06:01:05Z");
        let plan = c.plan();
        assert_eq!(plan.decision, start("2026-12-03T06:01:00Z"));
        assert_eq!(plan.next, Some(utc("2026-12-03T06:02:00Z")));
        c.last = Some("2026-12-03T06:01:00Z");
        assert_eq!(c.plan().decision, Decision::Wait);
    }

    #[test]
    fn after_downtime_only_the_most_recent_missed_time_starts() {
        let mut c = case("*/5 * * * *", "2026-12-03T07:02:00Z");
        c.last = Some("2026-12-03T06:00:00Z");
        let plan = c.plan();
        assert_eq!(plan.decision, start("2026-12-03T07:00:00Z"));
        assert!(!plan.too_many_missed, "12 missed is not many");
        assert_eq!(plan.next, Some(utc("2026-12-03T07:05:00Z")));
    }

    #[test]
    fn more_than_a_hundred_missed_is_reported_and_still_only_one_starts() {
        let mut c = case("* * * * *", "2026-12-05T10:30:30Z");
        c.last = Some("2026-12-03T06:00:00Z");
        let plan = c.plan();
        assert!(plan.too_many_missed);
        assert_eq!(plan.decision, start("2026-12-05T10:30:00Z"));
        // Exactly 100 missed is not "more than 100".
        c.now = "2026-12-03T07:40:30Z";
        assert!(!c.plan().too_many_missed);
        c.now = "2026-12-03T07:41:30Z";
        assert!(c.plan().too_many_missed);
        // A sparse schedule long missed: the widening window still finds the latest.
        let mut c = case("0 9 * * MON", "2030-06-04T12:00:00Z");
        c.last = Some("2026-12-07T09:00:00Z");
        let plan = c.plan();
        assert!(plan.too_many_missed);
        assert_eq!(plan.decision, start("2030-06-03T09:00:00Z"));
    }

    #[test]
    fn starting_deadline_bounds_what_counts_and_older_times_are_misses() {
        // A long downtime with a deadline: nothing older counts, so no flood report.
        let mut c = case("* * * * *", "2026-12-05T10:30:30Z");
        c.last = Some("2026-12-03T06:00:00Z");
        c.deadline = Some(120);
        let plan = c.plan();
        assert!(!plan.too_many_missed);
        assert_eq!(plan.decision, start("2026-12-05T10:30:00Z"));
        // Hourly, 40 minutes late with a 10-minute deadline: missed, not started.
        let mut c = case("0 * * * *", "2026-12-03T07:40:00Z");
        c.last = Some("2026-12-03T06:00:00Z");
        c.deadline = Some(600);
        let plan = c.plan();
        assert_eq!(plan.decision, Decision::Missed { scheduled: utc("2026-12-03T07:00:00Z") });
        assert_eq!(plan.next, Some(utc("2026-12-03T08:00:00Z")));
        c.deadline = Some(3000);
        assert_eq!(c.plan().decision, start("2026-12-03T07:00:00Z"));
        // 45 s late: a 90 s deadline still starts it, a 40 s one does not.
        let mut c = case("0 * * * *", "2026-12-03T07:00:45Z");
        c.last = Some("2026-12-03T06:00:00Z");
        c.deadline = Some(90);
        assert_eq!(c.plan().decision, start("2026-12-03T07:00:00Z"));
        c.deadline = Some(40);
        assert_eq!(c.plan().decision, Decision::Missed { scheduled: utc("2026-12-03T07:00:00Z") });
        // A time already started is no miss.
        c.last = Some("2026-12-03T07:00:00Z");
        assert_eq!(c.plan().decision, Decision::Wait);
    }

    #[test]
    fn forbid_waits_for_the_active_job() {
        let mut c = case("* * * * *", "2026-12-03T06:02:05Z");
        c.last = Some("2026-12-03T06:01:00Z");
        c.policy = Policy::Forbid;
        c.active = vec![job_name("backup", utc("2026-12-03T06:01:00Z"))];
        let plan = c.plan();
        assert_eq!(plan.decision, Decision::Forbidden { scheduled: utc("2026-12-03T06:02:00Z") });
        assert_eq!(plan.next, Some(utc("2026-12-03T06:03:00Z")));
        // Once it finished, the time it held up starts at once.
        c.active.clear();
        assert_eq!(c.plan().decision, start("2026-12-03T06:02:00Z"));
    }

    #[test]
    fn replace_deletes_the_active_job_first() {
        let mut c = case("* * * * *", "2026-12-03T06:02:05Z");
        c.last = Some("2026-12-03T06:01:00Z");
        c.policy = Policy::Replace;
        c.active = vec![job_name("backup", utc("2026-12-03T06:01:00Z"))];
        let scheduled = utc("2026-12-03T06:02:00Z");
        assert_eq!(c.plan().decision, Decision::Start { scheduled, job: job_name("backup", scheduled), replace: true });
        c.policy = Policy::Allow;
        assert_eq!(c.plan().decision, start("2026-12-03T06:02:00Z"));
    }

    #[test]
    fn a_time_whose_job_is_active_is_not_started_again() {
        let mut c = case("* * * * *", "2026-12-03T06:01:05Z");
        c.active = vec![job_name("backup", utc("2026-12-03T06:01:00Z"))];
        assert_eq!(c.plan().decision, Decision::AlreadyStarted { scheduled: utc("2026-12-03T06:01:00Z") });
    }

    #[test]
    fn a_clock_behind_the_creation_waits_for_the_first_time_after_it() {
        let c = case("* * * * *", "2026-12-03T05:00:00Z");
        let plan = c.plan();
        assert_eq!(plan.decision, Decision::Wait);
        assert_eq!(plan.next, Some(utc("2026-12-03T06:01:00Z")));
    }

    #[test]
    fn a_schedule_that_never_fires_is_an_error() {
        let schedule = Schedule::parse("0 0 31 2 *").unwrap();
        let state = State {
            now: utc("2026-12-03T06:00:00Z"),
            schedule: &schedule,
            tz: Tz::UTC,
            created: utc("2026-12-03T05:00:00Z"),
            last_schedule: None,
            starting_deadline_seconds: None,
            policy: Policy::Allow,
            active: &[],
            name: "x",
        };
        assert!(plan(&state).unwrap_err().to_string().contains("February 30"));
    }

    #[test]
    fn time_zones_apply_to_due_times() {
        let schedule = Schedule::parse("0 9 * * *").unwrap();
        let state = State {
            now: utc("2026-12-03T08:00:30Z"),
            schedule: &schedule,
            tz: "Europe/Berlin".parse().unwrap(),
            created: utc("2026-12-02T12:00:00Z"),
            last_schedule: None,
            starting_deadline_seconds: None,
            policy: Policy::Allow,
            active: &[],
            name: "x",
        };
        let scheduled = utc("2026-12-03T08:00:00Z");
        assert_eq!(
            plan(&state).unwrap().decision,
            Decision::Start { scheduled, job: job_name("x", scheduled), replace: false }
        );
    }
}
