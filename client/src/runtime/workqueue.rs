//! The work queue between event handlers and a controller's workers, with
//! client-go's guarantees: a key waiting once is processed once however often it
//! was added; no key is processed by two workers at once; a key added while it is
//! being processed is processed again after `done`; failures back off per key,
//! exponentially, and are retried for ever.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::Resource;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::store::{ObjectKey, Store};

/// Per-key retry delays: `base` doubling per failure up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// client-go's defaults: 5 ms doubling to 1000 s.
    fn default() -> Self {
        RetryPolicy { base: Duration::from_millis(5), max: Duration::from_secs(1000) }
    }
}

impl RetryPolicy {
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }
}

struct State<T> {
    queue: VecDeque<T>,
    /// Keys waiting to be processed (in `queue`, or to be requeued after `done`).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

/// A de-duplicating work queue. Cloning shares it.
pub struct WorkQueue<T> {
    state: Arc<Mutex<State<T>>>,
    ready: Arc<Notify>,
    policy: RetryPolicy,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue { state: self.state.clone(), ready: self.ready.clone(), policy: self.policy }
    }
}

impl<T: Hash + Eq + Clone + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl<T: Hash + Eq + Clone + Send + 'static> WorkQueue<T> {
    pub fn new(policy: RetryPolicy) -> Self {
        WorkQueue {
            state: Arc::new(Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
                shut_down: false,
            })),
            ready: Arc::new(Notify::new()),
            policy,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, key: T) {
        let mut state = self.lock();
        if state.shut_down || !state.dirty.insert(key.clone()) {
            return;
        }
        if state.processing.contains(&key) {
            // `done` requeues it.
            return;
        }
        state.queue.push_back(key);
        drop(state);
        self.ready.notify_one();
    }

    /// Adds `key` after `delay`.
    pub fn add_after(&self, key: T, delay: Duration) {
        if delay.is_zero() {
            self.add(key);
            return;
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Adds `key` after its failure backoff, counting one more failure.
    pub fn add_rate_limited(&self, key: T) {
        let failures = {
            let mut state = self.lock();
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures = failures.saturating_add(1);
            *failures
        };
        self.add_after(key, self.policy.delay(failures));
    }

    /// Clears `key`'s failure count: its next failure backs off from the start.
    pub fn forget(&self, key: &T) {
        self.lock().failures.remove(key);
    }

    pub fn failures(&self, key: &T) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, waiting for one; None once shut down. Call `done`
    /// with it afterwards.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(key) = state.queue.pop_front() {
                    state.dirty.remove(&key);
                    state.processing.insert(key.clone());
                    let more = !state.queue.is_empty();
                    drop(state);
                    if more {
                        // Wake another worker for the rest.
                        self.ready.notify_one();
                    }
                    return Some(key);
                }
                if state.shut_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was added meanwhile it is queued again.
    pub fn done(&self, key: &T) {
        let mut state = self.lock();
        state.processing.remove(key);
        if state.dirty.contains(key) && !state.shut_down {
            state.queue.push_back(key.clone());
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Keys waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys: every waiting `get` returns None.
    pub fn shut_down(&self) {
        self.lock().shut_down = true;
        self.ready.notify_waiters();
    }

    pub fn is_shut_down(&self) -> bool {
        self.lock().shut_down
    }
}

/// Periodic resync, as client-go's: every `period`, adds the key of every object
/// in `store` to `queue`, so a level-triggered controller re-checks objects whose
/// world changed outside the API (a process it started, a clock it waits on).
/// Stops when the queue shuts down or the returned task is aborted.
pub fn spawn_resync<K: Resource>(store: Store<K>, queue: WorkQueue<ObjectKey>, period: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if queue.is_shut_down() {
                return;
            }
            for key in store.keys() {
                queue.add(key);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn keys_are_deduplicated_while_waiting() {
        let queue = WorkQueue::default();
        for _ in 0..5 {
            queue.add("a");
        }
        queue.add("b");
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.get().await, Some("a"));
        assert_eq!(queue.get().await, Some("b"));
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done_and_not_before() {
        let queue = WorkQueue::default();
        queue.add("a");
        let key = queue.get().await.unwrap();
        queue.add("a");
        queue.add("a");
        assert_eq!(queue.len(), 0, "not handed to a second worker while being processed");
        queue.done(&key);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.get().await, Some("a"));
        queue.done(&"a");
        assert!(queue.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_workers_never_hold_the_same_key() {
        let queue: WorkQueue<u32> = WorkQueue::default();
        let busy: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let processed = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (queue, busy, processed) = (queue.clone(), busy.clone(), processed.clone());
            workers.push(tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    assert!(busy.lock().unwrap().insert(key), "key {key} held by two workers");
                    tokio::task::yield_now().await;
                    busy.lock().unwrap().remove(&key);
                    processed.fetch_add(1, Ordering::SeqCst);
                    queue.done(&key);
                }
            }));
        }
        for round in 0..200u32 {
            queue.add(round % 7);
            if round % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while !queue.is_empty() || !queue.lock().processing.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        queue.shut_down();
        for worker in workers {
            worker.await.unwrap();
        }
        let n = processed.load(Ordering::SeqCst);
        assert!((7..=200).contains(&n), "every key processed at least once, duplicates merged: {n}");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_forget_resets() {
        let policy = RetryPolicy { base: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(policy.delay(1), Duration::from_millis(100));
        assert_eq!(policy.delay(3), Duration::from_millis(400));
        assert_eq!(policy.delay(30), Duration::from_secs(1), "capped");
        let queue = WorkQueue::new(policy);
        queue.add_rate_limited("a");
        queue.add_rate_limited("a");
        assert_eq!(queue.failures(&"a"), 2);
        assert!(queue.is_empty(), "not before its delay");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(queue.get().await, Some("a"));
        queue.forget(&"a");
        assert_eq!(queue.failures(&"a"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn resync_re_adds_every_cached_key_each_period_until_shutdown() {
        use proto::core::v1::ConfigMap;
        use proto::meta::v1::ObjectMeta;
        let store = Store::<ConfigMap>::new();
        for name in ["x", "y"] {
            let meta = ObjectMeta { namespace: "a".into(), name: name.into(), ..Default::default() };
            store.insert(Arc::new(ConfigMap { metadata: Some(meta), ..Default::default() }));
        }
        let queue: WorkQueue<ObjectKey> = WorkQueue::default();
        let task = spawn_resync(store, queue.clone(), Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(queue.is_empty(), "nothing before the first period");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut keys = vec![queue.get().await.unwrap(), queue.get().await.unwrap()];
        keys.sort();
        assert_eq!(keys, ["a/x", "a/y"]);
        for key in &keys {
            queue.done(key);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(queue.len(), 2, "again after the next period");
        queue.shut_down();
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(task.is_finished(), "the resync stops with its queue");
    }

    #[tokio::test]
    async fn shutting_down_releases_waiting_workers() {
        let queue: WorkQueue<&str> = WorkQueue::default();
        let waiter = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.get().await })
        };
        tokio::task::yield_now().await;
        queue.shut_down();
        assert_eq!(waiter.await.unwrap(), None);
        queue.add("late");
        assert_eq!(queue.get().await, None, "nothing is accepted after shutdown");
    }
}
