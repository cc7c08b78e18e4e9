//! The log's events: entries added and dropped, idempotent replays, and the group commit's
//! writes (how long each took to reach the disk, and how many records it carried).

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

use super::{COUNTS, SECONDS};

/// Cheap to clone: every clone counts into the same series. A log makes its own when it is
/// opened (its writer thread keeps a clone), and the node registers it.
#[derive(Clone)]
pub struct LogMetrics {
    appended: IntCounter,
    truncations: IntCounter,
    truncated: IntCounter,
    replays: IntCounter,
    sync: Histogram,
    batch: Histogram,
    removed: IntCounter,
    removed_segments: IntCounter,
    disk_bytes: IntGauge,
    segments: IntGauge,
}

impl Default for LogMetrics {
    fn default() -> Self {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help)).expect("constant, valid options")
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("constant, valid options")
        };
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help)).expect("constant, valid options")
        };
        Self {
            removed: counter(
                "replog_log_retention_removed_entries_total",
                "Entries retention removed from the start of the log (RETENTION_*).",
            ),
            removed_segments: counter(
                "replog_log_retention_removed_segments_total",
                "Segment files retention deleted, those the log no longer reached included.",
            ),
            disk_bytes: gauge(
                "replog_log_disk_bytes",
                "Bytes of the log's segment files (logs on disk only).",
            ),
            segments: gauge("replog_log_segments", "The log's segment files (logs on disk only)."),
            appended: counter(
                "replog_log_appended_entries_total",
                "Entries added to the log: numbered by this master, or received from one.",
            ),
            truncations: counter(
                "replog_log_truncations_total",
                "Repairs that dropped a suffix of the log its master did not have.",
            ),
            truncated: counter(
                "replog_log_truncated_entries_total",
                "Entries dropped by those repairs.",
            ),
            replays: counter(
                "replog_idempotent_replays_total",
                "Writes recognised by their idempotency key: answered with the original seq, nothing appended.",
            ),
            sync: histogram(
                "replog_log_sync_duration_seconds",
                "Time for one group commit to be written and fdatasync'ed (logs on disk only).",
                SECONDS,
            ),
            batch: histogram(
                "replog_log_commit_batch_records",
                "Records written by one group commit (logs on disk only).",
                COUNTS,
            ),
        }
    }
}

impl LogMetrics {
    pub(super) fn register(&self, registry: &Registry) {
        for metric in [
            &self.appended,
            &self.truncations,
            &self.truncated,
            &self.replays,
            &self.removed,
            &self.removed_segments,
        ] {
            super::register(registry, Ok(metric.clone()));
        }
        for metric in [&self.disk_bytes, &self.segments] {
            super::register(registry, Ok(metric.clone()));
        }
        for metric in [&self.sync, &self.batch] {
            super::register(registry, Ok(metric.clone()));
        }
    }

    /// `entries` added to the log.
    pub fn appended(&self, entries: u64) {
        self.appended.inc_by(entries);
    }

    /// One repair that dropped `entries` from the end of the log.
    pub fn truncated(&self, entries: u64) {
        self.truncations.inc();
        self.truncated.inc_by(entries);
    }

    /// One write recognised by its idempotency key: answered, nothing appended.
    pub fn replayed(&self) {
        self.replays.inc();
    }

    /// Retention deleted a segment, and with it `entries` from the log's start.
    pub(crate) fn removed(&self, entries: u64) {
        self.removed.inc_by(entries);
        self.removed_segments.inc();
    }

    /// Entries retention removed so far.
    pub(crate) fn removed_entries(&self) -> u64 {
        self.removed.get()
    }

    /// The segment files now: how many, and their bytes.
    pub(crate) fn on_disk(&self, segments: usize, bytes: u64) {
        self.segments.set(i64::try_from(segments).unwrap_or(i64::MAX));
        self.disk_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Bytes of the log's segment files (0 in memory).
    pub(crate) fn disk_bytes(&self) -> u64 {
        u64::try_from(self.disk_bytes.get()).unwrap_or_default()
    }

    /// One group commit of `records` that took `took` to be durable.
    pub fn committed(&self, records: usize, took: Duration) {
        self.sync.observe(took.as_secs_f64());
        self.batch.observe(records as f64);
    }
}
