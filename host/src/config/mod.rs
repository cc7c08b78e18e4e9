//! What a node is told to be, checked once before anything starts.
//!
//! The host owns what it enforces: where a node listens and keeps its data, the limits on one
//! request and on one client (`limits`), the cluster secret. The role's own settings (a
//! master's secondaries, timeouts and health thresholds, a secondary's delay) are the
//! component's: the host passes them through as environment variables, and the component says
//! whether they are right (`about.check`), so that a new component version that wants a new
//! setting needs no new host.

mod limits;
mod role;
pub(crate) mod setting;
mod topology;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use self::limits::{Edge, Limits};
pub use self::role::Role;
pub(crate) use self::topology::Topology;
use crate::secret::ClusterSecret;

/// The host's own secrets: never passed to a component, whatever it declares.
pub const HOST_SECRETS: [&str; 2] = ["CLUSTER_SECRET", "CLUSTER_SECRET_FILE"];

/// The largest message a client may send unless `MAX_BODY_BYTES` says otherwise.
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;

/// Whether the host writes setting `name` itself: a component setting of that name is not
/// passed (the host's value is the one its limits enforce).
pub(crate) fn env_owned_by_host(name: &str) -> bool {
    [setting::REPLOG_NODE, setting::REPLOG_ROLE, setting::MAX_BODY_BYTES, setting::ELECTED_EPOCH]
        .contains(&name)
}

/// Extra time a call may take beyond the longest its component says it needs (to write a long
/// answer, say) before the host gives up on it.
pub(crate) const CALL_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// Why a node's configuration cannot be used: the text says which setting, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting is malformed, out of range, or does not fit with another.
    #[error("{0}")]
    Invalid(String),
}

/// `host:port` in the one form the outbound allow-list compares in: the host in lower case,
/// the port spelled out (80, HTTP's, when none is given). Both what a component reports of its
/// peers and each request it sends are brought to this form, here only.
pub(crate) fn normalize_authority(authority: &http::uri::Authority) -> String {
    let port = authority.port_u16().unwrap_or(80);
    format!("{}:{port}", authority.host().to_ascii_lowercase())
}

/// Everything one node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Name in logs: `master`, `secondary1`, ...
    pub name: String,
    /// Which logic it runs, and so which host interfaces its component may import.
    pub role: Role,
    /// Where it serves HTTP.
    pub listen: SocketAddr,
    /// Where it serves `GET /metrics` instead of on `listen` (none: on `listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// The component file it runs (and watches, for new versions).
    pub component: PathBuf,
    /// Every file a newer version of its component may appear in (a second build's output):
    /// the reloader watches them all and swaps in the most recently built. Empty: `component`
    /// only.
    pub component_candidates: Vec<PathBuf>,
    /// The role's settings, as the component reads them: `SECONDARIES`, `HEARTBEAT_MS`,
    /// `DELAY_MS`, ... (the component defines, defaults and checks them).
    pub settings: BTreeMap<String, String>,
    /// The largest message a client may send (`MAX_BODY_BYTES`); `DEFAULT_MAX_BODY_BYTES`
    /// when `None`. It is the node's body limit unless its component states a larger request
    /// it takes (a secondary: its master's largest batch).
    pub max_body_bytes: Option<u64>,
    /// What a client connection may hold: deadlines and the connection cap.
    pub edge: Edge,
    /// How many idempotency keys the log remembers.
    pub key_window: usize,
    /// How much of its log the node keeps on disk (`RETENTION_*`, `SEGMENT_BYTES`): all of it
    /// by default.
    pub retention: crate::state::Retention,
    /// Where the node keeps its log; in memory only when `None`.
    pub data_dir: Option<PathBuf>,
    /// What one request may use: CPU, memory.
    pub limits: Limits,
    /// The key the cluster's nodes prove themselves with; `None` runs insecure.
    pub secret: Option<ClusterSecret>,
    /// The epoch an election gave this node, when it is an elected master: its component
    /// opens that one (`ELECTED_EPOCH`), and its state opens no other.
    pub elected_epoch: Option<u64>,
    /// Where a secondary by configuration finds its master (`MASTER_URL`): its console shows
    /// the whole cluster from that master's `/health` and appends through it. Elected nodes
    /// know their master from the election; a master needs none.
    pub master_url: Option<String>,
    /// Where the node runs: the settings a component version declares are taken from here
    /// when they are not in `settings`, except `HOST_SECRETS` (the process environment for the
    /// `replog` command; empty unless set for nodes built through the library).
    pub environment: BTreeMap<String, String>,
}

