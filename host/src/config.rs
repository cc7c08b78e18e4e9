//! Node configuration, parsed and checked once, before anything starts.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::ClusterSecret;

/// Extra time a request may take beyond the longest wait its role legitimately has (the
/// replication timeout on the master, the delay on a secondary) before the host gives up on it.
pub const REQUEST_TIMEOUT_MARGIN: Duration = Duration::from_secs(30);

/// Which logic a node runs, and so which host interfaces its component may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Master,
    Secondary,
}

impl Role {
    /// Largest request body the role takes unless told otherwise. A secondary's is larger than
    /// the master's client limit: a batch carries many messages, and JSON escaping can grow
    /// each one.
    pub fn default_max_body_bytes(self) -> u64 {
        match self {
            Role::Master => 1 << 20,
            Role::Secondary => 16 << 20,
        }
    }

    /// File name of the role's component in a build or components directory.
    pub fn component_file(self) -> &'static str {
        match self {
            Role::Master => "replog_master.wasm",
            Role::Secondary => "replog_secondary.wasm",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Secondary => "secondary",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("secondary URL {url:?}: {why}")]
    BadPeerUrl { url: String, why: String },
    #[error("{0}")]
    Invalid(String),
}

/// A secondary as the master addresses it: the URL as configured, which is also its name in
/// answers and logs, and the `host:port` the outbound allow-list matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl {
    url: String,
    authority: String,
}

impl PeerUrl {
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// `host:port`, lower-case, with the port spelled out.
    pub fn authority(&self) -> &str {
        &self.authority
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for PeerUrl {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ConfigError::BadPeerUrl { url: url.to_owned(), why: why.to_owned() };
        let uri: http::Uri = url.parse().map_err(|e| bad(&format!("not a URL ({e})")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported between nodes; use http://")),
            _ => return Err(bad("must start with http://")),
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("has no host"))?;
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        Ok(Self {
            url: url.to_owned(),
            authority: normalize_authority(host, uri.port_u16().unwrap_or(80)),
        })
    }
}

/// `host:port` in the form both configuration and outbound requests are compared in.
pub fn normalize_authority(host: &str, port: u16) -> String {
    format!("{}:{port}", host.to_ascii_lowercase())
}

/// Bounds on what one request may use. A request over them fails alone; the node serves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time the component may spend executing (not waiting) for one request.
    pub cpu_budget: Duration,
    /// Largest linear memory one request's instance may grow to.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { cpu_budget: Duration::from_secs(2), memory_bytes: 128 << 20 }
    }
}

/// The HTTP edge: how long a client may take and how much it may hold, so that slow or
/// careless clients cannot tie a node up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// How long a connection may wait for its next request (keep-alive) before it is closed.
    pub idle_timeout: Duration,
    /// How long a request may take from its first byte to the end of its headers; past it the
    /// client gets `408` and the connection is closed.
    pub header_timeout: Duration,
    /// How long a request's whole body may take to arrive; past it, `408`. The body is
    /// received before a component instance is taken for the request.
    pub body_timeout: Duration,
    /// Connections a node keeps open at once; one more is answered `503` and closed.
    pub max_connections: usize,
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

/// How the master replicates, and how long writers wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replication {
    /// How long a write waits for its write concern before `502` (it stays in the log and
    /// is still delivered). Long enough by default for a person to start a stopped secondary.
    pub timeout: Duration,
    /// How often an idle secondary is checked on.
    pub heartbeat: Duration,
    /// Failed contacts in a row after which a secondary is `suspected`...
    pub suspect_after: u32,
    /// ... and `unhealthy`: no longer counted towards a majority.
    pub unhealthy_after: u32,
    /// Bound on one contact with a secondary (connect and answer). Must exceed the slowest
    /// secondary's `DELAY_MS`.
    pub peer_timeout: Duration,
}

impl Default for Replication {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            heartbeat: Duration::from_millis(500),
            suspect_after: 1,
            unhealthy_after: 3,
            peer_timeout: Duration::from_secs(5),
        }
    }
}

/// What a secondary needs of `PEER_TIMEOUT_MS` beyond its `DELAY_MS` to store a batch and
/// answer. The master component warns on `/health` by the same rule when it cannot be checked
/// at start (nodes started apart).
pub const DELAY_MARGIN: Duration = Duration::from_millis(500);

impl Replication {
    /// Refuses a secondary whose delay leaves it no time to answer within `peer_timeout`: the
    /// master would give up on every replication to it, and it would never catch up.
    pub fn check_delay(&self, secondary: &str, delay: Duration) -> Result<(), ConfigError> {
        if delay + DELAY_MARGIN > self.peer_timeout {
            return Err(ConfigError::Invalid(format!(
                "{secondary}'s delay of {} ms does not fit in PEER_TIMEOUT_MS={}: the master \
                 would give up on every replication to it. Raise PEER_TIMEOUT_MS to at least {} \
                 (the delay plus {} ms to store and answer)",
                delay.as_millis(),
                self.peer_timeout.as_millis(),
                (delay + DELAY_MARGIN).as_millis(),
                DELAY_MARGIN.as_millis()
            )));
        }
        Ok(())
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(why.to_owned()));
        if self.suspect_after == 0 {
            return invalid("SUSPECT_AFTER must be at least 1");
        }
        if self.unhealthy_after < self.suspect_after {
            return invalid("UNHEALTHY_AFTER must be at least SUSPECT_AFTER");
        }
        if self.heartbeat < Duration::from_millis(10) {
            return invalid("HEARTBEAT_MS must be at least 10");
        }
        if self.peer_timeout.is_zero() || self.timeout.is_zero() {
            return invalid("PEER_TIMEOUT_MS and REPLICATION_TIMEOUT_MS must be at least 1");
        }
        Ok(())
    }
}

