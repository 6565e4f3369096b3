//! The apiserver's Prometheus metrics: requests by verb, resource and code with
//! latency histograms, open watches, and etcd request latency.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: &'static str,
    resource: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: &'static str,
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// Latency buckets from 0.25 ms to about 4 s.
#[derive(Clone)]
struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.00025, 2.0, 15))
    }
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_latency: Family<LatencyLabels, Histogram, Buckets>,
    watchers: Family<ResourceLabels, Gauge>,
    watch_events: Family<ResourceLabels, Counter>,
    etcd_latency: Family<OperationLabels, Histogram, Buckets>,
}

/// Cheap to clone; every clone records into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("apiserver");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_latency = Family::new_with_constructor(Buckets);
        let watchers = Family::<ResourceLabels, Gauge>::default();
        let watch_events = Family::<ResourceLabels, Counter>::default();
        let etcd_latency = Family::new_with_constructor(Buckets);
        registry.register("requests", "API requests by verb, resource and result code", requests.clone());
        registry.register(
            "request_duration_seconds",
            "API request latency by verb and resource",
            request_latency.clone(),
        );
        registry.register("watchers", "Open client watches by resource", watchers.clone());
        registry.register("watch_events_sent", "Watch events sent to clients by resource", watch_events.clone());
        registry.register("etcd_request_duration_seconds", "etcd request latency by operation", etcd_latency.clone());
        Metrics { inner: Arc::new(Inner { registry, requests, request_latency, watchers, watch_events, etcd_latency }) }
    }

    pub fn request(&self, verb: &'static str, resource: &'static str, code: &'static str, elapsed: Duration) {
        self.inner.requests.get_or_create(&RequestLabels { verb, resource, code }).inc();
        self.inner.request_latency.get_or_create(&LatencyLabels { verb, resource }).observe(elapsed.as_secs_f64());
    }

    pub fn watcher_opened(&self, resource: &'static str) {
        self.inner.watchers.get_or_create(&ResourceLabels { resource }).inc();
    }

    pub fn watcher_closed(&self, resource: &'static str) {
        self.inner.watchers.get_or_create(&ResourceLabels { resource }).dec();
    }

    pub fn watch_events_sent(&self, resource: &'static str, count: u64) {
        self.inner.watch_events.get_or_create(&ResourceLabels { resource }).inc_by(count);
    }

    pub fn etcd_request(&self, operation: &'static str, elapsed: Duration) {
        self.inner.etcd_latency.get_or_create(&OperationLabels { operation }).observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of everything recorded.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.inner.registry).is_err() {
            text.clear();
        }
        text
    }
}