impl NodeConfig {
    /// A node with nothing but the defaults: no settings for its component, default limits,
    /// and its log in memory. Callers set what differs.
    pub fn new(
        name: impl Into<String>,
        role: Role,
        listen: SocketAddr,
        component: PathBuf,
    ) -> Self {
        NodeConfig {
            name: name.into(),
            role,
            listen,
            metrics_listen: None,
            component,
            component_candidates: Vec::new(),
            settings: BTreeMap::new(),
            max_body_bytes: None,
            edge: Edge::default(),
            key_window: crate::state::DEFAULT_KEY_WINDOW,
            retention: crate::state::Retention::default(),
            master_url: None,
            data_dir: None,
            limits: Limits::default(),
            secret: None,
            elected_epoch: None,
            environment: BTreeMap::new(),
        }
    }

    /// Sets the component setting `name` (builder style).
    pub fn with(mut self, name: &str, value: impl ToString) -> Self {
        self.settings.insert(name.to_owned(), value.to_string());
        self
    }

    /// The component's environment: who it is, the clients' body limit, and its settings.
    pub(crate) fn component_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (setting::REPLOG_NODE.to_owned(), self.name.clone()),
            (setting::REPLOG_ROLE.to_owned(), self.role.to_string()),
            (setting::MAX_BODY_BYTES.to_owned(), self.max_message_bytes().to_string()),
        ];
        if let Some(epoch) = self.elected_epoch {
            env.push((setting::ELECTED_EPOCH.to_owned(), epoch.to_string()));
        }
        let own = |name: &String| env_owned_by_host(name);
        env.extend(
            self.settings.iter().filter(|(k, _)| !own(k)).map(|(k, v)| (k.clone(), v.clone())),
        );
        env
    }

    /// The largest message a client may send.
    pub(crate) fn max_message_bytes(&self) -> u64 {
        self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES)
    }

    /// Bytes of request bodies the node holds at once, for a node whose largest request is
    /// `body_limit`: `BODY_BUDGET_BYTES`, or by default `Edge::MIN_DEFAULT_BODY_BUDGET` or twice
    /// the body limit, whichever is more. Twice, because the body limit's worth is reserved for
    /// the cluster's own traffic and clients must still be able to send their largest body.
    pub(crate) fn body_budget(&self, body_limit: u64) -> u64 {
        self.edge
            .body_budget_bytes
            .unwrap_or_else(|| body_limit.saturating_mul(2).max(Edge::MIN_DEFAULT_BODY_BUDGET))
    }

    /// Checks the body budget holds twice `body_limit`, the largest request the node takes.
    pub(crate) fn check_budget(&self, body_limit: u64) -> Result<(), ConfigError> {
        let (budget, limit) = (self.body_budget(body_limit), body_limit);
        if budget < limit.saturating_mul(2) {
            return Err(ConfigError::Invalid(format!(
                "{}: BODY_BUDGET_BYTES={budget} must be at least twice the largest body this \
                 node takes ({limit} bytes): one for the cluster's own traffic, one for clients",
                self.name
            )));
        }
        Ok(())
    }

    /// Whether the node talks to other nodes: every secondary, and a master with secondaries.
    pub(crate) fn in_a_cluster(&self) -> bool {
        self.role == Role::Secondary
            || self.settings.get(setting::SECONDARIES).is_some_and(|s| !s.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_gets_its_settings_and_nothing_the_host_enforces() {
        let master = NodeConfig::new(
            "master",
            Role::Master,
            "127.0.0.1:8000".parse().unwrap(),
            "m.wasm".into(),
        )
        .with("SECONDARIES", "http://a:1,http://b:2")
        .with("REPLICATION_TIMEOUT_MS", 3000);
        let env = master.component_env();
        assert!(env.contains(&("SECONDARIES".into(), "http://a:1,http://b:2".into())));
        assert!(env.contains(&("REPLICATION_TIMEOUT_MS".into(), "3000".into())));
        let limits: Vec<_> = env.iter().filter(|(name, _)| name == "MAX_BODY_BYTES").collect();
        assert_eq!(limits, [&("MAX_BODY_BYTES".into(), "1048576".into())], "the host's, once");
        let told = master.clone().with("MAX_BODY_BYTES", 5);
        let limits: Vec<_> =
            told.component_env().into_iter().filter(|(name, _)| name == "MAX_BODY_BYTES").collect();
        assert_eq!(limits, [("MAX_BODY_BYTES".into(), "1048576".into())], "never a setting's");
        assert!(master.in_a_cluster());
        let alone = NodeConfig::new("m", Role::Master, "127.0.0.1:1".parse().unwrap(), "".into());
        assert!(!alone.with("SECONDARIES", " ").in_a_cluster());
    }
}
