//! What every node takes from the command line: the limits the host enforces, and the role's
//! own settings, which pass through to its component.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::components::ComponentFiles;
use crate::config::{Edge, Limits, NodeConfig, Role};
use crate::runtime::RuntimeConfig;
use crate::state::Retention;

/// What the host enforces on every node.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Largest request body a node accepts [default: 1 MiB on the master, 16 MiB on a
    /// secondary, whose batches carry many messages].
    #[arg(long, env = crate::config::setting::MAX_BODY_BYTES, value_name = "BYTES")]
    pub(super) max_body_bytes: Option<u64>,
    /// CPU time the component may use for one request before the request is stopped.
    #[arg(long, env = "CPU_BUDGET_MS", value_name = "MS",
        default_value_t = Limits::default().cpu_budget.as_millis() as u64)]
    cpu_budget_ms: u64,
    /// Memory the component may use for one request before the request is stopped.
    #[arg(long, env = "MEMORY_LIMIT_MB", value_name = "MB",
        default_value_t = (Limits::default().memory_bytes >> 20) as u64)]
    memory_limit_mb: u64,
    /// Calls one component instance serves, one after another, before a fresh one is made
    /// (1: a fresh instance for every call, the strictest isolation). A trap, a limit, a
    /// timeout or a new version always ends an instance.
    #[arg(long, env = "INSTANCE_REUSE", value_name = "CALLS",
        default_value_t = Limits::DEFAULT_REUSE)]
    instance_reuse: u32,
    /// Component instances that may run at once in this process; beyond that, requests are
    /// answered 503.
    #[arg(long, env = "MAX_INSTANCES", default_value_t = RuntimeConfig::default().max_instances)]
    max_instances: u32,
    /// Of those, how many client requests may never take: kept for replication, recovery and
    /// health checks [default: 16, or half of MAX_INSTANCES when that is fewer].
    #[arg(long, env = "RESERVED_INSTANCES", value_name = "N")]
    reserved_instances: Option<u32>,
    /// How long a connection may wait for its next request before it is closed.
    #[arg(long, env = "IDLE_TIMEOUT_MS", value_name = "MS",
        default_value_t = Edge::default().idle_timeout.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// How long a request may take from its first byte to the end of its headers; past it the
    /// client gets 408.
    #[arg(long, env = "HEADER_TIMEOUT_MS", value_name = "MS",
        default_value_t = Edge::default().header_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// How long a request's whole body may take to arrive; past it the client gets 408. Bodies
    /// are received before a component instance is taken.
    #[arg(long, env = "BODY_TIMEOUT_MS", value_name = "MS",
        default_value_t = Edge::default().body_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// Connections a node keeps open at once; one more is answered 503 and closed.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "N",
        default_value_t = Edge::default().max_connections)]
    max_connections: usize,
    /// Bytes of request bodies a node holds at once, across all its connections; past it a
    /// request waits for room (up to 5 s) or gets 503 [default: 32 MiB, or twice the node's
    /// body limit when that is more].
    #[arg(long, env = "BODY_BUDGET_BYTES", value_name = "BYTES")]
    body_budget_bytes: Option<u64>,
    /// Tails (long-polls and event streams of GET /messages) a node serves at once; one more
    /// gets 503. Each holds a place among the instances while it lives: it must leave some of
    /// MAX_INSTANCES to other requests [default: 256, or a quarter of the places clients have
    /// among the instances when that is fewer].
    #[arg(long, env = "MAX_TAILS", value_name = "N")]
    max_tails: Option<usize>,
    /// How many idempotency keys (a write's "id" or Idempotency-Key) a node remembers; a retry
    /// older than that is taken as a new write.
    #[arg(long, env = "IDEMPOTENCY_KEYS", value_name = "N",
        default_value_t = crate::state::DEFAULT_KEY_WINDOW)]
    idempotency_keys: usize,
    /// Keep at least this many bytes of log files; older segments are deleted whole, oldest
    /// first, once committed [default: keep everything].
    #[arg(long, env = "RETENTION_BYTES", value_name = "BYTES")]
    retention_bytes: Option<u64>,
    /// Keep at least this many messages; segments of older ones are deleted whole, oldest
    /// first, once committed [default: keep everything].
    #[arg(long, env = "RETENTION_MESSAGES", value_name = "N")]
    retention_messages: Option<u64>,
    /// Delete a segment once its last write is older than this, oldest first, once committed
    /// [default: keep everything].
    #[arg(long, env = "RETENTION_MS", value_name = "MS")]
    retention_ms: Option<u64>,
    /// A new log segment (the unit retention deletes) starts once the current one holds this
    /// many bytes.
    #[arg(long, env = "SEGMENT_BYTES", value_name = "BYTES",
        default_value_t = crate::state::DEFAULT_SEGMENT_BYTES)]
    segment_bytes: u64,
}

