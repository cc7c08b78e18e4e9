//! A replication stream's decisions, pure so that they are tested on the native target: what a
//! step does next for a secondary, how a contact is judged, and when the next step runs.

use std::time::Duration;

use crate::bindings::exports::replog::node::replicator::Wake;
use crate::bindings::replog::node::peers::{Contact, Outcome, Peer, Status};

/// The first retry after a failure waits about this long; each further failure doubles it,
/// up to the heartbeat interval.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// What a step does for a secondary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask where its log stands: it has not answered this master yet.
    Probe,
    /// Send what it lacks, or a heartbeat.
    Send,
    /// Nothing until the next append, or the heartbeat after this long.
    Idle(Duration),
}

/// What to do for `peer` now (`now_ms`, Unix ms) with a log of `len` entries.
pub fn next(peer: &Peer, len: u64, now_ms: u64, heartbeat: Duration) -> Next {
    if !peer.synced {
        return Next::Probe;
    }
    let since = peer.last_contact_ms.map(|at| Duration::from_millis(now_ms.saturating_sub(at)));
    match since {
        Some(since) if peer.acked >= len && since < heartbeat => Next::Idle(heartbeat - since),
        _ => Next::Send,
    }
}

/// A contact the secondary answered (at `now_ms`), reporting its `delay_ms`, that came to
/// `outcome`.
pub fn answered(now_ms: u64, delay_ms: Option<u64>, outcome: Outcome) -> Contact {
    Contact {
        outcome,
        status: Status::Healthy,
        failures: 0,
        answered_ms: Some(now_ms),
        error: None,
        delay_ms,
    }
}

/// A contact with `peer` that failed with `error`: one more failure in a row, and the status
/// that follows from them.
pub fn failed(peer: &Peer, error: String, suspect_after: u32, unhealthy_after: u32) -> Contact {
    let failures = peer.failures.saturating_add(1);
    Contact {
        outcome: Outcome::Failed,
        status: status_after(failures, suspect_after, unhealthy_after),
        failures,
        answered_ms: peer.last_contact_ms,
        error: Some(error),
        delay_ms: peer.delay_ms,
    }
}

/// The status of a secondary whose last `failures` contacts failed.
pub fn status_after(failures: u32, suspect_after: u32, unhealthy_after: u32) -> Status {
    if failures >= unhealthy_after {
        Status::Unhealthy
    } else if failures >= suspect_after {
        Status::Suspected
    } else {
        Status::Healthy
    }
}

impl Status {
    /// The word for the status wherever the master writes it (`/health`, a `502`'s `missing`,
    /// its log): the one place these words are spelled.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Suspected => "suspected",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// After a contact the secondary answered holding `holds` of `len` entries: at once while it
/// lacks some, else on the next append or a heartbeat later.
pub fn after_answer(holds: u64, len: u64, heartbeat: Duration) -> Wake {
    if holds < len {
        later(Duration::ZERO)
    } else {
        Wake { after_ms: Some(millis(heartbeat)), on_append: true }
    }
}

/// After a failed `contact`: a pause doubling from `FIRST_BACKOFF` up to the heartbeat (also
/// the pace for an unhealthy secondary), `jitter` (0 to 1) spreading it over its upper half so
/// that retries do not fall in step. Appends do not cut it short: a failing secondary is not
/// hammered.
pub fn after_failure(contact: &Contact, heartbeat: Duration, jitter: f64) -> Wake {
    let ceiling = match contact.status {
        Status::Unhealthy => heartbeat,
        _ => FIRST_BACKOFF
            .saturating_mul(1 << contact.failures.saturating_sub(1).min(16))
            .min(heartbeat),
    };
    later(ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0)))
}

/// Run again after `after`, whatever is appended meanwhile: for a stream with nothing to send
/// that must not be woken (a failing secondary, a master not open).
pub fn later(after: Duration) -> Wake {
    Wake { after_ms: Some(millis(after)), on_append: false }
}

/// `d` in whole milliseconds, as the host's wake-ups take it (saturating, not wrapping).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_millis(500);

    fn peer(synced: bool, acked: u64, last_contact_ms: Option<u64>, failures: u32) -> Peer {
        Peer {
            url: "http://s1:8001".into(),
            acked,
            synced,
            status: Status::Healthy,
            failures,
            last_contact_ms,
            last_error: None,
            delay_ms: Some(0),
        }
    }

    #[test]
    fn a_step_probes_first_then_sends_what_is_lacking_or_waits_for_the_heartbeat() {
        assert_eq!(next(&peer(false, 0, None, 0), 5, 1_000, HEARTBEAT), Next::Probe);
        assert_eq!(next(&peer(true, 3, Some(900), 0), 5, 1_000, HEARTBEAT), Next::Send);
        assert_eq!(
            next(&peer(true, 5, Some(900), 0), 5, 1_000, HEARTBEAT),
            Next::Idle(Duration::from_millis(400))
        );
        assert_eq!(
            next(&peer(true, 5, Some(400), 0), 5, 1_000, HEARTBEAT),
            Next::Send,
            "heartbeat"
        );
    }

    #[test]
    fn failures_make_a_secondary_suspected_then_unhealthy_and_an_answer_clears_them() {
        let mut known = peer(true, 0, Some(10), 0);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let contact = failed(&known, "refused".into(), 1, 3);
            (known.failures, known.status) = (contact.failures, contact.status);
            assert_eq!(contact.answered_ms, Some(10), "the last answer is kept");
            statuses.push(contact.status);
        }
        assert_eq!(statuses, [Status::Suspected, Status::Suspected, Status::Unhealthy]);
        let back = answered(2_000, Some(7), Outcome::Acknowledged(0));
        assert_eq!(
            (back.status, back.failures, back.answered_ms),
            (Status::Healthy, 0, Some(2_000))
        );
    }

    #[test]
    fn retries_back_off_doubling_up_to_the_heartbeat_with_jitter_over_the_upper_half() {
        let after = |failures, status, jitter| {
            let contact = Contact {
                outcome: Outcome::Failed,
                status,
                failures,
                answered_ms: None,
                error: None,
                delay_ms: None,
            };
            after_failure(&contact, HEARTBEAT, jitter).after_ms.unwrap()
        };
        assert_eq!((after(1, Status::Suspected, 0.0), after(1, Status::Suspected, 1.0)), (50, 100));
        assert_eq!(after(2, Status::Suspected, 1.0), 200);
        assert_eq!(after(9, Status::Suspected, 1.0), 500);
        assert_eq!(
            (after(3, Status::Unhealthy, 0.0), after(3, Status::Unhealthy, 1.0)),
            (250, 500)
        );
        let contact = failed(&peer(true, 0, None, 0), "x".into(), 1, 3);
        assert!(!after_failure(&contact, HEARTBEAT, 0.5).on_append, "not hammered on appends");
    }

    #[test]
    fn after_an_answer_it_runs_at_once_while_entries_are_lacking() {
        assert_eq!(after_answer(3, 5, HEARTBEAT), later(Duration::ZERO));
        assert_eq!(after_answer(5, 5, HEARTBEAT), Wake { after_ms: Some(500), on_append: true });
    }
}
