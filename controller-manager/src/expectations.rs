//! Expectations: what a controller has asked the apiserver to do and not yet seen
//! in its informers. A ReplicaSet that just created two pods does not count pods
//! again until both creations have been observed (or a timeout passes), so a burst
//! of watch events never makes it create or delete twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, unobserved expectations are assumed lost (a watch event that
/// never came) and the controller counts afresh, as Kubernetes does.
const TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Pending {
    adds: i64,
    deletes: i64,
    set_at: Instant,
}

#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `adds` creations and `deletes` deletions are in flight for `key`.
    pub fn expect(&self, key: &str, adds: i64, deletes: i64) {
        self.lock().insert(key.to_string(), Pending { adds, deletes, set_at: Instant::now() });
    }

    /// A creation for `key` was observed (or failed, so will never be).
    pub fn created(&self, key: &str) {
        if let Some(p) = self.lock().get_mut(key) {
            p.adds -= 1;
        }
    }

    /// A deletion for `key` was observed (or failed).
    pub fn deleted(&self, key: &str) {
        if let Some(p) = self.lock().get_mut(key) {
            p.deletes -= 1;
        }
    }

    /// Everything asked for has been observed (or has expired): the caches can be
    /// trusted to count from.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.deletes <= 0) || p.set_at.elapsed() > TTL,
        }
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_expected_change_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("a"), "nothing expected");
        e.expect("a", 2, 1);
        assert!(!e.satisfied("a"));
        e.created("a");
        e.deleted("a");
        assert!(!e.satisfied("a"));
        e.created("a");
        assert!(e.satisfied("a"));
        e.created("a");
        assert!(e.satisfied("a"), "extra observations do not unsatisfy");
        e.expect("a", 1, 0);
        e.forget("a");
        assert!(e.satisfied("a"));
    }
}