/// Everything one node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Name in logs: `master`, `secondary1`, ...
    pub name: String,
    pub role: Role,
    pub listen: SocketAddr,
    pub component: PathBuf,
    /// The master's secondaries (empty on a secondary).
    pub secondaries: Vec<PeerUrl>,
    /// A secondary's artificial delay before acknowledging a replication.
    pub delay: Duration,
    /// The master's replication settings.
    pub replication: Replication,
    /// A secondary's share of replications answered `500` after storing (fault injection for
    /// tests; 0 in production).
    pub fault_rate: f64,
    /// Largest request body the node takes; the role's default when `None`.
    pub max_body_bytes: Option<u64>,
    pub edge: Edge,
    /// How many idempotency keys the log remembers.
    pub key_window: usize,
    /// Where the node keeps its log; in memory only when `None`.
    pub data_dir: Option<PathBuf>,
    pub limits: Limits,
    /// The key the cluster's nodes prove themselves with; `None` runs insecure.
    pub secret: Option<ClusterSecret>,
    /// A master that lost its log takes writes after hearing from whichever secondaries
    /// answer, rather than waiting for those that may hold acknowledged writes.
    pub force_recovery: bool,
}

impl NodeConfig {
    /// A node with nothing but the defaults: no peers, no delay, no faults, default
    /// replication and limits, and its log in memory. Callers set what differs.
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
            component,
            secondaries: Vec::new(),
            delay: Duration::ZERO,
            replication: Replication::default(),
            fault_rate: 0.0,
            max_body_bytes: None,
            edge: Edge::default(),
            key_window: crate::state::DEFAULT_KEY_WINDOW,
            data_dir: None,
            limits: Limits::default(),
            secret: None,
            force_recovery: false,
        }
    }

    /// The component's settings, as environment variables named as in the original project.
    pub fn component_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("REPLOG_NODE".to_owned(), self.name.clone()),
            ("REPLOG_ROLE".to_owned(), self.role.to_string()),
        ];
        match self.role {
            Role::Master => {
                let urls: Vec<&str> = self.secondaries.iter().map(PeerUrl::as_str).collect();
                let r = &self.replication;
                env.extend([
                    ("SECONDARIES".to_owned(), urls.join(",")),
                    ("REPLICATION_TIMEOUT_MS".to_owned(), r.timeout.as_millis().to_string()),
                    ("HEARTBEAT_MS".to_owned(), r.heartbeat.as_millis().to_string()),
                    ("SUSPECT_AFTER".to_owned(), r.suspect_after.to_string()),
                    ("UNHEALTHY_AFTER".to_owned(), r.unhealthy_after.to_string()),
                    ("PEER_TIMEOUT_MS".to_owned(), r.peer_timeout.as_millis().to_string()),
                ]);
                if self.force_recovery {
                    env.push(("FORCE_RECOVERY".to_owned(), "true".to_owned()));
                }
            }
            Role::Secondary => {
                env.push(("DELAY_MS".to_owned(), self.delay.as_millis().to_string()));
                if self.fault_rate > 0.0 {
                    env.push(("FAULT_RATE".to_owned(), self.fault_rate.to_string()));
                }
            }
        }
        env.push(("MAX_BODY_BYTES".to_owned(), self.body_limit().to_string()));
        env
    }

    /// Largest request body the node takes.
    pub fn body_limit(&self) -> u64 {
        self.max_body_bytes.unwrap_or(self.role.default_max_body_bytes())
    }

    /// The only `host:port`s this node's component may send requests to.
    pub fn allowed_peers(&self) -> Vec<String> {
        self.secondaries.iter().map(|p| p.authority().to_owned()).collect()
    }

    /// Wall-clock bound on one request, waits included.
    pub fn request_timeout(&self) -> Duration {
        let wait = match self.role {
            Role::Master => self.replication.timeout.max(self.replication.peer_timeout),
            Role::Secondary => self.delay,
        };
        wait + REQUEST_TIMEOUT_MARGIN
    }
}

/// The shape of a cluster: the master's port and one delay per secondary; secondary `i`
/// (counting from 1) listens on `master_port + i`. `replog cluster` and `replog compose` build
/// theirs from the same settings, so both read them the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub master_port: u16,
    pub delays: Vec<Duration>,
}

impl Topology {
    /// Delays when none are given: one fast secondary and one slow enough to see a write
    /// block, as in the original project; any further secondaries get none.
    pub const DEFAULT_DELAYS_MS: [u64; 2] = [0, 1500];

