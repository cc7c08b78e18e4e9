//! The log's events: entries added and dropped, idempotent replays, and the group commit's
//! writes (how long each took to reach the disk, and how many records it carried).

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, Opts, Registry};

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
        Self {
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
        for metric in [&self.appended, &self.truncations, &self.truncated, &self.replays] {
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

    /// One group commit of `records` that took `took` to be durable.
    pub fn committed(&self, records: usize, took: Duration) {
        self.sync.observe(took.as_secs_f64());
        self.batch.observe(records as f64);
    }
}
