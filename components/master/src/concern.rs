//! A write's concern, judged: how many secondaries a write waits for, and once the wait is
//! over, whether its client is told the write is acknowledged (`201`, `200` for a retry) or
//! that too few nodes hold it (`502`), and what either answer says. Pure, so that every outcome
//! is tested on the native target: `messages` waits on the host and sends what this decides.

use std::time::Duration;

use serde::Serialize;

/// A write the log took, as its answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    /// Where the log holds it.
    pub seq: u64,
    /// Its write concern: how many nodes, the master included, must hold it.
    pub w: u64,
    /// How many nodes hold the log: the master and every secondary.
    pub nodes: u64,
    /// Whether it is a retry, answered for the entry its key was first written at.
    pub duplicate: bool,
}

/// What waiting for a write's concern came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing was awaited: the master's own copy meets a concern of 1.
    Skipped,
    /// The host said as many secondaries as were awaited hold it.
    Met,
    /// The replication timeout came first.
    TimedOut,
}

/// A secondary as a write's answer names it: whether it holds the write, and if not, how it
/// stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondaryView<'a> {
    /// Its URL, as configured.
    pub url: &'a str,
    /// Through which `seq` it holds the master's log.
    pub acked: u64,
    /// `healthy`, `suspected` or `unhealthy`, as the replicator judges it.
    pub status: &'static str,
    /// Why its last contact failed, if it did.
    pub last_error: Option<&'a str>,
}

