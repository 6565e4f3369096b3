//! The scheduling queue: pending pods in three sub-queues, as in Kubernetes.
//!
//! - *active*: ready to be tried, highest priority first, then oldest;
//! - *backoff*: failed recently, waiting out an exponential backoff (1 s doubling
//!   to 10 s) before they return to active;
//! - *unschedulable*: fit nowhere; they stay until something that could help
//!   happens (`move_all`: a node added or changed, a pod deleted, a claim bound).
//!
//! A pod is in the queue at most once. A pod being scheduled is "in flight": if a
//! helpful event arrives meanwhile, a failure sends it to backoff rather than to
//! unschedulable, so the event is not missed.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::Resource as _;
use proto::core::v1::Pod;
use tokio::sync::Notify;

use crate::cache::priority_of;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The backoff after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Active,
    Backoff,
    Unschedulable,
    /// Being scheduled; `cycle` is the move cycle when it was taken.
    InFlight {
        cycle: u64,
        updated: bool,
    },
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    state: State,
    attempts: u32,
    /// When the last attempt failed, for the backoff.
    failed_at: Option<Instant>,
    /// When the queue first handed the pod out, for the end-to-end latency.
    first_attempt: Option<Instant>,
    /// Bumped whenever the entry is (re)inserted into the active heap, so stale
    /// heap items are recognised and skipped.
    generation: u64,
    seq: u64,
}

/// A heap item: priority, then creation time, then arrival order.
#[derive(Debug, PartialEq, Eq)]
struct Ranked {
    priority: i32,
    created: (i64, i32),
    seq: u64,
    generation: u64,
    key: String,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap pops the greatest: higher priority, then older, then earlier.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.created.cmp(&self.created))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<Ranked>,
    move_cycle: u64,
    next_seq: u64,
    next_generation: u64,
}

impl Inner {
    fn activate(&mut self, key: &str) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let Some(entry) = self.entries.get_mut(key) else { return };
        entry.state = State::Active;
        entry.generation = generation;
        let created = entry.pod.metadata().creation_timestamp.as_ref().map_or((0, 0), |t| (t.seconds, t.nanos));
        self.active.push(Ranked {
            priority: priority_of(&entry.pod),
            created,
            seq: entry.seq,
            generation,
            key: key.to_string(),
        });
    }

    /// Backoff or active, depending on whether the backoff has passed.
    fn release(&mut self, key: &str, now: Instant) {
        let Some(entry) = self.entries.get_mut(key) else { return };
        let waiting = entry.failed_at.is_some_and(|at| at + backoff(entry.attempts) > now);
        if waiting {
            entry.state = State::Backoff;
        } else {
            self.activate(key);
        }
    }
}

/// A pod handed out for scheduling.
#[derive(Debug, Clone)]
pub struct Queued {
    pub key: String,
    pub pod: Arc<Pod>,
    pub attempts: u32,
    pub first_attempt: Instant,
}

/// How many pods each sub-queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lengths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

#[derive(Default)]
pub struct SchedulingQueue {
    inner: Mutex<Inner>,
    ready: Notify,
}

