//! Crash-loop restart back-off of one pod's containers: 10 s after the second exit,
//! doubling to 5 min, back to none once a run lasted 10 min (the first restart is
//! immediate, as in Kubernetes). The delays are kept in `<root-dir>/pods/<uid>/backoff.json`
//! beside the pod's other kubelet state, so a restarted kubelet neither forgets a
//! crash-looping container's back-off nor restarts it at once; the file goes with the
//! pod's directory when the pod is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runtime::launch::{read_json, write_json};

pub const START: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The file name inside the pod's state directory.
pub const FILE: &str = "backoff.json";

/// What to do with an exited container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not before `until` (unix seconds); `delay` is the back-off being served.
    Wait { delay: Duration, until: i64 },
    /// Start it now; the restart after this one waits `next`.
    Restart { next: Duration },
}

/// The back-off after one served (or skipped) delay: 10 s first, then doubling, at most 5 min.
pub fn next_delay(current: Duration) -> Duration {
    if current.is_zero() { START } else { (current * 2).min(MAX) }
}

/// Decides for a container whose latest run started at `started_at` and ended at
/// `finished_at` (unix seconds), with `delay` the back-off recorded for it.
pub fn decide(delay: Duration, started_at: Option<i64>, finished_at: i64, now: i64) -> Decision {
    let ran_long = started_at.is_some_and(|s| finished_at - s >= RESET_AFTER.as_secs() as i64);
    let delay = if ran_long { Duration::ZERO } else { delay };
    let until = finished_at + delay.as_secs() as i64;
    if now < until { Decision::Wait { delay, until } } else { Decision::Restart { next: next_delay(delay) } }
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Stored {
    /// Container name -> the back-off its next restart waits, in seconds.
    delays: BTreeMap<String, u64>,
}

/// The recorded back-off of every container of one pod.
#[derive(Debug)]
pub struct RestartBackoff {
    path: PathBuf,
    stored: Stored,
}

impl RestartBackoff {
    /// Reads the pod's record in `pod_dir`; none yet (or an unreadable one, which is
    /// logged) means no back-off.
    pub fn load(pod_dir: &Path) -> RestartBackoff {
        let path = pod_dir.join(FILE);
        let stored = match read_json::<Stored>(&path) {
            Ok(stored) => stored,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable restart back-off record");
                Stored::default()
            }
        };
        RestartBackoff { path, stored }
    }

    /// The back-off the container's next restart waits.
    pub fn delay(&self, container: &str) -> Duration {
        Duration::from_secs(self.stored.delays.get(container).copied().unwrap_or(0))
    }

    /// Records the container's next back-off, on disk before it returns (an unchanged
    /// value is not written again).
    pub fn set(&mut self, container: &str, delay: Duration) -> std::io::Result<()> {
        if self.stored.delays.get(container) == Some(&delay.as_secs()) {
            return Ok(());
        }
        self.stored.delays.insert(container.to_string(), delay.as_secs());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_json(&self.path, &self.stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_ten_seconds_to_five_minutes() {
        let mut delay = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..8 {
            delay = next_delay(delay);
            seen.push(delay.as_secs());
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn a_container_waits_out_its_back_off_from_its_exit() {
        let delay = Duration::from_secs(20);
        assert_eq!(
            decide(delay, Some(1000), 1001, 1010),
            Decision::Wait { delay, until: 1021 },
            "still inside the back-off"
        );
        assert_eq!(decide(delay, Some(1000), 1001, 1021), Decision::Restart { next: Duration::from_secs(40) });
        // The first exit restarts at once and starts the back-off.
        assert_eq!(decide(Duration::ZERO, Some(1000), 1001, 1001), Decision::Restart { next: START });
        // A container that never started (no start time) still backs off.
        assert_eq!(decide(delay, None, 1001, 1002), Decision::Wait { delay, until: 1021 });
    }

    #[test]
    fn ten_minutes_of_running_resets_the_back_off() {
        let long = decide(MAX, Some(0), 600, 600);
        assert_eq!(long, Decision::Restart { next: START });
        let short = decide(MAX, Some(0), 599, 600);
        assert_eq!(short, Decision::Wait { delay: MAX, until: 899 });
    }

    #[test]
    fn the_record_survives_a_reload_and_a_corrupt_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod-uid");
        let mut backoff = RestartBackoff::load(&pod_dir);
        assert_eq!(backoff.delay("app"), Duration::ZERO);
        backoff.set("app", Duration::from_secs(40)).unwrap();
        backoff.set("init", START).unwrap();

        let again = RestartBackoff::load(&pod_dir);
        assert_eq!(again.delay("app"), Duration::from_secs(40));
        assert_eq!(again.delay("init"), START);
        assert_eq!(again.delay("other"), Duration::ZERO);

        std::fs::write(pod_dir.join(FILE), b"{not json").unwrap();
        let corrupt = RestartBackoff::load(&pod_dir);
        assert_eq!(corrupt.delay("app"), Duration::ZERO);
    }
}
