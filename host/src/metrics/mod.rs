//! What a node counts and measures, for Prometheus: `GET /metrics` in the text exposition
//! format (0.0.4), which every Prometheus and `promtool check metrics` read.
//!
//! Each node has its own registry, so the nodes of an embedded cluster (one process) are
//! scraped apart, each on its own port. Events are counted where they happen, by the part of
//! the host that sees them (`http`, `log`, `replication`, `runtime`); levels (the log's length,
//! each secondary's acknowledged position and lag, the running version) are read from the
//! node's state when Prometheus asks, so they are never stale and cost nothing in between.
//!
//! Nothing secret is exposed: labels are routes, methods, statuses, secondaries' URLs as
//! configured, and the component's sha256 and version.

mod http;
mod log;
mod replication;
mod runtime;

use prometheus::{Encoder, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

pub use self::http::HttpMetrics;
pub use self::log::LogMetrics;
pub use self::replication::{AckWaitTimer, ContactOutcome, ReplicationMetrics};
pub use self::runtime::{InUse, RuntimeMetrics, Stopped};

/// The content type of what [`NodeMetrics::render`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One node's metrics and the registry Prometheus reads them from.
pub struct NodeMetrics {
    registry: Registry,
    /// Requests at the node's HTTP edge.
    pub http: HttpMetrics,
    /// The log's entries added, dropped and replayed, and its group commits.
    pub log: LogMetrics,
    /// A master's contacts with its secondaries and its writers' waits.
    pub replication: ReplicationMetrics,
    /// The component's versions, instances and stopped calls.
    pub runtime: RuntimeMetrics,
    levels: Levels,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

/// What the node's state says when Prometheus asks: set just before each render.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// `master` or `secondary`.
    pub role: &'static str,
    /// The node's name: `master`, `secondary1`, ...
    pub node: String,
    /// Entries in the log (its last seq).
    pub log_entries: u64,
    /// The log's first seq (past 1 once retention removed older entries).
    pub log_first_seq: u64,
    /// The commit point as this node knows it.
    pub log_committed: u64,
    /// Tails (long-polls and event streams) being served.
    pub tails: u64,
    /// Bytes of entries' renders kept for the tails (`log.keep-rendered`).
    pub rendered_bytes: u64,
    /// Bytes of messages held.
    pub log_bytes: u64,
    /// The highest epoch recorded.
    pub epoch: u64,
    /// A master's state (none on a secondary).
    pub master_state: Option<StateSet>,
    /// Each secondary, as the master sees it (none on a secondary).
    pub secondaries: Vec<SecondaryReading>,
    /// Component instances kept idle for the next calls.
    pub instances_idle: u64,
    /// Hex sha256 of the component version serving new requests.
    pub component_sha256: String,
    /// That version as it describes itself, `unknown` if it does not.
    pub component_version: String,
}

/// One secondary as its master sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecondaryReading {
    /// Its base URL, as configured.
    pub url: String,
    /// The seq through which its log was checked to agree with the master's.
    pub acked: u64,
    /// Whether it answers, as the master judged it.
    pub status: StateSet,
    /// Contacts that failed in a row.
    pub failures: u32,
}

/// One of several states, for a state-set gauge: every state is written, 0 or 1, so that a
/// query for one of them never finds nothing. The words are their owner's (`state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSet {
    /// Every state there is.
    pub all: &'static [&'static str],
    /// The one it is in.
    pub now: &'static str,
}

/// Gauges set from a [`Reading`].
struct Levels {
    node_info: IntGaugeVec,
    log_entries: IntGauge,
    log_first_seq: IntGauge,
    log_committed: IntGauge,
    tails: IntGauge,
    rendered_bytes: IntGauge,
    log_bytes: IntGauge,
    epoch: IntGauge,
    master_state: IntGaugeVec,
    acked: IntGaugeVec,
    lag: IntGaugeVec,
    status: IntGaugeVec,
    failures: IntGaugeVec,
    component_info: IntGaugeVec,
    instances_idle: IntGauge,
}

