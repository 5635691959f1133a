//! Request metrics, kept per core and gathered on demand.
//!
//! Each core counts into its own [`CoreMetrics`] with plain integer
//! arithmetic: no atomics, no locks, nothing shared on the data path. A
//! scrape of `/metrics` asks every shard for a [`MetricsSnapshot`] over the
//! mesh and adds them up ([`MetricsSnapshot::merge`]); rendering them for
//! Prometheus is the admin endpoint's job (`server::metrics`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::storage::shard::{CompactionStats, ScrubStats};

/// Upper bounds of the request-latency histogram, in seconds. They span a
/// cached small GET (tens of microseconds) to a multi-GiB transfer.
pub const LATENCY_BUCKETS_SECONDS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 60.0,
];

/// What one core has counted since it started.
#[derive(Debug, Default, Clone)]
pub struct MetricsSnapshot {
    /// Requests by (operation, HTTP status).
    pub requests: BTreeMap<(&'static str, u16), u64>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Counts per latency bucket; the last entry is `+Inf`.
    pub latency_buckets: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    pub latency_sum_seconds: f64,
    pub open_connections: u64,
    pub refused_connections: u64,
    /// The shard's segment files, in bytes (a gauge, read at the scrape).
    pub segment_bytes: u64,
    /// The shard's writer stopped after a failed write or fdatasync.
    pub writes_stopped: bool,
    /// The shard refuses new object data for want of space.
    pub storage_full: bool,
    pub compaction: CompactionStats,
    pub scrub: ScrubStats,
}

/// The counters one core owns.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    snapshot: MetricsSnapshot,
}

impl CoreMetrics {
    pub fn record_request(&mut self, operation: &'static str, status: u16, elapsed: Duration) {
        *self
            .snapshot
            .requests
            .entry((operation, status))
            .or_insert(0) += 1;
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS_SECONDS.len());
        self.snapshot.latency_buckets[bucket] += 1;
        self.snapshot.latency_sum_seconds += seconds;
    }

    pub fn add_bytes_received(&mut self, bytes: u64) {
        self.snapshot.bytes_received += bytes;
    }

    pub fn add_bytes_sent(&mut self, bytes: u64) {
        self.snapshot.bytes_sent += bytes;
    }

    pub fn connection_opened(&mut self) {
        self.snapshot.open_connections += 1;
    }

    pub fn connection_closed(&mut self) {
        self.snapshot.open_connections -= 1;
    }

    pub fn connection_refused(&mut self) {
        self.snapshot.refused_connections += 1;
    }

    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.snapshot.clone()
    }
}

impl MetricsSnapshot {
    /// Add another core's counts into this one.
    pub fn merge(&mut self, other: &MetricsSnapshot) {
        for (key, count) in &other.requests {
            *self.requests.entry(*key).or_insert(0) += count;
        }
        self.bytes_received += other.bytes_received;
        self.bytes_sent += other.bytes_sent;
        for (mine, theirs) in self
            .latency_buckets
            .iter_mut()
            .zip(other.latency_buckets.iter())
        {
            *mine += theirs;
        }
        self.latency_sum_seconds += other.latency_sum_seconds;
        self.open_connections += other.open_connections;
        self.refused_connections += other.refused_connections;
        self.segment_bytes += other.segment_bytes;
        let (mine, theirs) = (&mut self.compaction, &other.compaction);
        mine.passes += theirs.passes;
        mine.segments_removed += theirs.segments_removed;
        mine.bytes_removed += theirs.bytes_removed;
        mine.bytes_copied += theirs.bytes_copied;
        mine.versions_moved += theirs.versions_moved;
        mine.failures += theirs.failures;
        let (mine, theirs) = (&mut self.scrub, &other.scrub);
        mine.passes += theirs.passes;
        mine.objects_verified += theirs.objects_verified;
        mine.bytes_verified += theirs.bytes_verified;
        mine.objects_damaged += theirs.objects_damaged;
    }
}
