//! The secondary's settings: their names, defaults and rules. The host passes them through
//! and asks `check` (the `about` export) before it starts or swaps in a version.

use std::time::Duration;

use replog_guest::about::Needs;
use replog_guest::settings::{self, BadSetting, DELAY_MS, MAX_BODY_BYTES};
use replog_guest::wire;

/// The share of replications answered `500` after storing, for tests.
pub const FAULT_RATE: &str = "FAULT_RATE";

/// The settings it reads, by name: the host passes these through.
pub const NAMES: &[&str] = &[DELAY_MS, FAULT_RATE];

/// The secondary's settings, read and checked.
pub struct SecondarySettings {
    /// Artificial delay before storing a replication (`DELAY_MS`): slow replicas on demand.
    pub delay_ms: u64,
    /// Share of replications answered `500` after storing (`FAULT_RATE`): fault injection for
    /// tests.
    pub fault_rate: f64,
    /// The largest message a client may send its master (`MAX_BODY_BYTES`, from the host;
    /// 0 when it gave none): what sizes the largest batch it takes.
    pub max_message_bytes: u64,
}

impl SecondarySettings {
    /// The settings read from the environment now, and checked: what `about.check` answers
    /// with, and what each request reads (an instance's environment never changes).
    pub fn from_env() -> Result<Self, BadSetting> {
        Ok(Self {
            delay_ms: settings::number(DELAY_MS, 0)?,
            fault_rate: settings::fraction(FAULT_RATE)?,
            max_message_bytes: settings::number(MAX_BODY_BYTES, 0)?,
        })
    }

    /// A secondary sends no requests; its longest call is a replication that waits its delay;
    /// its largest request is the largest batch its master sends.
    pub fn needs(&self) -> Needs {
        Needs::node(Duration::from_millis(self.delay_ms), Vec::new())
            .taking_requests_up_to(wire::largest_batch(self.max_message_bytes))
    }
}