impl NodeMetrics {
    /// Metrics for one node, counting into `log` (the log's own, which it updates itself).
    pub fn new(log: LogMetrics) -> Self {
        let registry = Registry::new();
        let http = HttpMetrics::new(&registry);
        log.register(&registry);
        let replication = ReplicationMetrics::new(&registry);
        let runtime = RuntimeMetrics::new(&registry);
        let levels = Levels::new(&registry);
        Self { registry, http, log, replication, runtime, levels }
    }

    /// Everything, in Prometheus' text format, with the levels of `reading`.
    pub fn render(&self, reading: &Reading) -> String {
        self.levels.set(reading);
        let mut text = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to memory and every metric is well-formed");
        String::from_utf8(text).expect("the text encoder writes UTF-8")
    }
}

impl Levels {
    fn new(registry: &Registry) -> Self {
        let per_secondary =
            |name: &str, help: &str| gauge_vec(registry, name, help, &["secondary"]);
        Self {
            node_info: gauge_vec(
                registry,
                "replog_node_info",
                "The node's name and role (always 1).",
                &["node", "role"],
            ),
            log_entries: gauge(
                registry,
                "replog_log_entries",
                "Entries in the log (its last seq).",
            ),
            log_first_seq: gauge(
                registry,
                "replog_log_first_seq",
                "The first seq the log holds: past 1 once retention removed older entries.",
            ),
            log_committed: gauge(
                registry,
                "replog_log_committed_seq",
                "The commit point as this node knows it: the highest seq a majority holds.",
            ),
            tails: gauge(
                registry,
                "replog_tails",
                "Tails (long-polls and event streams of GET /messages) being served.",
            ),
            rendered_bytes: gauge(
                registry,
                "replog_tail_rendered_bytes",
                "Bytes of entries rendered by the component and kept for the tails to share.",
            ),
            log_bytes: gauge(registry, "replog_log_bytes", "Bytes of messages the log holds."),
            epoch: gauge(registry, "replog_epoch", "The highest master epoch this node recorded."),
            master_state: gauge_vec(
                registry,
                "replog_master_state",
                "1 for the master's state (open: takes writes; recovering; fenced), 0 for the others.",
                &["state"],
            ),
            acked: per_secondary(
                "replog_replication_acked_seq",
                "The seq through which the secondary's log was checked to agree with the master's.",
            ),
            lag: per_secondary(
                "replog_replication_lag_messages",
                "Entries the master holds that the secondary has not acknowledged.",
            ),
            status: gauge_vec(
                registry,
                "replog_replication_secondary_status",
                "1 for the secondary's status as the replicator judges it, 0 for the others.",
                &["secondary", "status"],
            ),
            failures: per_secondary(
                "replog_replication_consecutive_failures",
                "Contacts with the secondary that failed in a row.",
            ),
            component_info: gauge_vec(
                registry,
                "replog_component_info",
                "The component version serving new requests (always 1).",
                &["sha256", "version"],
            ),
            instances_idle: gauge(
                registry,
                "replog_instances_idle",
                "Component instances of the serving version kept for the next calls.",
            ),
        }
    }

