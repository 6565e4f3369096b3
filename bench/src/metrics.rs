//! Reading the Prometheus text the components and etcd serve on /metrics.

/// The sum of the samples of `name` whose labels include every one of `labels`
/// (`verb="create"`), or None when there is no such sample.
pub fn total(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        // `name` must be the whole metric name, not the start of a longer one.
        if !(rest.starts_with('{') || rest.starts_with(' ')) || !labels.iter().all(|label| rest.contains(label)) {
            continue;
        }
        if let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

/// The upper bound of the bucket holding percentile `p` of a histogram in /metrics.
pub fn histogram_percentile(metrics: &str, name: &str, p: f64) -> Option<f64> {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.parse().unwrap_or(f64::INFINITY), count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last()?.1;
    buckets.iter().find(|(_, c)| *c >= total * p / 100.0).map(|(le, _)| *le)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{verb=\"create\",resource=\"configmaps\"} 3
apiserver_request_duration_seconds_count{verb=\"get\",resource=\"configmaps\"} 5
apiserver_request_duration_seconds_count{verb=\"create\",resource=\"pods\"} 7
etcd_disk_wal_fsync_duration_seconds_count 42
etcd_disk_wal_fsync_duration_seconds_count_extra 9
";

    #[test]
    fn totals_sum_the_samples_whose_labels_match() {
        let name = "apiserver_request_duration_seconds_count";
        assert_eq!(total(METRICS, name, &["verb=\"create\"", "resource=\"configmaps\""]), Some(3.0));
        assert_eq!(total(METRICS, name, &["resource=\"configmaps\""]), Some(8.0));
        assert_eq!(total(METRICS, "etcd_disk_wal_fsync_duration_seconds_count", &[]), Some(42.0));
        assert_eq!(total(METRICS, name, &["verb=\"delete\""]), None);
    }
}
