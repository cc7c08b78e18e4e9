//! The master's settings: their names, their defaults and their rules, all here. The host
//! passes them through from its command line and environment, and asks `check` (the `about`
//! export) before it starts or swaps in a version, so a new version that wants a new setting
//! needs no new host.

use std::sync::OnceLock;
use std::time::Duration;

use replog_guest::peer::{self, PeerUrl};
use replog_guest::settings::{self, BadSetting, DELAY_MS, SECONDARIES};

/// How long a write waits for its write concern, in ms.
pub const REPLICATION_TIMEOUT_MS: &str = "REPLICATION_TIMEOUT_MS";
/// How often an idle secondary is checked on, in ms.
pub const HEARTBEAT_MS: &str = "HEARTBEAT_MS";
/// Failed contacts in a row before a secondary is suspected.
pub const SUSPECT_AFTER: &str = "SUSPECT_AFTER";
/// Failed contacts in a row before a secondary is unhealthy.
pub const UNHEALTHY_AFTER: &str = "UNHEALTHY_AFTER";
/// The bound on one contact with a secondary, in ms.
pub const PEER_TIMEOUT_MS: &str = "PEER_TIMEOUT_MS";
/// Whether a master that lost its log may take writes without hearing from every secondary.
pub const FORCE_RECOVERY: &str = "FORCE_RECOVERY";
/// The secondaries' `DELAY_MS`, in their order, where the host knows them.
pub const SECONDARY_DELAYS: &str = "SECONDARY_DELAYS";
/// The epoch an election gave this master (set by the host on an elected master only).
pub const ELECTED_EPOCH: &str = "ELECTED_EPOCH";

/// The settings it reads, by name: the host passes these through.
pub const NAMES: &[&str] = &[
    SECONDARIES,
    REPLICATION_TIMEOUT_MS,
    HEARTBEAT_MS,
    SUSPECT_AFTER,
    UNHEALTHY_AFTER,
    PEER_TIMEOUT_MS,
    FORCE_RECOVERY,
    SECONDARY_DELAYS,
    ELECTED_EPOCH,
];

/// What a secondary needs of `PEER_TIMEOUT_MS` beyond its `DELAY_MS` to store and answer (the
/// host refuses a cluster that breaks this at start, by the same rule).
pub const DELAY_MARGIN: Duration = Duration::from_millis(500);

/// The master's settings, read and checked: one value of each, so that no setting is read
/// twice or in two ways.
pub struct MasterSettings {
    /// Where its secondaries are, in configuration order.
    pub secondaries: Vec<PeerUrl>,
    /// How long a write waits for its write concern.
    pub replication_timeout: Duration,
    /// How often an idle secondary is checked on.
    pub heartbeat: Duration,
    /// Failed contacts in a row before a secondary is suspected...
    pub suspect_after: u32,
    /// ... and before it is unhealthy, when writes stop counting it for their majority.
    pub unhealthy_after: u32,
    /// Bound on one contact with a secondary.
    pub peer_timeout: Duration,
    /// Whether a master that lost its log may take writes without hearing from every
    /// secondary.
    pub force_recovery: bool,
    /// The epoch its election gave it; none for a master by configuration.
    pub elected_epoch: Option<u64>,
}

impl MasterSettings {
    /// The settings, read from the environment and checked once per instance: an instance's
    /// environment never changes (every instance of a version runs with the one it was loaded
    /// with), and an instance may serve many calls one after another.
    pub fn current() -> Result<&'static Self, BadSetting> {
        static READ: OnceLock<Result<MasterSettings, BadSetting>> = OnceLock::new();
        READ.get_or_init(Self::from_env).as_ref().map_err(Clone::clone)
    }

    /// The settings read from the environment now, and checked: what `about.check` answers
    /// with, so that the host refuses a version whose settings are wrong before it serves.
    pub fn from_env() -> Result<Self, BadSetting> {
        let secondaries = peer::list(&std::env::var(SECONDARIES).unwrap_or_default())
            .map_err(|e| BadSetting(format!("{SECONDARIES}: {e}")))?;
        let count = |name: &str, default: u64| {
            settings::number(name, default).and_then(|n| {
                u32::try_from(n).map_err(|_| BadSetting(format!("{name}={n} is too large")))
            })
        };
        let settings = Self {
            secondaries,
            replication_timeout: settings::millis(REPLICATION_TIMEOUT_MS, 60_000)?,
            heartbeat: settings::millis(HEARTBEAT_MS, 500)?,
            suspect_after: count(SUSPECT_AFTER, 1)?,
            unhealthy_after: count(UNHEALTHY_AFTER, 3)?,
            peer_timeout: settings::millis(PEER_TIMEOUT_MS, 5_000)?,
            force_recovery: settings::flag(FORCE_RECOVERY)?,
            elected_epoch: match settings::number(ELECTED_EPOCH, 0)? {
                0 => None,
                epoch => Some(epoch),
            },
        };
        settings.checked()
    }

    /// The rules the settings must follow together.
    fn checked(self) -> Result<Self, BadSetting> {
        let bad = |why: String| Err(BadSetting(why));
        if self.suspect_after == 0 {
            return bad(format!("{SUSPECT_AFTER} must be at least 1"));
        }
        if self.unhealthy_after < self.suspect_after {
            return bad(format!("{UNHEALTHY_AFTER} must be at least {SUSPECT_AFTER}"));
        }
        if self.heartbeat < Duration::from_millis(10) {
            return bad(format!("{HEARTBEAT_MS} must be at least 10"));
        }
        if self.peer_timeout.is_zero() || self.replication_timeout.is_zero() {
            return bad(format!(
                "{PEER_TIMEOUT_MS} and {REPLICATION_TIMEOUT_MS} must be at least 1"
            ));
        }
        // Where the host knows the secondaries' delays (one process runs them all), each must
        // leave its secondary time to answer.
        let delays = settings::list(SECONDARY_DELAYS);
        for (i, delay) in delays.iter().enumerate() {
            let delay = delay.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                BadSetting(format!("{SECONDARY_DELAYS} item {delay:?} is not a whole number"))
            })?;
            if let Some(why) = delay_warning(delay, self.peer_timeout) {
                return Err(BadSetting(format!("secondary{}: {why}", i + 1)));
            }
        }
        Ok(self)
    }

    /// Number of nodes holding the log: the master and every secondary.
    pub fn nodes(&self) -> u64 {
        self.secondaries.len() as u64 + 1
    }

    /// The configured secondary whose URL is `url`, as the host names it to a stream: none
    /// for a URL not (or no longer) configured.
    pub fn peer(&self, url: &str) -> Option<&PeerUrl> {
        self.secondaries.iter().find(|p| p.url == url)
    }

    /// The longest one call may take: a write waiting for its write concern, or a recovery
    /// round's probe and fetch.
    pub fn longest_call(&self) -> Duration {
        self.replication_timeout.max(self.peer_timeout * 2)
    }
}

