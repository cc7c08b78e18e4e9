//! The master's decisions about logs, pure so that they are tested on the native target: where
//! a secondary's log agrees with the master's, what counts as an acknowledgement, and when a
//! master that starts may take writes (and in which epoch). When streams run and how contacts
//! are judged is `pace`; what a write's answer says is `concern`.

use replog_guest::wire::{Ack, AckStatus, Position, Run};

use crate::settings::FORCE_RECOVERY;

pub use replog_guest::log::common_prefix;

/// Checks a secondary's answer to an append whose last entry (or `prev`, without entries) was
/// `sent`: it counts as holding the entries only if it names exactly that entry, never more
/// than was sent, never something else.
pub fn acknowledged(sent: Position, ack: &Ack) -> Result<u64, String> {
    match (ack.status, ack.matched) {
        (AckStatus::Ok, Some(matched)) if matched == sent => Ok(sent.seq),
        (AckStatus::Ok, matched) => Err(format!(
            "acknowledged {} where this master sent up to seq {} of epoch {}: not counted",
            matched.map_or("nothing".to_owned(), |m| format!("seq {} of epoch {}", m.seq, m.epoch)),
            sent.seq,
            sent.epoch
        )),
        (AckStatus::Mismatch, _) => Err("its log does not hold the entry sent as prev".to_owned()),
    }
}

/// What a secondary said of its log when asked, during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLog {
    /// The highest epoch it has recorded: recovery opens above it.
    pub epoch: u64,
    /// Its last entry: which replica is the most advanced.
    pub last: Position,
    /// Its runs: where its log agrees with the master's.
    pub runs: Vec<Run>,
    /// Its commit point, as its master last told it.
    pub committed: u64,
}

/// The master's own log, as recovery sees it.
#[derive(Debug, Clone, Copy)]
pub struct OwnLog<'a> {
    /// The highest epoch it has recorded (0: none, so its data directory is new or was lost).
    pub epoch: u64,
    /// Its last entry.
    pub last: Position,
    /// Its runs: where it agrees with a replica's log.
    pub runs: &'a [Run],
}

/// What a recovery round does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryStep {
    /// Not enough secondaries answered; the text says what is awaited.
    Wait(String),
    /// Fetch what the secondary at this index of the answers holds beyond the master's log.
    Fetch(usize),
    /// The master's log is not a prefix of the most advanced replica's: an operator decides.
    Diverged(String),
    /// Take writes in this epoch.
    Open(u64),
}

/// `recovery_of` for a master by configuration: the tests' shorthand.
/// The commit point a master of epoch `open` may set, given how far its own log reaches
/// (`own`) and through which `seq` each secondary's log agrees with it (`acked`): the furthest
/// `seq` a majority of the cluster (the master and its secondaries) holds, if the entry there
/// is of `open` (`epoch_at`). Raft's rule: an entry of an earlier epoch held by a majority may
/// still be replaced by a master that never had it (its last entry being of a later epoch),
/// so it is committed only with an entry of this master's own epoch after it. `None`: nothing
/// new may be committed.
pub fn commit_point(
    open: u64,
    own: u64,
    acked: &[u64],
    epoch_at: impl FnOnce(u64) -> Option<u64>,
) -> Option<u64> {
    let mut held: Vec<u64> = acked.iter().map(|&a| a.min(own)).collect();
    held.push(own);
    held.sort_unstable_by(|a, b| b.cmp(a));
    let majority = held.len() / 2 + 1;
    let seq = held[majority - 1];
    (seq > 0 && epoch_at(seq) == Some(open)).then_some(seq)
}

