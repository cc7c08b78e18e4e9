//! Node settings, which the host hands to components as environment variables. An instance's
//! environment is the one its version was loaded with and never changes, while a kept instance
//! serves many calls one after another: a component may read its settings once per instance
//! (the master does) or per call (the secondary does); either sees the same values.
//!
//! Each role's crate owns the names of the settings it reads (its `settings::NAMES`); the names
//! here are those more than one crate writes.

use std::time::Duration;

/// The master's secondaries, as base URLs separated by commas: read by the master, and by the
/// runaway component to name its peers the same way.
pub const SECONDARIES: &str = "SECONDARIES";

/// A secondary's artificial delay before it stores a replication: read by the secondary, and
/// named by the master when a secondary's delay cannot fit its `PEER_TIMEOUT_MS`.
pub const DELAY_MS: &str = "DELAY_MS";

/// The largest message a client may send the master, in bytes: a host setting, which the
/// host passes to every component under this name.
pub const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";

/// A setting that is present but not usable. The host validates settings before it starts a
/// node, so seeing this means the component runs under a host that did not.
#[derive(Debug, Clone)]
pub struct BadSetting(pub String);

impl std::fmt::Display for BadSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Environment variable `name` as a whole number, `default` when unset or empty.
pub fn number(name: &str, default: u64) -> Result<u64, BadSetting> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            v.trim().parse().map_err(|_| BadSetting(format!("{name}={v:?} is not a whole number")))
        }
        _ => Ok(default),
    }
}

/// Environment variable `name` as a fraction from 0 to 1, 0 when unset or empty.
pub fn fraction(name: &str) -> Result<f64, BadSetting> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<f64>() {
            Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
            _ => Err(BadSetting(format!("{name}={v:?} is not a number from 0 to 1"))),
        },
        _ => Ok(0.0),
    }
}

/// Environment variable `name` as a yes/no switch, off when unset or empty.
pub fn flag(name: &str) -> Result<bool, BadSetting> {
    match std::env::var(name) {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => Ok(false),
            "1" | "true" | "yes" | "on" => Ok(true),
            _ => Err(BadSetting(format!("{name}={v:?} is not true or false"))),
        },
        Err(_) => Ok(false),
    }
}

/// Environment variable `name` as milliseconds.
pub fn millis(name: &str, default: u64) -> Result<Duration, BadSetting> {
    number(name, default).map(Duration::from_millis)
}

/// Environment variable `name` as a comma-separated list, empty items dropped.
pub fn list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