/// Why a secondary with `delay` can never acknowledge within `peer_timeout`, if it cannot: a
/// rule of the settings, checked at start for the delays the host knows and shown on
/// `/health` for those secondaries report.
pub fn delay_warning(delay: Duration, peer_timeout: Duration) -> Option<String> {
    (delay + DELAY_MARGIN > peer_timeout).then(|| {
        format!(
            "its {DELAY_MS} of {} does not fit in this master's {PEER_TIMEOUT_MS} of {}: every \
             replication to it times out; raise {PEER_TIMEOUT_MS} to at least {}",
            delay.as_millis(),
            peer_timeout.as_millis(),
            (delay + DELAY_MARGIN).as_millis()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, with no secondary.
    fn defaults() -> MasterSettings {
        MasterSettings {
            secondaries: Vec::new(),
            replication_timeout: Duration::from_secs(60),
            heartbeat: Duration::from_millis(500),
            suspect_after: 1,
            unhealthy_after: 3,
            peer_timeout: Duration::from_secs(5),
            force_recovery: false,
            elected_epoch: None,
        }
    }

    fn refusal(settings: MasterSettings) -> String {
        match settings.checked() {
            Ok(_) => panic!("accepted"),
            Err(BadSetting(why)) => why,
        }
    }

    #[test]
    fn the_settings_hold_together_or_say_which_rule_they_break() {
        assert!(defaults().checked().is_ok());
        let suspect_never = MasterSettings { suspect_after: 0, ..defaults() };
        assert_eq!(refusal(suspect_never), "SUSPECT_AFTER must be at least 1");
        let unhealthy_first = MasterSettings { suspect_after: 4, unhealthy_after: 3, ..defaults() };
        assert_eq!(refusal(unhealthy_first), "UNHEALTHY_AFTER must be at least SUSPECT_AFTER");
        let equal = MasterSettings { suspect_after: 3, unhealthy_after: 3, ..defaults() };
        assert!(equal.checked().is_ok(), "unhealthy as soon as suspected");
        let hurried = MasterSettings { heartbeat: Duration::from_millis(9), ..defaults() };
        assert_eq!(refusal(hurried), "HEARTBEAT_MS must be at least 10");
        assert!(
            MasterSettings { heartbeat: Duration::from_millis(10), ..defaults() }.checked().is_ok()
        );
        for zero in [
            MasterSettings { peer_timeout: Duration::ZERO, ..defaults() },
            MasterSettings { replication_timeout: Duration::ZERO, ..defaults() },
        ] {
            assert!(refusal(zero).contains("must be at least 1"));
        }
    }

    #[test]
    fn a_call_may_take_a_write_concern_or_a_probe_and_a_fetch() {
        let mut settings = defaults();
        assert_eq!(settings.longest_call(), Duration::from_secs(60), "the write concern's wait");
        settings.replication_timeout = Duration::from_secs(3);
        assert_eq!(settings.longest_call(), Duration::from_secs(10), "two peer timeouts");
        assert_eq!(settings.nodes(), 1, "a master alone");
        settings.secondaries = peer::list("http://a:1,http://b:2").unwrap();
        assert_eq!(settings.nodes(), 3);
        assert_eq!(settings.peer("http://b:2").map(|p| p.authority.as_str()), Some("b:2"));
        assert!(settings.peer("http://c:3").is_none());
    }

    #[test]
    fn a_delay_that_does_not_fit_the_peer_timeout_is_named() {
        let timeout = Duration::from_secs(5);
        assert_eq!(delay_warning(Duration::from_millis(4500), timeout), None);
        let warning = delay_warning(Duration::from_millis(6000), timeout).unwrap();
        assert!(warning.contains("6000") && warning.contains("at least 6500"), "{warning}");
    }
}
