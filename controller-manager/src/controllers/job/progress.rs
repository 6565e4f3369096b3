//! What a Job's pods add up to and what the Job must do next, as pure functions
//! of its spec, its pods' counts and the time: create or delete pods toward
//! `parallelism`, finish as Complete once `completions` pods succeeded, or as
//! Failed past `backoffLimit` failures or `activeDeadlineSeconds`.

use std::time::Duration;

use proto::batch::v1::JobSpec;

/// The Job's pods, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Neither finished nor being deleted.
    pub active: i32,
    pub ready: i32,
    pub succeeded: i32,
    /// Failed pods, plus container restarts of OnFailure pods (each is a retry).
    pub failed: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep going: this many pods to create (positive) or delete (negative).
    Run(i32),
    Complete,
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// Decides the Job's next step. `running_for` is the time since status.startTime.
pub fn next(spec: &JobSpec, counts: Counts, running_for: Duration) -> Next {
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    if counts.failed > backoff_limit {
        return Next::Failed {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit".into(),
        };
    }
    if let Some(deadline) = spec.active_deadline_seconds
        && running_for >= Duration::from_secs(deadline.unsigned_abs())
        && spec.suspend != Some(true)
    {
        return Next::Failed {
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline".into(),
        };
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let wanted = match spec.completions {
        _ if spec.suspend == Some(true) => 0,
        Some(completions) => {
            if counts.succeeded >= completions {
                return Next::Complete;
            }
            parallelism.min(completions - counts.succeeded)
        }
        // A work queue: done when one pod succeeded and the others have finished.
        None if counts.succeeded > 0 => {
            if counts.active == 0 {
                return Next::Complete;
            }
            counts.active
        }
        None => parallelism,
    };
    Next::Run(wanted - counts.active)
}

/// The pause before replacing a failed pod: `base` doubling per failure, capped
/// at `max` (Kubernetes: 10 s doubling to 6 min).
pub fn retry_delay(base: Duration, max: Duration, failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - 1).unwrap_or(0).min(31);
    base.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(completions: Option<i32>, parallelism: i32, backoff: i32) -> JobSpec {
        JobSpec { completions, parallelism: Some(parallelism), backoff_limit: Some(backoff), ..Default::default() }
    }

    fn counts(active: i32, succeeded: i32, failed: i32) -> Counts {
        Counts { active, ready: 0, succeeded, failed }
    }

    #[test]
    fn pods_run_up_to_parallelism_and_no_more_than_completions_need() {
        let s = spec(Some(5), 2, 6);
        assert_eq!(next(&s, counts(0, 0, 0), Duration::ZERO), Next::Run(2));
        assert_eq!(next(&s, counts(1, 3, 0), Duration::ZERO), Next::Run(1));
        assert_eq!(next(&s, counts(2, 4, 0), Duration::ZERO), Next::Run(-1), "only one more completion needed");
        assert_eq!(next(&s, counts(0, 5, 1), Duration::ZERO), Next::Complete);
        let queue = spec(None, 3, 6);
        assert_eq!(next(&queue, counts(0, 0, 0), Duration::ZERO), Next::Run(3));
        assert_eq!(next(&queue, counts(2, 1, 0), Duration::ZERO), Next::Run(0), "let the others finish");
        assert_eq!(next(&queue, counts(0, 1, 0), Duration::ZERO), Next::Complete);
    }

    #[test]
    fn failures_past_the_limit_or_the_deadline_fail_the_job() {
        let s = spec(Some(5), 2, 1);
        assert_eq!(next(&s, counts(2, 0, 1), Duration::ZERO), Next::Run(0), "one failure is within the limit");
        assert!(matches!(
            next(&s, counts(1, 0, 2), Duration::ZERO),
            Next::Failed { reason: "BackoffLimitExceeded", .. }
        ));
        let deadline = JobSpec { active_deadline_seconds: Some(10), ..spec(Some(1), 1, 6) };
        assert_eq!(next(&deadline, counts(1, 0, 0), Duration::from_secs(9)), Next::Run(0));
        assert!(matches!(
            next(&deadline, counts(1, 0, 0), Duration::from_secs(10)),
            Next::Failed { reason: "DeadlineExceeded", .. }
        ));
        let suspended = JobSpec { suspend: Some(true), ..spec(Some(3), 2, 6) };
        assert_eq!(next(&suspended, counts(2, 0, 0), Duration::ZERO), Next::Run(-2));
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
        assert_eq!(retry_delay(base, max, 0), Duration::ZERO);
        assert_eq!(retry_delay(base, max, 1), Duration::from_secs(10));
        assert_eq!(retry_delay(base, max, 3), Duration::from_secs(40));
        assert_eq!(retry_delay(base, max, 7), max);
        assert_eq!(retry_delay(base, max, 1000), max);
    }
}