/// The smallest segment a node takes: small segments are for tests; each costs a file.
const LEAST_SEGMENT_BYTES: u64 = 1024;

/// The roles' own settings, passed to their components as they are given; the components
/// define their defaults and rules (see the README), and a node whose component refuses its
/// settings does not start.
#[derive(Debug, Args)]
pub(crate) struct ComponentArgs {
    /// Master: how long a write waits for its write concern before 502 (the message stays and
    /// is still delivered).
    #[arg(long, env = "REPLICATION_TIMEOUT_MS", value_name = "MS")]
    replication_timeout_ms: Option<String>,
    /// Master: how often it checks on an idle secondary.
    #[arg(long, env = "HEARTBEAT_MS", value_name = "MS")]
    heartbeat_ms: Option<String>,
    /// Master: failed contacts in a row after which a secondary is suspected.
    #[arg(long, env = "SUSPECT_AFTER", value_name = "N")]
    suspect_after: Option<String>,
    /// Master: failed contacts in a row after which a secondary is unhealthy, no longer
    /// counted towards the majority it needs to take writes.
    #[arg(long, env = "UNHEALTHY_AFTER", value_name = "N")]
    unhealthy_after: Option<String>,
    /// Master: bound on one contact with a secondary; must exceed the slowest secondary's
    /// delay.
    #[arg(long, env = "PEER_TIMEOUT_MS", value_name = "MS")]
    peer_timeout_ms: Option<String>,
    /// Master: after a disk loss, for one start, take writes once the secondaries that answer
    /// (at least one) have given their logs, without waiting for every secondary (writes
    /// acknowledged only by the missing ones may be dropped when they come back).
    #[arg(long, env = "FORCE_RECOVERY", value_name = "BOOL", num_args = 0..=1,
        default_missing_value = "true")]
    force_recovery: Option<String>,
    /// Secondary: share (0 to 1) of replications it answers 500 after storing them: fault
    /// injection for tests.
    #[arg(long, env = "FAULT_RATE", value_name = "RATE")]
    fault_rate: Option<String>,
}

impl ComponentArgs {
    /// The settings given, by their names.
    fn given(&self) -> Vec<(&'static str, &str)> {
        [
            ("REPLICATION_TIMEOUT_MS", &self.replication_timeout_ms),
            ("HEARTBEAT_MS", &self.heartbeat_ms),
            ("SUSPECT_AFTER", &self.suspect_after),
            ("UNHEALTHY_AFTER", &self.unhealthy_after),
            ("PEER_TIMEOUT_MS", &self.peer_timeout_ms),
            ("FORCE_RECOVERY", &self.force_recovery),
            ("FAULT_RATE", &self.fault_rate),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref()?)))
        .collect()
    }

    /// `config` with the settings given.
    pub(super) fn apply(&self, config: NodeConfig) -> NodeConfig {
        self.given().into_iter().fold(config, |config, (name, value)| config.with(name, value))
    }
}

/// The process environment, where a component's declared settings are looked up: a setting
/// no flag names reaches the component this way.
fn process_environment() -> std::collections::BTreeMap<String, String> {
    std::env::vars().collect()
}

