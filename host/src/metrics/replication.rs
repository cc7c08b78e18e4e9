//! A master's replication, per secondary, and its writers' waits for a write concern.

use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use super::{COUNTS, SECONDS, register};

/// What a contact with a secondary came to, as the replicator reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactOutcome {
    /// It answered and acknowledged this many entries (0: a probe or a heartbeat).
    Acknowledged(u32),
    /// It held this many entries the master does not have, being replaced.
    Repairing(u64),
    /// It follows a newer master: this one was fenced.
    Fenced,
    /// It did not answer, or not as it should.
    Failed,
}

impl ContactOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Acknowledged(_) => "acknowledged",
            Self::Repairing(_) => "repairing",
            Self::Fenced => "fenced",
            Self::Failed => "failed",
        }
    }
}

/// A master's contacts with each secondary and its writers' waits for a write concern. Cheap
/// to clone: every clone counts into the same series.
#[derive(Clone)]
pub struct ReplicationMetrics {
    contacts: IntCounterVec,
    batch: HistogramVec,
    repaired: IntCounterVec,
    round_trip: HistogramVec,
    waits: IntCounterVec,
    wait_time: HistogramVec,
}

impl ReplicationMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            register(registry, HistogramVec::new(opts, labels))
        };
        Self {
            contacts: counter(
                "replog_replication_contacts_total",
                "Contacts with each secondary, by outcome: acknowledged, repairing (it held entries the master does not), fenced (it follows a newer master), failed.",
                &["secondary", "outcome"],
            ),
            batch: histogram(
                "replog_replication_batch_entries",
                "Entries acknowledged by one contact that sent entries.",
                COUNTS,
                &["secondary"],
            ),
            repaired: counter(
                "replog_replication_repaired_entries_total",
                "Entries a secondary held that the master did not have, found by the master (the secondary drops them).",
                &["secondary"],
            ),
            round_trip: histogram(
                "replog_replication_round_trip_seconds",
                "Time from sending a request to a secondary to its answer's head.",
                SECONDS,
                &["secondary"],
            ),
            waits: counter(
                "replog_write_concern_waits_total",
                "Writes that waited for secondaries to acknowledge them, by outcome: met, or gave_up (the write was answered 502).",
                &["outcome"],
            ),
            wait_time: histogram(
                "replog_write_concern_wait_seconds",
                "Time a write waited for its write concern, by outcome.",
                SECONDS,
                &["outcome"],
            ),
        }
    }

    /// One contact with `secondary`, as the replicator reported it.
    pub fn contact(&self, secondary: &str, outcome: ContactOutcome) {
        self.contacts.with_label_values(&[secondary, outcome.label()]).inc();
        match outcome {
            ContactOutcome::Acknowledged(entries) if entries > 0 => {
                self.batch.with_label_values(&[secondary]).observe(f64::from(entries));
            }
            ContactOutcome::Repairing(entries) => {
                self.repaired.with_label_values(&[secondary]).inc_by(entries);
            }
            _ => {}
        }
    }

    /// One request to `secondary` answered after `took` (its head).
    pub fn round_trip(&self, secondary: &str, took: Duration) {
        self.round_trip.with_label_values(&[secondary]).observe(took.as_secs_f64());
    }

    /// Starts timing a wait for a write concern: counted as met by [`AckWaitTimer::met`], as
    /// given up when dropped before.
    pub fn wait(&self) -> AckWaitTimer {
        AckWaitTimer { metrics: self.clone(), started: Instant::now(), done: false }
    }

    fn waited(&self, outcome: &str, took: Duration) {
        self.waits.with_label_values(&[outcome]).inc();
        self.wait_time.with_label_values(&[outcome]).observe(took.as_secs_f64());
    }
}

/// One wait for a write concern, counted once.
pub struct AckWaitTimer {
    metrics: ReplicationMetrics,
    started: Instant,
    done: bool,
}

impl AckWaitTimer {
    /// The write concern was met: counted as met now, and not again when dropped.
    pub fn met(&mut self) {
        if !self.done {
            self.done = true;
            self.metrics.waited("met", self.started.elapsed());
        }
    }
}

impl Drop for AckWaitTimer {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.waited("gave_up", self.started.elapsed());
        }
    }
}