    fn set(&self, r: &Reading) {
        self.node_info.reset();
        self.node_info.with_label_values(&[r.node.as_str(), r.role]).set(1);
        self.log_entries.set(clamp(r.log_entries));
        self.log_first_seq.set(clamp(r.log_first_seq));
        self.log_committed.set(clamp(r.log_committed));
        self.tails.set(clamp(r.tails));
        self.rendered_bytes.set(clamp(r.rendered_bytes));
        self.log_bytes.set(clamp(r.log_bytes));
        self.epoch.set(clamp(r.epoch));
        if let Some(StateSet { all, now }) = r.master_state {
            for &state in all {
                self.master_state.with_label_values(&[state]).set(i64::from(state == now));
            }
        } else {
            // A node that was master and is a secondary now shows no master's series.
            for family in [&self.master_state, &self.acked, &self.lag, &self.failures, &self.status]
            {
                family.reset();
            }
        }
        for s in &r.secondaries {
            let url = s.url.as_str();
            self.acked.with_label_values(&[url]).set(clamp(s.acked));
            self.lag.with_label_values(&[url]).set(clamp(r.log_entries.saturating_sub(s.acked)));
            self.failures.with_label_values(&[url]).set(i64::from(s.failures));
            for &status in s.status.all {
                let now = i64::from(status == s.status.now);
                self.status.with_label_values(&[url, status]).set(now);
            }
        }
        self.instances_idle.set(clamp(r.instances_idle));
        self.component_info.reset();
        self.component_info
            .with_label_values(&[r.component_sha256.as_str(), r.component_version.as_str()])
            .set(1);
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::with_opts(Opts::new(name, help)))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

/// Registers a metric built from constant, valid options.
fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = metric.expect("a metric's name, help and labels are constants and valid");
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once, under a name of its own");
    metric
}

/// Buckets for durations from a tenth of a millisecond to ten seconds, in seconds.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for counts of things in a batch, 1 to 4096.
const COUNTS: &[f64] =
    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0];

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            role: "master",
            node: "master".into(),
            log_entries: 10,
            log_first_seq: 1,
            log_committed: 9,
            tails: 3,
            rendered_bytes: 300,
            log_bytes: 70,
            epoch: 2,
            master_state: Some(StateSet { all: &["open", "recovering", "fenced"], now: "open" }),
            secondaries: vec![SecondaryReading {
                url: "http://127.0.0.1:8001".into(),
                acked: 7,
                status: StateSet { all: &["healthy", "suspected", "unhealthy"], now: "suspected" },
                failures: 1,
            }],
            instances_idle: 2,
            component_sha256: "ab12".into(),
            component_version: "0.4.0".into(),
        }
    }

    #[test]
    fn levels_come_from_the_reading_and_lag_is_what_is_not_acknowledged() {
        let metrics = NodeMetrics::new(LogMetrics::default());
        let text = metrics.render(&reading());
        for line in [
            "replog_log_entries 10",
            "replog_log_committed_seq 9",
            "replog_tails 3",
            "replog_tail_rendered_bytes 300",
            "replog_log_bytes 70",
            "replog_epoch 2",
            "replog_master_state{state=\"open\"} 1",
            "replog_master_state{state=\"fenced\"} 0",
            "replog_replication_acked_seq{secondary=\"http://127.0.0.1:8001\"} 7",
            "replog_replication_lag_messages{secondary=\"http://127.0.0.1:8001\"} 3",
            "replog_replication_secondary_status{secondary=\"http://127.0.0.1:8001\",status=\"suspected\"} 1",
            "replog_replication_secondary_status{secondary=\"http://127.0.0.1:8001\",status=\"healthy\"} 0",
            "replog_component_info{sha256=\"ab12\",version=\"0.4.0\"} 1",
            "replog_node_info{node=\"master\",role=\"master\"} 1",
            "replog_instances_idle 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
    }

    #[test]
    fn a_new_version_replaces_the_old_one_in_the_info_metric() {
        let metrics = NodeMetrics::new(LogMetrics::default());
        metrics.render(&reading());
        let text = metrics.render(&Reading { component_sha256: "cd34".into(), ..reading() });
        assert!(text.contains("sha256=\"cd34\""), "{text}");
        assert!(!text.contains("sha256=\"ab12\""), "the old version is gone: {text}");
    }

    #[test]
    fn every_family_has_help_and_a_type() {
        let metrics = NodeMetrics::new(LogMetrics::default());
        metrics.http.observe("/messages", "POST", 201, std::time::Duration::from_millis(2));
        let text = metrics.render(&reading());
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert!(families.len() > 20, "{families:?}");
        for family in families {
            assert!(family.starts_with("replog_"), "{family}");
            assert!(text.contains(&format!("# HELP {family} ")), "{family} has no help");
        }
    }
}