impl NodeArgs {
    pub(super) fn limits(&self) -> anyhow::Result<Limits> {
        if self.cpu_budget_ms == 0 {
            bail!("CPU_BUDGET_MS must be at least 1");
        }
        let memory_bytes = usize::try_from(self.memory_limit_mb)
            .ok()
            .and_then(|mb| mb.checked_mul(1 << 20))
            .filter(|&bytes| bytes > 0)
            .with_context(|| format!("MEMORY_LIMIT_MB={} is out of range", self.memory_limit_mb))?;
        if self.instance_reuse == 0 {
            bail!("INSTANCE_REUSE must be at least 1 (1: a fresh instance for every call)");
        }
        Ok(Limits {
            cpu_budget: Duration::from_millis(self.cpu_budget_ms),
            memory_bytes,
            reuse: self.instance_reuse,
        })
    }

    /// The places client requests have among the instances (what the reserve leaves).
    fn client_places(&self) -> usize {
        let reserved =
            self.reserved_instances.unwrap_or(RuntimeConfig::default_reserve(self.max_instances));
        self.max_instances.saturating_sub(reserved) as usize
    }

    /// The process's runtime settings, for nodes limited by `limits`.
    pub(crate) fn runtime(&self, limits: Limits) -> anyhow::Result<RuntimeConfig> {
        if self.max_instances == 0 {
            bail!("MAX_INSTANCES must be at least 1");
        }
        let reserved =
            self.reserved_instances.unwrap_or(RuntimeConfig::default_reserve(self.max_instances));
        if reserved >= self.max_instances {
            bail!(
                "RESERVED_INSTANCES={reserved} leaves clients nothing of MAX_INSTANCES={}",
                self.max_instances
            );
        }
        let places = (self.max_instances - reserved) as usize;
        if let Some(tails) = self.max_tails.filter(|&tails| tails == 0 || tails >= places) {
            bail!(
                "MAX_TAILS={tails} must be at least 1 and leave other requests some of the {places} \
                 places clients have among MAX_INSTANCES={} (RESERVED_INSTANCES={reserved})",
                self.max_instances
            );
        }
        Ok(RuntimeConfig {
            max_instances: self.max_instances,
            reserved_instances: reserved,
            memory_bytes: limits.memory_bytes,
        })
    }

    fn retention(&self) -> anyhow::Result<Retention> {
        if self.segment_bytes < LEAST_SEGMENT_BYTES {
            bail!(
                "SEGMENT_BYTES must be at least {LEAST_SEGMENT_BYTES}, got {}",
                self.segment_bytes
            );
        }
        if self.retention_ms == Some(0) {
            bail!("RETENTION_MS must be at least 1 (leave it unset to keep everything)");
        }
        Ok(Retention {
            bytes: self.retention_bytes,
            messages: self.retention_messages,
            age: self.retention_ms.map(Duration::from_millis),
            segment_bytes: self.segment_bytes,
        })
    }

    fn edge(&self) -> anyhow::Result<Edge> {
        let ms = |name: &str, ms: u64| {
            if ms == 0 {
                bail!("{name} must be at least 1");
            }
            Ok(Duration::from_millis(ms))
        };
        if self.max_connections == 0 {
            bail!("MAX_CONNECTIONS must be at least 1");
        }
        Ok(Edge {
            idle_timeout: ms("IDLE_TIMEOUT_MS", self.idle_timeout_ms)?,
            header_timeout: ms("HEADER_TIMEOUT_MS", self.header_timeout_ms)?,
            body_timeout: ms("BODY_TIMEOUT_MS", self.body_timeout_ms)?,
            max_connections: self.max_connections,
            body_budget_bytes: self.body_budget_bytes,
            max_tails: self.max_tails.unwrap_or_else(|| Edge::default_tails(self.client_places())),
        })
    }

    /// A node with what every node takes from these arguments.
    pub(super) fn node(
        &self,
        name: String,
        role: Role,
        listen: SocketAddr,
        component: &ComponentFiles,
    ) -> anyhow::Result<NodeConfig> {
        Ok(NodeConfig {
            max_body_bytes: self.max_body_bytes,
            edge: self.edge()?,
            key_window: self.idempotency_keys,
            retention: self.retention()?,
            limits: self.limits()?,
            environment: process_environment(),
            component_candidates: component.candidates.clone(),
            ..NodeConfig::new(name, role, listen, component.path.clone())
        })
    }
}
