//! The master's settings, read from the environment the host gives it. The defaults here
//! match the host's, for a component run by some other host.

use std::time::Duration;

use replog_guest::settings::{self, BadSetting};
use wasip2::http::types::Scheme;

/// Largest client request body unless `MAX_BODY_BYTES` says otherwise.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

pub struct Settings {
    pub secondaries: Vec<Peer>,
    /// How long a write waits for its write concern.
    pub replication_timeout: Duration,
    /// How often an idle secondary is checked on.
    pub heartbeat: Duration,
    /// Failed contacts in a row before a secondary is suspected, and unhealthy.
    pub suspect_after: u32,
    pub unhealthy_after: u32,
    /// Bound on one contact with a secondary.
    pub peer_timeout: Duration,
    pub max_body_bytes: u64,
    /// Whether a master that lost its log may take writes without hearing from every
    /// secondary.
    pub force_recovery: bool,
}

/// A secondary, as the master addresses it.
pub struct Peer {
    /// The URL exactly as configured: its name in `acks`, `/health` and the host's records.
    pub url: String,
    pub scheme: Scheme,
    pub authority: String,
    /// Its path prefix, if the URL has one (`""` otherwise).
    pub prefix: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, BadSetting> {
        let secondaries = settings::list("SECONDARIES")
            .into_iter()
            .map(|url| Peer::parse(&url))
            .collect::<Result<_, _>>()?;
        let count = |name: &str, default: u64| {
            settings::number(name, default).and_then(|n| {
                u32::try_from(n).map_err(|_| BadSetting(format!("{name}={n} is too large")))
            })
        };
        Ok(Self {
            secondaries,
            replication_timeout: settings::millis("REPLICATION_TIMEOUT_MS", 60_000)?,
            heartbeat: settings::millis("HEARTBEAT_MS", 500)?,
            suspect_after: count("SUSPECT_AFTER", 1)?,
            unhealthy_after: count("UNHEALTHY_AFTER", 3)?,
            peer_timeout: settings::millis("PEER_TIMEOUT_MS", 5_000)?,
            max_body_bytes: settings::number("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?,
            force_recovery: settings::flag("FORCE_RECOVERY")?,
        })
    }

    /// Number of nodes holding the log: the master and every secondary.
    pub fn nodes(&self) -> u64 {
        self.secondaries.len() as u64 + 1
    }

    pub fn peer(&self, url: &str) -> Option<&Peer> {
        self.secondaries.iter().find(|p| p.url == url)
    }
}

impl Peer {
    fn parse(url: &str) -> Result<Self, BadSetting> {
        let bad = |why: &str| BadSetting(format!("SECONDARIES entry {url:?} {why}"));
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(bad("must start with http:// or https://"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(bad("has no host"));
        }
        let prefix = path.trim_end_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
        Ok(Self { url: url.to_owned(), scheme, authority: authority.to_owned(), prefix })
    }

    /// The path of its endpoint `endpoint` (e.g. `/replicate`).
    pub fn path(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.prefix)
    }
}
