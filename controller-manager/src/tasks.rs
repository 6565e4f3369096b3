//! Tasks a controller spawns, stopped together: when a controller's `run` future
//! is dropped (leadership lost, shutdown), everything it started stops with it.

use std::future::Future;

use client::runtime::WorkQueue;
use proto::ApiError;
use tokio::task::JoinHandle;

pub struct AbortOnDrop(pub Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// `workers` (at least one) tasks that take keys from `queue` and `sync` each: a
/// key that synced is forgotten, one that failed comes back with backoff. `what`
/// names the controller in the log.
pub fn spawn_workers<F, Fut>(
    queue: &WorkQueue<String>,
    workers: usize,
    what: &'static str,
    sync: F,
) -> Vec<JoinHandle<()>>
where
    F: Fn(String) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), ApiError>> + Send,
{
    (0..workers.max(1))
        .map(|_| {
            let (queue, sync) = (queue.clone(), sync.clone());
            tokio::spawn(async move {
                while let Some(key) = queue.get().await {
                    match sync(key.clone()).await {
                        Ok(()) => queue.forget(&key),
                        Err(e) => {
                            tracing::warn!(controller = what, key, error = %e, "sync failed; retrying");
                            queue.add_rate_limited(key.clone());
                        }
                    }
                    queue.done(&key);
                }
            })
        })
        .collect()
}