impl Write {
    /// How many secondaries it waits for: its concern less the master's own copy.
    pub fn awaited(&self) -> u32 {
        u32::try_from(self.w.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// Whether the wait saw every one of `secondaries` hold it: then the answer names them
    /// all without asking the host again.
    fn held_by_all(&self, wait: Wait, secondaries: usize) -> bool {
        wait == Wait::Met && self.awaited() as usize >= secondaries
    }

    /// Whether, after `wait`, which of the `secondaries` hold it must be read from the host
    /// again: it must when the wait saw only some of them, or timed out. Without a wait, the
    /// secondaries as read before the append name those that held it already (a retry's).
    pub fn reread(&self, wait: Wait, secondaries: usize) -> bool {
        wait != Wait::Skipped && !self.held_by_all(wait, secondaries)
    }
}

/// The answer to a write whose wait is over.
#[derive(Debug, PartialEq, Eq)]
pub enum Judgement {
    /// `w` nodes hold it.
    Met(WriteReceipt),
    /// Fewer than `w` nodes hold it.
    Unmet(ReplicationShortfall),
}

impl Judgement {
    /// The answer's status: `201` for a new write, `200` for a retry, `502` when the concern
    /// is not met.
    pub fn status(&self) -> u16 {
        match self {
            Self::Met(receipt) if receipt.duplicate => 200,
            Self::Met(_) => 201,
            Self::Unmet(_) => 502,
        }
    }
}

/// A secondary that holds the write, as its answer lists it.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct AckFrom {
    /// Its URL.
    pub secondary: String,
}

/// A secondary that does not hold the write, as a `502` lists it: with how it stands, so that
/// the client sees whether it is slow or gone.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct MissingAck {
    /// Its URL.
    pub secondary: String,
    /// `healthy`, `suspected` or `unhealthy`.
    pub status: &'static str,
    /// Why its last contact failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body of the `201` (`200` for a retry), after the log when it is given.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct WriteReceipt {
    /// Where the log holds the write.
    pub seq: u64,
    /// The concern it met.
    pub w: u64,
    /// The secondaries that hold it.
    pub acks: Vec<AckFrom>,
    /// How long the write took, from its request to its answer.
    pub duration_ms: u64,
    /// Whether it is a retry, answered for the original.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The body of the `502`: what holds the write, what does not, and that it is not lost.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ReplicationShortfall {
    /// What happened, in a sentence (also logged).
    pub error: String,
    /// Where the log holds the write.
    pub seq: u64,
    /// The concern it did not meet.
    pub w: u64,
    /// The secondaries that hold it.
    pub acks: Vec<AckFrom>,
    /// The secondaries that do not.
    pub missing: Vec<MissingAck>,
    /// How long the write took, from its request to its answer.
    pub duration_ms: u64,
    /// That the master keeps the write and keeps sending it: a `502` is not a refusal.
    pub kept: &'static str,
    /// Whether it is a retry, answered for the original.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// What a `502` says of the write it could not acknowledge.
pub const KEPT: &str = "the message stays in the master's log and will still be delivered: the master keeps sending it to every secondary that lacks it until it holds it";

/// Judges `write` once its `wait` is over, from the `secondaries` as the host holds them
/// (read again where [`Write::reread`] says so), `duration_ms` after its request came and
/// under a replication timeout of `timeout`: met when the master and enough secondaries hold
/// it, whatever the wait came to (an acknowledgement that landed at the deadline counts).
pub fn judge(
    write: &Write,
    wait: Wait,
    secondaries: &[SecondaryView],
    duration_ms: u64,
    timeout: Duration,
) -> Judgement {
    let &Write { seq, w, nodes, duplicate } = write;
    let all = write.held_by_all(wait, secondaries.len());
    let (holding, lacking): (Vec<&SecondaryView>, Vec<&SecondaryView>) =
        secondaries.iter().partition(|replica| all || replica.acked >= seq);
    let acks: Vec<AckFrom> =
        holding.iter().map(|replica| AckFrom { secondary: replica.url.to_owned() }).collect();
    let held = 1 + acks.len() as u64;
    if held >= w {
        return Judgement::Met(WriteReceipt { seq, w, acks, duration_ms, duplicate });
    }
    let names: Vec<&str> = lacking.iter().map(|replica| replica.url).collect();
    let error = format!(
        "message {seq} is held by {held} of {nodes} nodes after {} ms, fewer than w={w}: no acknowledgement from {}",
        timeout.as_millis(),
        names.join(", ")
    );
    let missing = lacking
        .into_iter()
        .map(|replica| MissingAck {
            secondary: replica.url.to_owned(),
            status: replica.status,
            error: replica.last_error.map(str::to_owned),
        })
        .collect();
    Judgement::Unmet(ReplicationShortfall {
        error,
        seq,
        w,
        acks,
        missing,
        duration_ms,
        kept: KEPT,
        duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn replica(url: &'static str, acked: u64) -> SecondaryView<'static> {
        SecondaryView { url, acked, status: "healthy", last_error: None }
    }

    fn write(seq: u64, w: u64, duplicate: bool) -> Write {
        Write { seq, w, nodes: 3, duplicate }
    }

    fn acks(judgement: &Judgement) -> Vec<&str> {
        let acks = match judgement {
            Judgement::Met(receipt) => &receipt.acks,
            Judgement::Unmet(shortfall) => &shortfall.acks,
        };
        acks.iter().map(|ack| ack.secondary.as_str()).collect()
    }

    #[test]
    fn a_concern_of_one_waits_for_nobody_and_names_the_secondaries_that_held_it_already() {
        let new = write(7, 1, false);
        assert_eq!(new.awaited(), 0);
        assert!(!new.reread(Wait::Skipped, 2), "the secondaries read before the append stand");
        let secondaries = [replica("http://a", 7), replica("http://b", 6)];
        let judged = judge(&new, Wait::Skipped, &secondaries, 3, TIMEOUT);
        assert_eq!((judged.status(), acks(&judged)), (201, vec!["http://a"]));
        let retry = judge(&write(7, 1, true), Wait::Skipped, &secondaries, 3, TIMEOUT);
        assert_eq!(retry.status(), 200, "a retry is answered for the original");
    }

    #[test]
    fn a_wait_that_saw_every_secondary_names_them_all_without_asking_again() {
        let all = write(9, 3, false);
        assert_eq!(all.awaited(), 2);
        assert!(!all.reread(Wait::Met, 2));
        // Read before the append: neither held seq 9 yet.
        let before = [replica("http://a", 8), replica("http://b", 8)];
        let judged = judge(&all, Wait::Met, &before, 40, TIMEOUT);
        assert_eq!((judged.status(), acks(&judged)), (201, vec!["http://a", "http://b"]));
    }

    #[test]
    fn a_wait_that_saw_some_is_judged_on_the_hosts_record_read_again() {
        let two = write(9, 2, false);
        assert!(two.reread(Wait::Met, 2), "which one holds it, the host knows");
        let now = [replica("http://a", 8), replica("http://b", 9)];
        let judged = judge(&two, Wait::Met, &now, 40, TIMEOUT);
        assert_eq!((judged.status(), acks(&judged)), (201, vec!["http://b"]));
    }

    #[test]
    fn a_timeout_with_too_few_acks_is_a_502_that_names_who_lacks_the_write_and_why() {
        let all = write(12, 3, true);
        assert!(all.reread(Wait::TimedOut, 2));
        let slow = SecondaryView {
            status: "suspected",
            last_error: Some("no answer"),
            ..replica("http://b", 11)
        };
        let now = [replica("http://a", 12), slow];
        let Judgement::Unmet(shortfall) = judge(&all, Wait::TimedOut, &now, 2_001, TIMEOUT) else {
            panic!("two of three nodes do not meet w=3");
        };
        assert_eq!(shortfall.acks, [AckFrom { secondary: "http://a".into() }]);
        assert_eq!(
            shortfall.missing,
            [MissingAck {
                secondary: "http://b".into(),
                status: "suspected",
                error: Some("no answer".into())
            }]
        );
        for says in ["message 12", "held by 2 of 3 nodes", "after 2000 ms", "w=3", "from http://b"]
        {
            assert!(shortfall.error.contains(says), "{:?} should say {says:?}", shortfall.error);
        }
        assert!(shortfall.duplicate && shortfall.kept == KEPT);
        assert_eq!(Judgement::Unmet(shortfall).status(), 502);
    }

    #[test]
    fn an_acknowledgement_that_landed_at_the_deadline_still_counts() {
        let two = write(5, 2, false);
        let now = [replica("http://a", 4), replica("http://b", 5)];
        let judged = judge(&two, Wait::TimedOut, &now, 2_000, TIMEOUT);
        assert_eq!((judged.status(), acks(&judged)), (201, vec!["http://b"]));
        let none = [replica("http://a", 4), replica("http://b", 4)];
        assert_eq!(judge(&two, Wait::TimedOut, &none, 2_000, TIMEOUT).status(), 502);
    }

    #[test]
    fn the_answers_keep_their_json_form() {
        let receipt = WriteReceipt { seq: 3, w: 1, acks: vec![], duration_ms: 0, duplicate: false };
        let json = serde_json::to_string(&receipt).unwrap();
        assert_eq!(json, r#"{"seq":3,"w":1,"acks":[],"duration_ms":0}"#, "no duplicate: false");
        let missing = MissingAck { secondary: "http://a".into(), status: "healthy", error: None };
        let json = serde_json::to_string(&missing).unwrap();
        assert_eq!(json, r#"{"secondary":"http://a","status":"healthy"}"#);
    }
}