/// The commit point a master that takes over starts from: the furthest any secondary it heard
/// had been told, within what its log holds in common with that secondary's. Committed
/// entries are on a majority, and recovery takes the most advanced log of a majority, so they
/// are all here; the common prefix only guards against a recovery an operator forced. A master
/// alone (a cluster of one `nodes`) is the majority: all it holds is committed, and a tail
/// reading committed entries need not wait for the next write to see the log it restarted with.
pub fn inherited_commit(own: OwnLog, heard: &[&ReplicaLog], nodes: u64) -> u64 {
    if nodes == 1 {
        return own.last.seq;
    }
    heard
        .iter()
        .map(|h| h.committed.min(common_prefix(own.runs, own.last.seq, &h.runs, h.last.seq)))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
pub fn recovery(own: OwnLog, heard: &[(&str, Option<&ReplicaLog>)], force: bool) -> RecoveryStep {
    recovery_of(own, heard, force, false)
}

/// Decides a recovery round from what each secondary (by URL, in configuration order) said,
/// `None` for those that did not answer.
///
/// A master needs answers from a majority of the cluster (itself included), and the longest
/// log among them (by last epoch, then length) is the one to continue. A master that holds no
/// log while its secondaries do has lost its disk: any one secondary may then hold writes
/// acknowledged with `w = 2`, so it waits for all of them, unless `force`d to take what the
/// answering ones have; but even forced it waits for one: with no answer it would know no
/// epoch but its own, and might open one its secondaries already hold entries of (two entries
/// with one identity, which log matching would take for the same). It opens an epoch above
/// every one it has seen.
///
/// An `elected` master with no log is not taken for one that lost its disk: any member that
/// never held a write starts so, and the election let it run only because no member it
/// reached was ahead of it.
/// A majority's answers hold every write acknowledged by a majority, which is what an elected
/// cluster promises.
pub fn recovery_of(
    own: OwnLog,
    heard: &[(&str, Option<&ReplicaLog>)],
    force: bool,
    elected: bool,
) -> RecoveryStep {
    let secondaries = heard.len();
    let answered: Vec<(usize, &ReplicaLog)> =
        heard.iter().enumerate().filter_map(|(i, (_, h))| h.map(|h| (i, h))).collect();
    let missing: Vec<&str> = heard.iter().filter(|(_, h)| h.is_none()).map(|(u, _)| *u).collect();
    let lost = !elected && own.epoch == 0 && own.last.seq == 0;
    let history = answered.iter().any(|(_, h)| h.epoch > 0 || h.last.seq > 0);
    let needed = match (force, lost && history) {
        (true, _) => secondaries.min(1),
        (false, true) => secondaries,
        (false, false) => secondaries.div_ceil(2),
    };
    if answered.len() < needed {
        let missing = missing.join(", ");
        if force {
            return RecoveryStep::Wait(format!(
                "{FORCE_RECOVERY}: waiting for any secondary to answer (with none, this master \
                 cannot tell which epochs its secondaries hold); not answering: {missing}"
            ));
        }
        return RecoveryStep::Wait(if lost && history {
            format!(
                "this master holds no log while its secondaries do (its data was lost): waiting \
                 for every secondary, any of which may hold acknowledged writes; not answering: \
                 {missing}. {FORCE_RECOVERY}=true takes what the others hold"
            )
        } else {
            format!(
                "waiting for {needed} of {secondaries} secondaries to answer (a majority with \
                 this master); not answering: {missing}"
            )
        });
    }
    let key = |p: Position| (p.epoch, p.seq);
    let best = answered.iter().max_by_key(|(_, h)| key(h.last));
    if let Some((i, best)) = best.filter(|(_, h)| key(h.last) > key(own.last)) {
        let agreed = common_prefix(own.runs, own.last.seq, &best.runs, best.last.seq);
        if agreed < own.last.seq {
            return RecoveryStep::Diverged(format!(
                "this master's log (to seq {} of epoch {}) is not a prefix of {}'s (to seq {} of \
                 epoch {}); they part after seq {agreed}. Move this master's data directory \
                 aside and start it again to recover from the replicas",
                own.last.seq, own.last.epoch, heard[*i].0, best.last.seq, best.last.epoch
            ));
        }
        return RecoveryStep::Fetch(*i);
    }
    let seen = answered.iter().map(|(_, h)| h.epoch.max(h.last.epoch)).max().unwrap_or(0);
    RecoveryStep::Open(own.epoch.max(own.last.epoch).max(seen) + 1)
}

/// The epoch to open, once recovery allows one at `lowest` or above: `lowest` for a master by
/// configuration; for an elected one, the epoch its election gave it (etcd's, unique in the
/// cluster), which may be no lower. Otherwise the text says why it cannot open.
pub fn epoch_to_open(lowest: u64, elected: Option<u64>) -> Result<u64, String> {
    match elected {
        None => Ok(lowest),
        Some(epoch) if epoch >= lowest => Ok(epoch),
        Some(epoch) => Err(format!(
            "this master was elected for epoch {epoch}, but epoch {} is recorded already (a \
             cluster once run with fixed roles, or an etcd that lost its data): it cannot take \
             writes in a unique epoch",
            lowest - 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_master_inherits_the_commit_point_only_where_its_log_agrees() {
        let runs = [run(1, 1), run(2, 5)];
        let own = OwnLog { epoch: 2, last: pos(8, 2), runs: &runs };
        let told = |committed, last, runs| ReplicaLog { committed, ..heard(2, last, runs) };
        let agrees = told(6, pos(8, 2), vec![run(1, 1), run(2, 5)]);
        let behind = told(3, pos(4, 1), vec![run(1, 1)]);
        assert_eq!(inherited_commit(own, &[&behind, &agrees], 3), 6, "the furthest told");
        let diverged = told(7, pos(7, 3), vec![run(1, 1), run(3, 4)]);
        assert_eq!(inherited_commit(own, &[&diverged], 3), 3, "no further than they agree");
        assert_eq!(inherited_commit(own, &[], 3), 0);
        assert_eq!(inherited_commit(own, &[], 1), own.last.seq, "a master alone is the majority");
    }

    #[test]
    fn the_commit_point_is_what_a_majority_holds_of_this_masters_epoch() {
        let epochs = |seq: u64| Some(if seq <= 4 { 1 } else { 2 });
        assert_eq!(commit_point(2, 9, &[7, 3], epochs), Some(7), "two of three hold 7");
        assert_eq!(commit_point(2, 9, &[7, 3, 0, 9], epochs), Some(7), "three of five");
        assert_eq!(commit_point(2, 9, &[3, 2], epochs), None, "3 is of an earlier epoch");
        assert_eq!(commit_point(2, 9, &[9, 9], epochs), Some(9));
        assert_eq!(commit_point(2, 9, &[12, 0], epochs), Some(9), "none counts past the log");
        assert_eq!(commit_point(2, 6, &[], epochs), Some(6), "a master alone is a majority");
        assert_eq!(commit_point(2, 0, &[0], epochs), None, "an empty log commits nothing");
        assert_eq!(commit_point(2, 9, &[8, 1, 0], epochs), None, "three of four hold only 1");
        assert_eq!(commit_point(2, 9, &[8, 6, 0], epochs), Some(6), "three of four hold 6");
    }

    #[test]
    fn an_elected_master_without_a_log_needs_a_majority_not_every_secondary() {
        let heard_epoch = ReplicaLog { epoch: 2, last: pos(0, 0), runs: vec![], committed: 0 };
        let one = [("s1", None), ("s2", Some(&heard_epoch))];
        let by_configuration = recovery(NEW, &one, false);
        assert!(matches!(by_configuration, RecoveryStep::Wait(_)), "{by_configuration:?}");
        assert_eq!(recovery_of(NEW, &one, false, true), RecoveryStep::Open(3));
        let none: [(&str, Option<&ReplicaLog>); 2] = [("s1", None), ("s2", None)];
        assert!(matches!(recovery_of(NEW, &none, false, true), RecoveryStep::Wait(_)));
    }

    #[test]
    fn an_elected_master_opens_the_epoch_it_was_elected_for_and_never_a_lower_one() {
        assert_eq!(epoch_to_open(4, None), Ok(4), "by configuration: the next one");
        assert_eq!(epoch_to_open(4, Some(31)), Ok(31), "elected: etcd's");
        assert_eq!(epoch_to_open(4, Some(4)), Ok(4));
        let refused = epoch_to_open(32, Some(31)).unwrap_err();
        assert!(
            refused.contains("elected for epoch 31") && refused.contains("epoch 31 is recorded")
        );
    }

    fn run(epoch: u64, first: u64) -> Run {
        Run { epoch, first }
    }

    fn pos(seq: u64, epoch: u64) -> Position {
        Position { seq, epoch }
    }

    #[test]
    fn logs_agree_through_the_furthest_seq_held_in_the_same_epoch() {
        let ours = [run(1, 1), run(3, 6)];
        assert_eq!(common_prefix(&ours, 9, &ours, 9), 9, "the same log");
        assert_eq!(common_prefix(&ours, 9, &[run(1, 1), run(3, 6)], 7), 7, "a shorter copy");
        assert_eq!(common_prefix(&ours, 9, &[run(1, 1)], 8), 5, "older entries past 5");
        assert_eq!(
            common_prefix(&ours, 9, &[run(1, 1), run(2, 4)], 6),
            3,
            "another master's epoch from 4 on"
        );
        assert_eq!(common_prefix(&ours, 9, &[], 0), 0, "an empty log");
        assert_eq!(common_prefix(&ours, 9, &[run(0, 1)], 4), 0, "written before epochs");
        assert_eq!(common_prefix(&[run(0, 1)], 2, &[run(0, 1)], 4), 2);
    }

    fn ack(status: AckStatus, matched: Option<Position>) -> Ack {
        Ack {
            status,
            epoch: 2,
            last: pos(0, 0),
            count: 0,
            matched,
            runs: vec![],
            added: 0,
            duplicates: 0,
            truncated: 0,
            duplicate: None,
            delay_ms: 0,
            committed: 0,
        }
    }

    #[test]
    fn only_exactly_what_was_sent_is_acknowledged() {
        let sent = pos(10, 2);
        assert_eq!(acknowledged(sent, &ack(AckStatus::Ok, Some(sent))), Ok(10));
        for claimed in [Some(pos(14, 2)), Some(pos(10, 1)), Some(pos(9, 2)), None] {
            let refused = acknowledged(sent, &ack(AckStatus::Ok, claimed));
            assert!(refused.is_err_and(|e| e.contains("not counted")), "{claimed:?}");
        }
        assert!(acknowledged(sent, &ack(AckStatus::Mismatch, None)).is_err());
    }

    fn heard(epoch: u64, last: Position, runs: Vec<Run>) -> ReplicaLog {
        ReplicaLog { epoch, last, runs, committed: 0 }
    }

    const NEW: OwnLog = OwnLog { epoch: 0, last: Position { seq: 0, epoch: 0 }, runs: &[] };

    #[test]
    fn a_new_cluster_opens_epoch_1_with_a_majority() {
        let empty = heard(0, pos(0, 0), vec![]);
        assert_eq!(
            recovery(NEW, &[("s1", Some(&empty)), ("s2", None)], false),
            RecoveryStep::Open(1)
        );
        let waiting = recovery(NEW, &[("s1", None), ("s2", None)], false);
        assert!(
            matches!(&waiting, RecoveryStep::Wait(why) if why.contains("1 of 2") && why.contains("s1, s2")),
            "{waiting:?}"
        );
        assert_eq!(recovery(NEW, &[], false), RecoveryStep::Open(1), "a master alone");
    }

    #[test]
    fn a_master_that_lost_its_log_waits_for_every_secondary_then_fetches_the_longest() {
        let short = heard(2, pos(5, 2), vec![run(1, 1), run(2, 4)]);
        let long = heard(2, pos(8, 2), vec![run(1, 1), run(2, 4)]);
        let waiting = recovery(NEW, &[("s1", Some(&short)), ("s2", None)], false);
        assert!(
            matches!(&waiting, RecoveryStep::Wait(why) if why.contains("every secondary") && why.contains("s2")),
            "{waiting:?}"
        );
        assert_eq!(
            recovery(NEW, &[("s1", Some(&short)), ("s2", None)], true),
            RecoveryStep::Fetch(0),
            "forced: what the answering ones have"
        );
        assert_eq!(
            recovery(NEW, &[("s1", Some(&short)), ("s2", Some(&long))], false),
            RecoveryStep::Fetch(1)
        );
        let caught_up = OwnLog { epoch: 0, last: pos(8, 2), runs: &[run(1, 1), run(2, 4)] };
        assert_eq!(
            recovery(caught_up, &[("s1", Some(&short)), ("s2", Some(&long))], false),
            RecoveryStep::Open(3),
            "then an epoch above all"
        );
    }

    #[test]
    fn a_master_with_its_log_needs_a_majority_and_continues_a_longer_replica() {
        let runs = [run(3, 1)];
        let own = OwnLog { epoch: 3, last: pos(4, 3), runs: &runs };
        let behind = heard(3, pos(2, 3), vec![run(3, 1)]);
        let ahead = heard(3, pos(6, 3), vec![run(3, 1)]);
        assert_eq!(
            recovery(own, &[("s1", Some(&behind)), ("s2", None)], false),
            RecoveryStep::Open(4)
        );
        assert_eq!(
            recovery(own, &[("s1", None), ("s2", Some(&ahead))], false),
            RecoveryStep::Fetch(1)
        );
        let other = heard(4, pos(6, 4), vec![run(3, 1), run(4, 3)]);
        let diverged = recovery(own, &[("s1", Some(&other)), ("s2", None)], false);
        assert!(
            matches!(&diverged, RecoveryStep::Diverged(why) if why.contains("after seq 2")),
            "{diverged:?}"
        );
    }

    #[test]
    fn a_replica_whose_last_entry_has_a_higher_epoch_wins_over_a_longer_log() {
        // s1 holds more entries, but s2's last one was written by a newer master: whatever s1
        // holds past their common prefix that master never had, so s2's log is the one.
        let longer = heard(2, pos(10, 2), vec![run(1, 1), run(2, 4)]);
        let newer = heard(3, pos(7, 3), vec![run(1, 1), run(2, 4), run(3, 7)]);
        let both = [("s1", Some(&longer)), ("s2", Some(&newer))];
        assert_eq!(recovery(NEW, &both, false), RecoveryStep::Fetch(1));
        let swapped = [("s1", Some(&newer)), ("s2", Some(&longer))];
        assert_eq!(recovery(NEW, &swapped, false), RecoveryStep::Fetch(0), "in either order");
        // A master holding the longer, older log has a suffix the newer master replaced: it does
        // not guess which to keep.
        let runs = [run(1, 1), run(2, 4)];
        let own = OwnLog { epoch: 2, last: pos(10, 2), runs: &runs };
        let diverged = recovery(own, &[("s1", Some(&newer)), ("s2", None)], false);
        assert!(
            matches!(&diverged, RecoveryStep::Diverged(why) if why.contains("after seq 6")),
            "{diverged:?}"
        );
        // Once it holds the newer log, it opens above it.
        let caught_up =
            OwnLog { epoch: 0, last: pos(7, 3), runs: &[run(1, 1), run(2, 4), run(3, 7)] };
        assert_eq!(recovery(caught_up, &both, false), RecoveryStep::Open(4));
    }

    #[test]
    fn forced_recovery_takes_whatever_answers_but_waits_for_one() {
        let held = heard(5, pos(9, 5), vec![run(5, 1)]);
        // One of two secondaries answers: forced, the master takes its log, then opens above
        // the epochs it reported; what only the silent one held is what may be lost.
        let one = [("s1", None), ("s2", Some(&held))];
        assert!(matches!(recovery(NEW, &one, false), RecoveryStep::Wait(_)));
        assert_eq!(recovery(NEW, &one, true), RecoveryStep::Fetch(1));
        let fetched = OwnLog { epoch: 0, last: pos(9, 5), runs: &[run(5, 1)] };
        assert_eq!(recovery(fetched, &one, true), RecoveryStep::Open(6));
        // None answers: even forced, it waits; it knows no epoch but its own, and the
        // secondaries may hold entries of the very epoch it would open.
        let none = [("s1", None), ("s2", None)];
        assert!(matches!(recovery(NEW, &none, false), RecoveryStep::Wait(_)));
        let forced = recovery(NEW, &none, true);
        assert!(
            matches!(&forced, RecoveryStep::Wait(why) if why.contains("any secondary") && why.contains("s1, s2")),
            "{forced:?}"
        );
        let runs = [run(4, 1)];
        let own = OwnLog { epoch: 4, last: pos(3, 4), runs: &runs };
        assert!(matches!(recovery(own, &none, true), RecoveryStep::Wait(_)), "its log or not");
        assert_eq!(
            recovery(own, &[], true),
            RecoveryStep::Open(5),
            "a master alone has no one to ask"
        );
    }

    #[test]
    fn the_new_epoch_is_above_every_epoch_seen() {
        let runs = [run(2, 1)];
        let own = OwnLog { epoch: 2, last: pos(3, 2), runs: &runs };
        let fenced_elsewhere = heard(7, pos(3, 2), vec![run(2, 1)]);
        assert_eq!(recovery(own, &[("s1", Some(&fenced_elsewhere))], false), RecoveryStep::Open(8));
    }
}
