//! The shape of a cluster, as `replog cluster` runs it and `replog compose` writes it.

use std::time::Duration;

use super::ConfigError;

/// The shape of a cluster: the master's port and one delay per secondary; secondary `i`
/// (counting from 1) listens on `master_port + i`. `replog cluster` and `replog compose` build
/// theirs from the same settings, so both read them the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    pub(crate) master_port: u16,
    pub(crate) delays: Vec<Duration>,
}

impl Topology {
    /// Delays when none are given: one fast secondary and one slow enough to see a write
    /// block, as in the original project; any further secondaries get none.
    pub(crate) const DEFAULT_DELAYS_MS: [u64; 2] = [0, 1500];

    /// Checks `NUM_SECONDARIES`, `SECONDARY_DELAYS` and `MASTER_PORT` together.
    pub(crate) fn new(
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
    pub(crate) fn secondary_port(&self, i: usize) -> u16 {
        self.master_port + i as u16
    }
}

/// Parses `0,1500`-style millisecond lists.
pub(crate) fn parse_delays(list: &str) -> Result<Vec<Duration>, ConfigError> {
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
}
