//! The decisions of an election, pure: how long a holder of the leader key may act on it, who
//! may campaign, and whether the timings hold together.
//!
//! The lease is a hint for liveness, never the guard of safety (that is the epoch every
//! secondary checks). But a master must still stop acknowledging before another can be elected:
//! so a holder counts its time from when it *sent* the renewal etcd confirmed (etcd counts from
//! when it received it, later), and stops at a renew deadline below the lease's TTL.

use std::time::{Duration, Instant};

/// The timings of an election; the defaults suit a LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long the leader key outlives its holder's last renewal.
    pub ttl: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How long after the last confirmed renewal the holder stops acknowledging: below `ttl`,
    /// so that it has stopped before etcd can let the key go and another node take it.
    pub renew_deadline: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        // The shortest TTL etcd takes, for a write outage of about 2 s after a master dies; a
        // master stops acknowledging 500 ms before its key can lapse; a renewal every 250 ms
        // (and a look at the key as often, by the others) leaves it six tries within that.
        Self {
            ttl: Duration::from_secs(2),
            renew_every: Duration::from_millis(250),
            renew_deadline: Duration::from_millis(1500),
        }
    }
}

impl Timings {
    /// Whether they hold together: renewals several times within the deadline, the deadline
    /// below the TTL with room for a clock step and a slow call, a TTL of whole seconds (etcd's
    /// unit) of at least 2 (etcd refuses shorter ones on a default cluster).
    pub fn check(&self) -> Result<(), String> {
        let Self { ttl, renew_every, renew_deadline } = *self;
        if ttl.subsec_nanos() != 0 || ttl < Duration::from_secs(2) {
            return Err(format!("the lease TTL must be whole seconds, at least 2, not {ttl:?}"));
        }
        if renew_deadline + Duration::from_millis(500) > ttl {
            return Err(format!(
                "the renew deadline ({renew_deadline:?}) must be at least 500 ms below the lease \
                 TTL ({ttl:?}): a master must stop before its key can expire"
            ));
        }
        if renew_every.is_zero() || renew_every * 2 > renew_deadline {
            return Err(format!(
                "renewals ({renew_every:?} apart) must fit at least twice in the renew deadline \
                 ({renew_deadline:?})"
            ));
        }
        Ok(())
    }
}

/// How long the holder of the leader key may still act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseClock {
    /// When the last renewal etcd confirmed was sent (or the grant, before any).
    confirmed_sent_at: Instant,
    deadline: Duration,
}

impl LeaseClock {
    /// A clock for a lease whose grant was sent at `sent_at`.
    pub fn new(sent_at: Instant, deadline: Duration) -> Self {
        Self { confirmed_sent_at: sent_at, deadline }
    }

    /// etcd confirmed a renewal sent at `sent_at` (a late answer to an older renewal never
    /// moves the clock back).
    pub fn renewed(&mut self, sent_at: Instant) {
        self.confirmed_sent_at = self.confirmed_sent_at.max(sent_at);
    }

    /// Whether the holder may act at `now`: checked before every acknowledgement, also on
    /// waking from a pause, whatever the renewals meanwhile.
    pub fn holds_at(&self, now: Instant) -> bool {
        now < self.confirmed_sent_at + self.deadline
    }

    /// The time it has left at `now` (zero once past).
    pub fn left_at(&self, now: Instant) -> Duration {
        (self.confirmed_sent_at + self.deadline).saturating_duration_since(now)
    }
}

/// Whether a node whose log ends at `mine` may campaign, having heard from the members it
/// could reach (each with where its log ends) and whether a master still answers: not while a
/// master answers, and not when a reachable member is ahead (it holds writes this node lacks:
/// let it win, as Patroni lets the healthiest node).
pub fn may_campaign(mine: (u64, u64), reachable: &[(u64, u64)], master_answers: bool) -> bool {
    // (epoch of the last entry, seq): later epoch first, then the longer log.
    !master_answers && reachable.iter().all(|&theirs| theirs <= mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_timings_hold_together_and_bad_ones_are_named() {
        assert_eq!(Timings::default().check(), Ok(()));
        let s = Duration::from_secs;
        let bad = [
            Timings { ttl: Duration::from_millis(2500), ..Timings::default() },
            Timings {
                ttl: s(1),
                renew_deadline: Duration::from_millis(400),
                renew_every: Duration::from_millis(100),
            },
            Timings { renew_deadline: s(3), ..Timings::default() },
            Timings { renew_every: s(1) + Duration::from_millis(1), ..Timings::default() },
            Timings { renew_every: Duration::ZERO, ..Timings::default() },
        ];
        for timings in bad {
            assert!(timings.check().is_err(), "{timings:?}");
        }
    }

    #[test]
    fn a_holder_stops_at_its_deadline_counted_from_the_renewal_it_sent() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut clock = LeaseClock::new(start, ms(2000));
        assert!(clock.holds_at(start + ms(1999)));
        assert!(!clock.holds_at(start + ms(2000)), "not a moment past the deadline");
        clock.renewed(start + ms(500));
        assert!(clock.holds_at(start + ms(2499)));
        assert_eq!(clock.left_at(start + ms(2000)), ms(500));
        clock.renewed(start + ms(100));
        assert!(clock.holds_at(start + ms(2499)), "a late answer never moves it back");
        // A pause: nothing renewed while stopped, so on waking it no longer holds.
        assert!(!clock.holds_at(start + ms(60_000)));
        assert_eq!(clock.left_at(start + ms(60_000)), Duration::ZERO);
    }

    #[test]
    fn only_the_most_advanced_reachable_node_campaigns_and_none_while_a_master_answers() {
        assert!(
            may_campaign((2, 10), &[(2, 9), (1, 40)], false),
            "a later epoch beats a longer log"
        );
        assert!(may_campaign((2, 10), &[(2, 10)], false), "a tie: both may, etcd picks one");
        assert!(!may_campaign((2, 10), &[(2, 11)], false));
        assert!(!may_campaign((2, 10), &[(3, 1)], false));
        assert!(!may_campaign((9, 99), &[], true), "a master still answers");
        assert!(may_campaign((0, 0), &[], false), "alone and empty, it may");
    }
}
