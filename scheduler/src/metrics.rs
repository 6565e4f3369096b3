//! The scheduler's Prometheus metrics: attempts by result, attempt and end-to-end
//! latency histograms, queue lengths (filled in at scrape time).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::queue::Lengths;

/// Bucket bounds in seconds: 100 µs growing by 1.25x to about a minute.
fn bounds() -> Vec<f64> {
    (0..60).map(|i| 0.0001 * 1.25f64.powi(i)).collect()
}

pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        let bounds = bounds();
        let counts = (0..bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound:.6}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    pub scheduled: AtomicU64,
    pub unschedulable: AtomicU64,
    pub errors: AtomicU64,
    pub preemption_victims: AtomicU64,
    /// One scheduling decision (filter + score + assume).
    pub attempt_duration: Histogram,
    /// From the pod's first attempt until its binding succeeded.
    pub e2e_duration: Histogram,
}

impl Metrics {
    pub fn render(&self, lengths: Lengths, leading: bool) -> String {
        let mut out = String::new();
        out.push_str("# HELP scheduler_schedule_attempts_total Scheduling attempts by result.\n");
        out.push_str("# TYPE scheduler_schedule_attempts_total counter\n");
        for (result, counter) in
            [("scheduled", &self.scheduled), ("unschedulable", &self.unschedulable), ("error", &self.errors)]
        {
            let _ = writeln!(
                out,
                "scheduler_schedule_attempts_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP scheduler_preemption_victims_total Pods evicted to make room.\n# TYPE scheduler_preemption_victims_total counter\nscheduler_preemption_victims_total {}",
            self.preemption_victims.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scheduler_pending_pods Pending pods by sub-queue.\n# TYPE scheduler_pending_pods gauge\n");
        for (queue, n) in [
            ("active", lengths.active),
            ("backoff", lengths.backoff),
            ("unschedulable", lengths.unschedulable),
            ("in_flight", lengths.in_flight),
        ] {
            let _ = writeln!(out, "scheduler_pending_pods{{queue=\"{queue}\"}} {n}");
        }
        self.attempt_duration.render(
            &mut out,
            "scheduler_scheduling_attempt_duration_seconds",
            "Time of one scheduling decision (filter, score, assume).",
        );
        self.e2e_duration.render(
            &mut out,
            "scheduler_pod_scheduling_duration_seconds",
            "Time from a pod's first attempt until its binding succeeded.",
        );
        let _ = writeln!(
            out,
            "# HELP scheduler_leader Whether this instance leads (1) or stands by (0).\n# TYPE scheduler_leader gauge\nscheduler_leader {}",
            u8::from(leading)
        );
        out
    }
}
