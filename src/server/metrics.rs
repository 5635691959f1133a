//! The Prometheus text format of the metrics every core counts
//! (`node::metrics`), for the admin endpoint's `/metrics`.

use std::fmt::Write as _;

use crate::node::metrics::{LATENCY_BUCKETS_SECONDS, MetricsSnapshot};

/// Render the gathered counts in the Prometheus text exposition format.
#[must_use]
pub fn render_prometheus(per_shard: &[MetricsSnapshot]) -> String {
    let mut total = MetricsSnapshot::default();
    for snapshot in per_shard {
        total.merge(snapshot);
    }
    let mut out = String::with_capacity(4096);
    out.push_str(
        "# HELP ringstore_requests_total S3 requests answered, by operation and HTTP status.\n",
    );
    out.push_str("# TYPE ringstore_requests_total counter\n");
    for ((operation, status), count) in &total.requests {
        let _ = writeln!(
            out,
            "ringstore_requests_total{{operation=\"{operation}\",status=\"{status}\"}} {count}"
        );
    }
    out.push_str(
        "# HELP ringstore_received_bytes_total Request bytes received (heads and bodies).\n",
    );
    out.push_str("# TYPE ringstore_received_bytes_total counter\n");
    let _ = writeln!(
        out,
        "ringstore_received_bytes_total {}",
        total.bytes_received
    );
    out.push_str("# HELP ringstore_sent_bytes_total Response bytes sent (heads and bodies).\n");
    out.push_str("# TYPE ringstore_sent_bytes_total counter\n");
    let _ = writeln!(out, "ringstore_sent_bytes_total {}", total.bytes_sent);
    out.push_str("# HELP ringstore_request_duration_seconds Time from a complete request head to the end of the response.\n");
    out.push_str("# TYPE ringstore_request_duration_seconds histogram\n");
    let mut cumulative = 0;
    for (bound, count) in LATENCY_BUCKETS_SECONDS.iter().zip(total.latency_buckets) {
        cumulative += count;
        let _ = writeln!(
            out,
            "ringstore_request_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    cumulative += total.latency_buckets[LATENCY_BUCKETS_SECONDS.len()];
    let _ = writeln!(
        out,
        "ringstore_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "ringstore_request_duration_seconds_sum {}",
        total.latency_sum_seconds
    );
    let _ = writeln!(out, "ringstore_request_duration_seconds_count {cumulative}");
    out.push_str("# HELP ringstore_open_connections Client connections open now, by core.\n");
    out.push_str("# TYPE ringstore_open_connections gauge\n");
    for (shard, snapshot) in per_shard.iter().enumerate() {
        let _ = writeln!(
            out,
            "ringstore_open_connections{{core=\"{shard}\"}} {}",
            snapshot.open_connections
        );
    }
    out.push_str("# HELP ringstore_refused_connections_total Connections refused because a core was at its connection limit.\n");
    out.push_str("# TYPE ringstore_refused_connections_total counter\n");
    let _ = writeln!(
        out,
        "ringstore_refused_connections_total {}",
        total.refused_connections
    );
    render_storage(&mut out, per_shard);
    out
}

/// Name, type, help and value of one per-core storage series.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MetricsSnapshot) -> u64,
);

/// The per-core storage series: segment bytes, compaction and scrub
/// counters.
fn render_storage(out: &mut String, per_shard: &[MetricsSnapshot]) {
    let per_core: [Series; 13] = [
        (
            "ringstore_segment_bytes",
            "gauge",
            "Bytes of segment files, by core (shard).",
            |s| s.segment_bytes,
        ),
        (
            "ringstore_writes_stopped",
            "gauge",
            "1 when the core takes no writes after a failed segment write or fdatasync (until a restart), by core.",
            |s| u64::from(s.writes_stopped),
        ),
        (
            "ringstore_storage_full",
            "gauge",
            "1 when the core refuses new object data for want of disk space (deletes still work), by core.",
            |s| u64::from(s.storage_full),
        ),
        (
            "ringstore_compaction_passes_total",
            "counter",
            "Compaction passes run, by core.",
            |s| s.compaction.passes,
        ),
        (
            "ringstore_compaction_segments_removed_total",
            "counter",
            "Segments compaction emptied and deleted, by core.",
            |s| s.compaction.segments_removed,
        ),
        (
            "ringstore_compaction_removed_bytes_total",
            "counter",
            "Bytes of the segment files compaction deleted, by core.",
            |s| s.compaction.bytes_removed,
        ),
        (
            "ringstore_compaction_copied_bytes_total",
            "counter",
            "Bytes compaction appended to move live records forward, by core.",
            |s| s.compaction.bytes_copied,
        ),
        (
            "ringstore_compaction_moved_versions_total",
            "counter",
            "Object versions and tombstones compaction moved forward, by core.",
            |s| s.compaction.versions_moved,
        ),
        (
            "ringstore_compaction_failures_total",
            "counter",
            "Compaction passes or segments that failed (logged; retried or left for a check), by core.",
            |s| s.compaction.failures,
        ),
        (
            "ringstore_scrub_passes_total",
            "counter",
            "Scrub passes over every live object completed, by core.",
            |s| s.scrub.passes,
        ),
        (
            "ringstore_scrub_verified_objects_total",
            "counter",
            "Objects the scrub read and found whole, by core.",
            |s| s.scrub.objects_verified,
        ),
        (
            "ringstore_scrub_verified_bytes_total",
            "counter",
            "Bytes of the objects the scrub found whole, by core.",
            |s| s.scrub.bytes_verified,
        ),
        (
            "ringstore_scrub_damaged_objects_total",
            "counter",
            "Objects the scrub found damaged (logged; GETs of them answer 500), by core.",
            |s| s.scrub.objects_damaged,
        ),
    ];
    for (name, kind, help, value) in per_core {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (shard, snapshot) in per_shard.iter().enumerate() {
            let _ = writeln!(out, "{name}{{core=\"{shard}\"}} {}", value(snapshot));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::node::metrics::CoreMetrics;

    #[test]
    fn histogram_is_cumulative_and_counts_match() {
        let mut a = CoreMetrics::default();
        a.record_request("ListBuckets", 200, Duration::from_micros(50));
        a.record_request("ListBuckets", 200, Duration::from_millis(3));
        let mut b = CoreMetrics::default();
        b.record_request("CreateBucket", 409, Duration::from_secs(100));
        b.connection_opened();
        let text = render_prometheus(&[a.snapshot(), b.snapshot()]);
        assert!(
            text.contains("ringstore_requests_total{operation=\"ListBuckets\",status=\"200\"} 2\n")
        );
        assert!(
            text.contains(
                "ringstore_requests_total{operation=\"CreateBucket\",status=\"409\"} 1\n"
            )
        );
        assert!(text.contains("ringstore_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("ringstore_request_duration_seconds_bucket{le=\"0.005\"} 2\n"));
        assert!(text.contains("ringstore_request_duration_seconds_bucket{le=\"60\"} 2\n"));
        assert!(text.contains("ringstore_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("ringstore_request_duration_seconds_count 3\n"));
        assert!(text.contains("ringstore_open_connections{core=\"1\"} 1\n"));
    }
}
