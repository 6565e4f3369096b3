//! The apiserver's readiness and metrics for the operations endpoint (`ops`):
//! ready once etcd answers, every watch cache has loaded and the system namespaces
//! exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::metrics::Metrics;
use crate::storage::Etcd;
use crate::watchcache::WatchCache;

pub struct Health {
    pub etcd: Etcd,
    pub caches: Vec<Arc<WatchCache>>,
    pub metrics: Metrics,
    /// Set once the system namespaces exist.
    pub bootstrapped: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl ops::Probe for Health {
    async fn ready(&self) -> Result<(), String> {
        let not_loaded: Vec<&str> = self.caches.iter().filter(|c| !c.is_ready()).map(|c| c.info().plural).collect();
        if !not_loaded.is_empty() {
            return Err(format!("watch caches still loading: {}", not_loaded.join(", ")));
        }
        if !self.bootstrapped.load(Ordering::Acquire) {
            return Err("creating the system namespaces".to_string());
        }
        match tokio::time::timeout(Duration::from_secs(2), self.etcd.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("etcd: {e}")),
            Err(_) => Err("etcd did not answer within 2s".to_string()),
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}