    /// Checks `NUM_SECONDARIES`, `SECONDARY_DELAYS` and `MASTER_PORT` together.
    pub fn new(
        master_port: u16,
        num_secondaries: i64,
        delays: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let invalid = |why: String| Err(ConfigError::Invalid(why));
        let Ok(n) = u16::try_from(num_secondaries) else {
            return invalid(format!(
                "NUM_SECONDARIES must be a whole number from 1 to 65534, got {num_secondaries}"
            ));
        };
        if n == 0 {
            return invalid("NUM_SECONDARIES must be at least 1, got 0".into());
        }
        if master_port == 0 {
            return invalid("MASTER_PORT must be from 1 to 65535, got 0".into());
        }
        let last = u32::from(master_port) + u32::from(n);
        if last > u32::from(u16::MAX) {
            return invalid(format!(
                "{n} secondaries after MASTER_PORT={master_port} would need ports up to {last}, past 65535"
            ));
        }
        let delays = match delays {
            Some(list) => {
                let delays = parse_delays(list)?;
                if delays.len() != usize::from(n) {
                    return invalid(format!(
                        "SECONDARY_DELAYS has {} values ({list}) but NUM_SECONDARIES is {n}: give one delay per secondary",
                        delays.len()
                    ));
                }
                delays
            }
            None => (0..usize::from(n))
                .map(|i| Self::DEFAULT_DELAYS_MS.get(i).copied().unwrap_or(0))
                .map(Duration::from_millis)
                .collect(),
        };
        Ok(Self { master_port, delays })
    }

    /// Port of secondary `i`, counting from 1.
    pub fn secondary_port(&self, i: usize) -> u16 {
        self.master_port + i as u16
    }
}

/// Parses `0,1500`-style millisecond lists.
pub fn parse_delays(list: &str) -> Result<Vec<Duration>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .map(|item| {
            item.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                ConfigError::Invalid(format!(
                    "delay {item:?} in {list:?} is not a whole number of milliseconds"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_and_normalized() {
        let peer: PeerUrl = "http://Secondary1:8001".parse().unwrap();
        assert_eq!(peer.authority(), "secondary1:8001");
        assert_eq!(peer.as_str(), "http://Secondary1:8001");
        assert_eq!("http://example.com".parse::<PeerUrl>().unwrap().authority(), "example.com:80");
        for bad in ["secondary1:8001", "https://a:1", "http://", "http://a:1/?x=1", "ftp://a"] {
            assert!(bad.parse::<PeerUrl>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn delays_parse_or_say_which_item_is_wrong() {
        assert_eq!(parse_delays("0, 1500").unwrap(), [Duration::ZERO, Duration::from_millis(1500)]);
        let err = parse_delays("0,abc").unwrap_err().to_string();
        assert!(err.contains("\"abc\""), "{err}");
        assert!(parse_delays("-5").is_err());
    }

    #[test]
    fn topologies_are_checked_whole() {
        let default = Topology::new(8000, 2, None).unwrap();
        assert_eq!(default.delays, [Duration::ZERO, Duration::from_millis(1500)]);
        assert_eq!(default.secondary_port(2), 8002);
        let five = Topology::new(8000, 5, Some("0,100,500,1000,2000")).unwrap();
        assert_eq!(five.delays.len(), 5);
        assert_eq!(Topology::new(8000, 3, None).unwrap().delays[2], Duration::ZERO);
        for (port, n, delays, says) in [
            (8000, 3, Some("0,1"), "has 2 values"),
            (8000, 0, None, "at least 1"),
            (8000, -2, None, "got -2"),
            (0, 2, None, "MASTER_PORT"),
            (65534, 2, None, "past 65535"),
            (8000, 2, Some("0,x"), "\"x\""),
        ] {
            let err = Topology::new(port, n, delays).unwrap_err().to_string();
            assert!(err.contains(says), "{err:?} should mention {says:?}");
        }
    }

    #[test]
    fn components_get_their_role_settings_only() {
        let master = NodeConfig {
            secondaries: vec!["http://a:1".parse().unwrap(), "http://b:2".parse().unwrap()],
            replication: Replication { timeout: Duration::from_secs(3), ..Replication::default() },
            ..NodeConfig::new(
                "master",
                Role::Master,
                "127.0.0.1:8000".parse().unwrap(),
                "m.wasm".into(),
            )
        };
        let env = master.component_env();
        assert!(env.contains(&("SECONDARIES".into(), "http://a:1,http://b:2".into())));
        assert!(env.contains(&("REPLICATION_TIMEOUT_MS".into(), "3000".into())));
        assert!(!env.iter().any(|(k, _)| k == "DELAY_MS"));
        assert_eq!(master.allowed_peers(), ["a:1", "b:2"]);
        assert!(env.contains(&("HEARTBEAT_MS".into(), "500".into())));
        // The longer of the write wait (3 s) and one contact with a secondary (5 s), plus margin.
        assert_eq!(master.request_timeout(), Duration::from_secs(5) + REQUEST_TIMEOUT_MARGIN);
    }
}
