//! Running a proxier's syncs: one after any change, at most one per min-sync-interval
//! (a burst of changes becomes one sync), one every sync-period even without changes
//! (to repair what someone else changed), and a retry after a failure. Also the
//! health and metrics of those syncs, for `/healthz`, `/readyz` and `/metrics`.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::model::Snapshot;

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Rules and elements (nftables) or listeners (userspace) now programmed.
    pub rules: usize,
    /// Whether everything was rewritten rather than only what changed.
    pub full: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Nft(#[from] crate::nftables::nft::NftError),
    #[error("{0}")]
    Userspace(String),
}

/// A way of making Services work: nftables rules, or userspace forwarding.
#[async_trait::async_trait]
pub trait Proxier: Send {
    /// Makes the node proxy exactly `snapshot`.
    async fn sync(&mut self, snapshot: &Snapshot) -> Result<SyncReport, SyncError>;
}

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min_sync_interval: Duration,
    pub sync_period: Duration,
}

struct LastSync {
    at: Instant,
    wall: SystemTime,
}

/// Health and metrics of the syncs; shared with the ops endpoint.
pub struct SyncHealth {
    started: Instant,
    stale_after: Duration,
    last_success: Mutex<Option<LastSync>>,
    last_error: Mutex<Option<String>>,
    registry: Registry,
    durations: Histogram,
    rules: Gauge,
    failures: Counter,
    full_syncs: Counter,
    last_success_seconds: Gauge,
}

