//! A write fence: the time until which a client may still change the cluster.
//!
//! A leader that was frozen (SIGSTOP, a long GC pause, a stalled VM) wakes up with
//! timers and queued watch events that all fire at once, while its lease has long
//! been taken over. Stopping its loops races with those tasks; the fence does not:
//! every create, update, patch, delete and binding through a fenced client checks
//! the fence first, and the leader elector only ever extends it to the renew
//! deadline of a renewal it actually made. A write already on the wire when the
//! process froze still lands (as in Kubernetes; only the apiserver could stop it).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use proto::{ApiError, Reason};

#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// None: closed (not leading).
    open_until: Arc<Mutex<Option<Instant>>>,
}

impl Fence {
    /// A fence that is closed until `open_until` is called.
    pub fn closed() -> Self {
        Fence::default()
    }

    /// Allows writes until `deadline`.
    pub fn open_until(&self, deadline: Instant) {
        *self.lock() = Some(deadline);
    }

    pub fn close(&self) {
        *self.lock() = None;
    }

    /// Ok while writes are allowed.
    pub fn check(&self) -> Result<(), ApiError> {
        match *self.lock() {
            Some(deadline) if Instant::now() < deadline => Ok(()),
            Some(_) => Err(ApiError::new(
                Reason::ServiceUnavailable,
                "not writing: this process's leader lease was not renewed within its renew deadline (it may have been paused); it acts again once it wins the lease",
            )),
            None => Err(ApiError::new(
                Reason::ServiceUnavailable,
                "not writing: this process does not hold the leader lease",
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The guarded value is a plain Option<Instant>: a panic elsewhere cannot
        // leave it half-written, so a poisoned lock is still sound to use.
        self.open_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn writes_pass_only_while_the_fence_is_open() {
        let fence = Fence::closed();
        assert!(fence.check().is_err());
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.check().is_ok());
        let clone = fence.clone();
        clone.open_until(Instant::now() - Duration::from_millis(1));
        let expired = fence.check().expect_err("a passed deadline closes the fence for every clone");
        assert!(expired.to_string().contains("renew deadline"), "{expired}");
        fence.open_until(Instant::now() + Duration::from_secs(60));
        fence.close();
        assert!(clone.check().is_err());
    }
}