impl SchedulingQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(SchedulingQueue::default())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A pending pod appeared or changed. A changed unschedulable pod is tried
    /// again (its change may be what makes it fit).
    pub fn add_or_update(&self, key: &str, pod: Arc<Pod>) {
        let mut inner = self.lock();
        let seq = inner.next_seq;
        let now = Instant::now();
        match inner.entries.get_mut(key) {
            Some(entry) => {
                let changed = entry.pod.spec != pod.spec || entry.pod.metadata().labels != pod.metadata().labels;
                entry.pod = pod;
                match entry.state {
                    State::Unschedulable if changed => inner.release(key, now),
                    State::InFlight { cycle, .. } if changed => {
                        entry.state = State::InFlight { cycle, updated: true };
                        return;
                    }
                    State::Active if changed => inner.activate(key),
                    _ => return,
                }
            }
            None => {
                inner.entries.insert(
                    key.to_string(),
                    Entry {
                        pod,
                        state: State::Active,
                        attempts: 0,
                        failed_at: None,
                        first_attempt: None,
                        generation: 0,
                        seq,
                    },
                );
                inner.next_seq += 1;
                inner.activate(key);
            }
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// The pod was deleted or bound: it leaves the queue.
    pub fn remove(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    /// The next pod to schedule; waits while none is active.
    pub async fn pop(&self) -> Queued {
        loop {
            let notified = self.ready.notified();
            if let Some(queued) = self.try_pop() {
                return queued;
            }
            notified.await;
        }
    }

    pub fn try_pop(&self) -> Option<Queued> {
        let mut inner = self.lock();
        let cycle = inner.move_cycle;
        while let Some(ranked) = inner.active.pop() {
            let Some(entry) = inner.entries.get_mut(&ranked.key) else { continue };
            if entry.state != State::Active || entry.generation != ranked.generation {
                continue;
            }
            entry.state = State::InFlight { cycle, updated: false };
            let first_attempt = *entry.first_attempt.get_or_insert_with(Instant::now);
            return Some(Queued { key: ranked.key, pod: entry.pod.clone(), attempts: entry.attempts, first_attempt });
        }
        None
    }

    /// The pod fits nowhere now: it waits for a helpful event (or, if one came
    /// while it was in flight, for its backoff).
    pub fn unschedulable(&self, key: &str) {
        let mut inner = self.lock();
        let move_cycle = inner.move_cycle;
        let Some(entry) = inner.entries.get_mut(key) else { return };
        let State::InFlight { cycle, updated } = entry.state else { return };
        entry.attempts += 1;
        entry.failed_at = Some(Instant::now());
        entry.state = if updated || move_cycle > cycle { State::Backoff } else { State::Unschedulable };
    }

    /// Scheduling failed for a reason worth retrying soon (an error, a failed
    /// binding): back off, then try again.
    pub fn retry(&self, key: &str) {
        let mut inner = self.lock();
        let Some(entry) = inner.entries.get_mut(key) else { return };
        entry.attempts += 1;
        entry.failed_at = Some(Instant::now());
        entry.state = State::Backoff;
    }

    /// Something changed that may let unschedulable pods fit: all of them go back
    /// to active (or to backoff while their backoff lasts).
    pub fn move_all(&self) {
        let mut inner = self.lock();
        inner.move_cycle += 1;
        let now = Instant::now();
        let waiting: Vec<String> =
            inner.entries.iter().filter(|(_, e)| e.state == State::Unschedulable).map(|(k, _)| k.clone()).collect();
        let any = !waiting.is_empty();
        for key in waiting {
            inner.release(&key, now);
        }
        drop(inner);
        if any {
            self.ready.notify_one();
        }
    }

    /// Moves pods whose backoff has passed to active; returns when the next one's
    /// backoff ends, if any waits.
    pub fn flush_backoff(&self) -> Option<Instant> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (key, entry) in &inner.entries {
            if entry.state != State::Backoff {
                continue;
            }
            let until = entry.failed_at.map_or(now, |at| at + backoff(entry.attempts));
            if until <= now {
                due.push(key.clone());
            } else {
                next = Some(next.map_or(until, |n| n.min(until)));
            }
        }
        let any = !due.is_empty();
        for key in due {
            inner.activate(&key);
        }
        drop(inner);
        if any {
            self.ready.notify_one();
        }
        next
    }

    /// Runs `flush_backoff` whenever a backoff ends (checked at least every second).
    pub async fn run_backoff_flusher(self: Arc<Self>) {
        loop {
            let next = self.flush_backoff();
            let wait = next.map_or(Duration::from_secs(1), |at| at.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait.clamp(Duration::from_millis(10), Duration::from_secs(1))).await;
        }
    }

    pub fn lengths(&self) -> Lengths {
        let inner = self.lock();
        let mut lengths = Lengths::default();
        for entry in inner.entries.values() {
            match entry.state {
                State::Active => lengths.active += 1,
                State::Backoff => lengths.backoff += 1,
                State::Unschedulable => lengths.unschedulable += 1,
                State::InFlight { .. } => lengths.in_flight += 1,
            }
        }
        lengths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::core::v1::PodSpec;
    use proto::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, priority: i32, created: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: Some(ObjectMeta {
                name: name.into(),
                namespace: "default".into(),
                creation_timestamp: Some(Time { seconds: created, nanos: 0 }),
                ..Default::default()
            }),
            spec: Some(PodSpec { priority: Some(priority), ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn pods_come_out_by_priority_then_age() {
        let queue = SchedulingQueue::new();
        queue.add_or_update("default/young", pod("young", 0, 20));
        queue.add_or_update("default/old", pod("old", 0, 10));
        queue.add_or_update("default/important", pod("important", 100, 30));
        let order: Vec<String> = std::iter::from_fn(|| queue.try_pop()).map(|q| q.key).collect();
        assert_eq!(order, ["default/important", "default/old", "default/young"]);
    }

    #[test]
    fn an_unschedulable_pod_waits_for_an_event_not_for_time() {
        let queue = SchedulingQueue::new();
        queue.add_or_update("default/p", pod("p", 0, 1));
        let popped = queue.try_pop().unwrap();
        queue.unschedulable(&popped.key);
        assert_eq!(queue.lengths().unschedulable, 1);
        assert!(queue.flush_backoff().is_none());
        assert!(queue.try_pop().is_none());
        queue.move_all();
        // Its 1 s backoff has not passed: it waits in backoff, then comes back.
        assert_eq!(queue.lengths().backoff, 1);
        assert!(queue.try_pop().is_none());
    }

    #[test]
    fn an_event_during_the_attempt_is_not_lost() {
        let queue = SchedulingQueue::new();
        queue.add_or_update("default/p", pod("p", 0, 1));
        let popped = queue.try_pop().unwrap();
        queue.move_all(); // e.g. a node was added while we were deciding
        queue.unschedulable(&popped.key);
        assert_eq!(queue.lengths().backoff, 1, "goes to backoff, not unschedulable");
    }

    #[test]
    fn a_pod_is_queued_once_and_leaves_when_removed() {
        let queue = SchedulingQueue::new();
        queue.add_or_update("default/p", pod("p", 0, 1));
        queue.add_or_update("default/p", pod("p", 0, 1));
        assert_eq!(queue.lengths().active, 1);
        assert!(queue.try_pop().is_some());
        assert!(queue.try_pop().is_none());
        queue.remove("default/p");
        queue.add_or_update("default/q", pod("q", 0, 1));
        queue.remove("default/q");
        assert!(queue.try_pop().is_none());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(9), MAX_BACKOFF);
    }
}