impl SyncHealth {
    /// Healthy while a sync has succeeded within `stale_after` (or the process is
    /// younger than that).
    pub fn new(stale_after: Duration) -> SyncHealth {
        let mut registry = Registry::with_prefix("kubeproxy");
        // 1 ms to about 16 s.
        let durations = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let (rules, failures, full_syncs, last_success_seconds) =
            (Gauge::default(), Counter::default(), Counter::default(), Gauge::default());
        registry.register(
            "sync_proxy_rules_duration_seconds",
            "How long a sync of the proxy rules took",
            durations.clone(),
        );
        registry.register(
            "sync_proxy_rules_count",
            "Rules and set elements (nftables) or listeners (userspace) programmed",
            rules.clone(),
        );
        registry.register("sync_proxy_rules_failures", "Syncs that failed", failures.clone());
        registry.register("sync_full_proxy_rules", "Syncs that rewrote the whole table", full_syncs.clone());
        registry.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "When the last sync succeeded (Unix time)",
            last_success_seconds.clone(),
        );
        SyncHealth {
            started: Instant::now(),
            stale_after,
            last_success: Mutex::new(None),
            last_error: Mutex::new(None),
            registry,
            durations,
            rules,
            failures,
            full_syncs,
            last_success_seconds,
        }
    }

    fn record(&self, took: Duration, result: &Result<SyncReport, SyncError>) {
        self.durations.observe(took.as_secs_f64());
        match result {
            Ok(report) => {
                self.rules.set(i64::try_from(report.rules).unwrap_or(i64::MAX));
                if report.full {
                    self.full_syncs.inc();
                }
                let wall = SystemTime::now();
                let unix = wall.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                self.last_success_seconds.set(i64::try_from(unix).unwrap_or(0));
                *lock(&self.last_success) = Some(LastSync { at: Instant::now(), wall });
                *lock(&self.last_error) = None;
            }
            Err(e) => {
                self.failures.inc();
                *lock(&self.last_error) = Some(e.to_string());
            }
        }
    }

    /// For /healthz: when the last successful sync was, or why that is too long ago.
    pub fn health(&self) -> Result<String, String> {
        let last = lock(&self.last_success);
        let error = lock(&self.last_error).clone().map(|e| format!("; the last sync failed: {e}")).unwrap_or_default();
        match &*last {
            Some(sync) if sync.at.elapsed() <= self.stale_after => {
                Ok(format!("ok: last successful sync {:.1}s ago{error}", sync.at.elapsed().as_secs_f64()))
            }
            Some(sync) => Err(format!(
                "the last successful sync was {:.0}s ago (at {:?}), more than {:?}{error}",
                sync.at.elapsed().as_secs_f64(),
                sync.wall,
                self.stale_after
            )),
            None if self.started.elapsed() <= self.stale_after => Ok(format!("ok: starting{error}")),
            None => Err(format!("no sync has succeeded in {:?}{error}", self.started.elapsed())),
        }
    }

    /// For /readyz: ready once the first sync succeeded.
    pub fn ready(&self) -> Result<(), String> {
        if lock(&self.last_success).is_some() {
            return Ok(());
        }
        Err(lock(&self.last_error).clone().unwrap_or_else(|| "the first sync has not happened yet".to_string()))
    }

    pub fn metrics(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            return "# encoding the metrics failed\n".to_string();
        }
        text
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Syncs `proxier` with `snapshot()` whenever `changed` is notified (and every
/// sync period) until `shutdown` resolves.
pub async fn run(
    proxier: &mut dyn Proxier,
    snapshot: impl Fn() -> Snapshot,
    changed: &Notify,
    timing: Timing,
    health: &SyncHealth,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut last_start: Option<Instant> = None;
    let mut retry = false;
    loop {
        if let Some(last) = last_start {
            let next_period = last + timing.sync_period;
            let wake = if retry { last + timing.min_sync_interval } else { next_period };
            tokio::select! {
                _ = changed.notified(), if !retry => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = &mut shutdown => return,
            }
            // Coalesce: whatever else changes meanwhile goes into this one sync.
            let earliest = last + timing.min_sync_interval;
            tokio::select! {
                _ = tokio::time::sleep_until(earliest.into()) => {}
                _ = &mut shutdown => return,
            }
            // Those changes are in the snapshot below: drop their wake-up.
            let _ = futures::FutureExt::now_or_never(changed.notified());
        }
        let start = Instant::now();
        last_start = Some(start);
        let snapshot = snapshot();
        let result = proxier.sync(&snapshot).await;
        let took = start.elapsed();
        health.record(took, &result);
        match &result {
            Ok(report) => {
                retry = false;
                tracing::debug!(rules = report.rules, full = report.full, ?took, "synced");
            }
            Err(e) => {
                retry = true;
                tracing::error!(error = %e, "sync failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting(Arc<AtomicUsize>);

    #[async_trait::async_trait]
    impl Proxier for Counting {
        async fn sync(&mut self, _: &Snapshot) -> Result<SyncReport, SyncError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(SyncReport { rules: 3, full: false })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_one_sync() {
        let count = Arc::new(AtomicUsize::new(0));
        let changed = Arc::new(Notify::new());
        let health = Arc::new(SyncHealth::new(Duration::from_secs(60)));
        let timing = Timing { min_sync_interval: Duration::from_secs(1), sync_period: Duration::from_secs(3600) };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = {
            let (count, changed, health) = (count.clone(), changed.clone(), health.clone());
            tokio::spawn(async move {
                let mut proxier = Counting(count);
                run(&mut proxier, Snapshot::default, &changed, timing, &health, async {
                    let _ = stopped.await;
                })
                .await;
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(count.load(Ordering::SeqCst), 1, "the first sync happens at once");
        for _ in 0..50 {
            changed.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count.load(Ordering::SeqCst), 2, "50 changes within the interval: one more sync");
        assert!(health.health().unwrap().starts_with("ok: last successful sync"));
        assert!(health.ready().is_ok());
        assert!(health.metrics().contains("kubeproxy_sync_proxy_rules_count 3"), "{}", health.metrics());
        let _ = stop.send(());
        task.await.unwrap();
    }

    #[test]
    fn health_turns_bad_when_the_last_sync_is_too_old() {
        let health = SyncHealth::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(health.health().unwrap_err().contains("no sync has succeeded"));
        health.record(Duration::from_millis(1), &Ok(SyncReport { rules: 1, full: true }));
        std::thread::sleep(Duration::from_millis(5));
        assert!(health.health().unwrap_err().contains("the last successful sync was"));
        health.record(Duration::from_millis(1), &Err(SyncError::Userspace("bind failed".into())));
        assert!(health.health().unwrap_err().contains("the last sync failed: bind failed"));
    }
}
