//! Log matching: what a secondary does with what its master sent. Pure, so that it is tested on
//! the native target: the handler gathers what it needs from the host, this decides, the host
//! writes.
//!
//! The rules are Raft's. A request from an older epoch than the one recorded is refused (its
//! master has been replaced): one check, [`replaced`], for every form of request. Entries apply
//! only after `prev`, which this node must hold with
//! the same epoch; since a master numbers each `seq` once per epoch, agreeing there means
//! agreeing on everything before. An entry held already is a replay; a different one at the
//! same `seq` starts a suffix the master does not have, which is dropped and replaced.
//!
//! The original project's single entry (`{"seq", "msg"}`, an epoch optional) keeps its own
//! rules: it is stored only where it continues the log, and a different message at its `seq`
//! is refused rather than replaced (it carries no `prev` to prove which log it belongs to).

use replog_guest::wire::{Append, Position, WireEntry};

/// What this node holds, where a decision looks.
#[derive(Debug)]
pub struct LocalLog<'a> {
    /// The highest epoch recorded.
    pub epoch: u64,
    /// Its last entry.
    pub last: Position,
    /// Where `held` starts.
    pub held_from: u64,
    /// The entries held from `held_from` on, as far as [`needed`] (or [`single_needed`]) says:
    /// only what a decision looks at is read from the host.
    pub held: &'a [WireEntry],
}

impl LocalLog<'_> {
    /// The entry held at `seq`, if it is among those read.
    fn held_at(&self, seq: u64) -> Option<&WireEntry> {
        let i = usize::try_from(seq.checked_sub(self.held_from)?).ok()?;
        self.held.get(i)
    }
}

/// What an append does to this node's log.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The sender's epoch is older than the one recorded.
    Fenced,
    /// This node does not hold `prev` as sent: the master must look for where the logs agree.
    Mismatch,
    /// It applies: the log changes as this says (perhaps not at all, for a replay).
    Apply(Apply),
}

/// How the log changes: drop after `truncate_after` (or everything, to begin after `begin`),
/// then append `entries`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Apply {
    /// Where the log is cut first, when it holds a suffix the master does not have.
    pub truncate_after: Option<u64>,
    /// The entry before the master's start, which this log does not hold: everything it holds
    /// goes, and it begins after that entry (the master no longer holds what came before).
    pub begin: Option<Position>,
    /// What is appended: the request's entries from the first this node lacks.
    pub entries: Vec<WireEntry>,
    /// Entries held already.
    pub duplicates: u32,
    /// Entries dropped.
    pub truncated: u64,
    /// The entry through which the log agrees with the request afterwards: its last entry, or
    /// `prev` when it has none.
    pub matched: Position,
}

/// Which held entries `decide` looks at for `append` on a log ending at `last`: from `prev` to
/// one past the request's last entry; none when `prev` is the log's last entry (the usual
/// case: there is nothing past it to compare).
pub fn needed(append: &Append, last: Position) -> Option<(u64, u32)> {
    let prev = append.prev.unwrap_or_default();
    if prev == last {
        return None;
    }
    let start = prev.seq.max(1);
    let end = prev.seq + append.entries.len() as u64;
    Some((start, u32::try_from(end + 2 - start).unwrap_or(u32::MAX)))
}

/// Why this node, which follows a master of epoch `ours`, does not serve a master of epoch
/// `theirs` (none: it does). What `GET /ready` reports until a current master contacts it.
pub fn refusal(theirs: u64, ours: u64) -> Option<String> {
    replaced(theirs, ours).then(|| {
        format!(
            "refusing the master that contacted this node last: its epoch {theirs} is older than \
             the epoch {ours} this node follows (a newer master took over)"
        )
    })
}

/// Whether the master of epoch `theirs` has been replaced, for a node that has recorded epoch
/// `ours`: the one epoch check, which every request that names an epoch goes through.
pub fn replaced(theirs: u64, ours: u64) -> bool {
    theirs < ours
}

/// Decides `append` on this node's log, by the rules above.
pub fn decide(append: &Append, local: &LocalLog) -> Decision {
    if replaced(append.epoch, local.epoch) {
        return Decision::Fenced;
    }
    let held_at = |seq: u64| local.held_at(seq);
    let prev = append.prev.unwrap_or_default();
    let holds_prev = prev.seq == 0
        || prev == local.last
        || held_at(prev.seq).is_some_and(|held| held.epoch == prev.epoch);
    if !holds_prev && append.begin {
        // The master starts after `prev` (retention removed what came before): what this log
        // holds cannot be matched against anything the master has, so it is brought to the
        // master's start. Whatever it held below is committed and the same as the master's
        // was; what it held above `prev` is replaced by what the master sends.
        return Decision::Apply(Apply {
            begin: Some(prev),
            entries: append.entries.clone(),
            matched: append
                .entries
                .last()
                .map_or(prev, |e| Position { seq: e.seq, epoch: e.epoch }),
            ..Apply::default()
        });
    }
    if !holds_prev {
        return Decision::Mismatch;
    }
    let mut apply = Apply {
        matched: append.entries.last().map_or(prev, |e| Position { seq: e.seq, epoch: e.epoch }),
        ..Apply::default()
    };
    for (i, entry) in append.entries.iter().enumerate() {
        match held_at(entry.seq) {
            Some(held) if held.epoch == entry.epoch && held.msg == entry.msg => {
                apply.duplicates += 1;
            }
            held => {
                if held.is_some() {
                    apply.truncate_after = Some(entry.seq - 1);
                }
                apply.entries = append.entries[i..].to_vec();
                break;
            }
        }
    }
    // Past the request's last entry, when that is the master's last: whatever is held there and
    // older than the master's epoch is not in the master's log (an entry of its own epoch is,
    // sent by a later request that arrived first).
    let end = apply.matched.seq;
    let reaches_the_end = append.end == Some(end);
    if apply.entries.is_empty()
        && reaches_the_end
        && held_at(end + 1).is_some_and(|next| next.epoch < append.epoch)
    {
        apply.truncate_after = Some(end);
    }
    if let Some(after) = apply.truncate_after {
        apply.truncated = local.last.seq.saturating_sub(after);
    }
    Decision::Apply(apply)
}

/// What the original project's single entry does to this node's log.
#[derive(Debug, PartialEq, Eq)]
pub enum SingleDecision {
    /// Its epoch (this) is older than the one recorded.
    Fenced(u64),
    /// The same message is held at its `seq`: acknowledged, not stored twice.
    Duplicate,
    /// Another message is held at its `seq`: refused.
    Conflict,
    /// It would leave a gap after the log's last entry: refused.
    Gap,
    /// It continues the log: append `entry`, recording `epoch` (0 records nothing new).
    Append {
        /// The entry to append.
        entry: WireEntry,
        /// The epoch to record with it.
        epoch: u64,
    },
}

/// Which held entry [`decide_single`] looks at for an entry at `seq` on a log ending at
/// `last`: the one at `seq`, if the log reaches it.
pub fn single_needed(seq: u64, last: Position) -> Option<(u64, u32)> {
    (seq <= last.seq).then_some((seq, 1))
}

/// Decides the single entry `msg` at `seq`, of epoch `epoch` if the sender gave one (an entry
/// without one joins the last entry's epoch: epochs never decrease along a log).
pub fn decide_single(seq: u64, epoch: Option<u64>, msg: &str, local: &LocalLog) -> SingleDecision {
    if let Some(theirs) = epoch.filter(|theirs| replaced(*theirs, local.epoch)) {
        return SingleDecision::Fenced(theirs);
    }
    if seq <= local.last.seq {
        return match local.held_at(seq) {
            Some(held) if held.msg == msg => SingleDecision::Duplicate,
            _ => SingleDecision::Conflict,
        };
    }
    if seq != local.last.seq + 1 {
        return SingleDecision::Gap;
    }
    let entry =
        WireEntry { seq, epoch: epoch.unwrap_or(local.last.epoch), key: None, msg: msg.to_owned() };
    SingleDecision::Append { entry, epoch: epoch.unwrap_or(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, epoch: u64, msg: &str) -> WireEntry {
        WireEntry { seq, epoch, key: None, msg: msg.to_owned() }
    }

    fn pos(seq: u64, epoch: u64) -> Position {
        Position { seq, epoch }
    }

    /// A node whose log is `log` (seq 1 first) and whose recorded epoch is `epoch`.
    fn decide_on(log: &[WireEntry], epoch: u64, append: &Append) -> Decision {
        let last = log.last().map_or(pos(0, 0), |e| pos(e.seq, e.epoch));
        let (start, count) = needed(append, last).unwrap_or((last.seq + 1, 0));
        let held: Vec<WireEntry> = log
            .iter()
            .filter(|e| e.seq >= start && e.seq < start + u64::from(count))
            .cloned()
            .collect();
        decide(append, &LocalLog { epoch, last, held_from: start, held: &held })
    }

    #[test]
    fn a_log_the_master_cannot_match_below_its_start_is_brought_to_that_start() {
        let held = [entry(1, 1, "a"), entry(2, 1, "b")];
        let log = LocalLog { epoch: 1, last: pos(2, 1), held_from: 1, held: &held };
        let sent = vec![entry(101, 2, "x"), entry(102, 2, "y")];
        let mut begin = append(2, pos(100, 2), sent.clone(), 102);
        assert_eq!(decide(&begin, &log), Decision::Mismatch, "not without the master's word");
        begin.begin = true;
        let Decision::Apply(apply) = decide(&begin, &log) else { panic!("applies") };
        assert_eq!(apply.begin, Some(pos(100, 2)));
        assert_eq!((apply.entries, apply.matched), (sent, pos(102, 2)));
        // A log that holds the entry before the master's start goes on as usual.
        let near = [entry(100, 2, "w")];
        let log = LocalLog { epoch: 2, last: pos(100, 2), held_from: 100, held: &near };
        let Decision::Apply(apply) = decide(&begin, &log) else { panic!("applies") };
        assert_eq!(apply.begin, None);
        assert_eq!(apply.entries.len(), 2);
    }

    fn append(epoch: u64, prev: Position, entries: Vec<WireEntry>, end: u64) -> Append {
        Append { epoch, prev: Some(prev), entries, end: Some(end), commit: None, begin: false }
    }

    #[test]
    fn entries_after_a_held_prev_are_appended() {
        let log = [entry(1, 1, "a"), entry(2, 1, "b")];
        let sent = append(1, pos(2, 1), vec![entry(3, 1, "c"), entry(4, 1, "d")], 4);
        let Decision::Apply(apply) = decide_on(&log, 1, &sent) else { panic!() };
        assert_eq!(apply.entries, sent.entries);
        assert_eq!((apply.truncate_after, apply.duplicates, apply.matched), (None, 0, pos(4, 1)));
    }

    #[test]
    fn only_a_master_older_than_the_one_followed_is_refused() {
        assert_eq!(refusal(3, 3), None);
        assert_eq!(refusal(4, 3), None, "a newer master is served (and its epoch recorded)");
        let why = refusal(2, 3).expect("an older master is refused");
        assert!(why.contains("epoch 2") && why.contains("epoch 3"), "{why}");
    }

    #[test]
    fn an_older_master_is_fenced_and_a_missing_prev_is_a_mismatch() {
        let log = [entry(1, 2, "a")];
        assert_eq!(decide_on(&log, 3, &append(2, pos(1, 2), vec![], 1)), Decision::Fenced);
        assert_eq!(
            decide_on(&log, 2, &append(2, pos(5, 2), vec![entry(6, 2, "f")], 6)),
            Decision::Mismatch,
            "prev beyond the end"
        );
        assert_eq!(
            decide_on(&log, 2, &append(3, pos(1, 1), vec![entry(2, 3, "b")], 2)),
            Decision::Mismatch,
            "prev held with another epoch"
        );
    }

    #[test]
    fn replays_are_duplicates_and_change_nothing() {
        let log = [entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")];
        let sent = append(1, pos(0, 0), vec![entry(1, 1, "a"), entry(2, 1, "b")], 3);
        let Decision::Apply(apply) = decide_on(&log, 1, &sent) else { panic!() };
        assert_eq!(
            apply,
            Apply { duplicates: 2, matched: pos(2, 1), ..Apply::default() },
            "entry 3 is the master's own epoch: kept"
        );
    }

    #[test]
    fn a_divergent_suffix_is_dropped_and_replaced_from_the_first_difference() {
        let log = [entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 2, "x"), entry(4, 2, "y")];
        let sent = append(3, pos(1, 1), vec![entry(2, 1, "b"), entry(3, 3, "c")], 3);
        let Decision::Apply(apply) = decide_on(&log, 2, &sent) else { panic!() };
        assert_eq!(apply.truncate_after, Some(2));
        assert_eq!(apply.entries, [entry(3, 3, "c")]);
        assert_eq!((apply.duplicates, apply.truncated, apply.matched), (1, 2, pos(3, 3)));
    }

    #[test]
    fn a_forged_entry_at_a_held_seq_is_replaced_even_in_the_same_epoch() {
        let log = [entry(1, 1, "FORGED")];
        let sent = append(1, pos(0, 0), vec![entry(1, 1, "m1")], 1);
        let Decision::Apply(apply) = decide_on(&log, 1, &sent) else { panic!() };
        assert_eq!((apply.truncate_after, apply.entries.len()), (Some(0), 1));
    }

    #[test]
    fn older_entries_past_the_masters_end_are_dropped_its_own_are_kept() {
        let log = [entry(1, 1, "a"), entry(2, 1, "stale"), entry(3, 1, "stale")];
        let Decision::Apply(apply) = decide_on(&log, 1, &append(2, pos(1, 1), vec![], 1)) else {
            panic!()
        };
        assert_eq!((apply.truncate_after, apply.truncated), (Some(1), 2));

        let not_the_end = append(2, pos(1, 1), vec![], 5);
        let Decision::Apply(apply) = decide_on(&log, 1, &not_the_end) else { panic!() };
        assert_eq!(apply.truncate_after, None, "the master has more to send first");

        let log = [entry(1, 1, "a"), entry(2, 2, "newer, from this master")];
        let Decision::Apply(apply) = decide_on(&log, 2, &append(2, pos(1, 1), vec![], 1)) else {
            panic!()
        };
        assert_eq!(apply.truncate_after, None, "a request that arrived late drops nothing");
    }

    #[test]
    fn the_held_range_covers_prev_to_one_past_the_last_entry_unless_prev_is_last() {
        assert_eq!(needed(&append(1, pos(0, 0), vec![], 0), pos(3, 1)), Some((1, 1)));
        assert_eq!(
            needed(&append(1, pos(4, 1), vec![entry(5, 1, "e")], 5), pos(9, 1)),
            Some((4, 3))
        );
        assert_eq!(needed(&append(1, pos(4, 1), vec![entry(5, 1, "e")], 5), pos(4, 1)), None);
    }

    /// A single entry decided on a node whose log is `log` and whose recorded epoch is `epoch`.
    fn single_on(
        log: &[WireEntry],
        epoch: u64,
        seq: u64,
        of: Option<u64>,
        msg: &str,
    ) -> SingleDecision {
        let last = log.last().map_or(pos(0, 0), |e| pos(e.seq, e.epoch));
        let (start, count) = single_needed(seq, last).unwrap_or((last.seq + 1, 0));
        let held: Vec<WireEntry> = log
            .iter()
            .filter(|e| e.seq >= start && e.seq < start + u64::from(count))
            .cloned()
            .collect();
        decide_single(seq, of, msg, &LocalLog { epoch, last, held_from: start, held: &held })
    }

    #[test]
    fn a_single_entry_is_fenced_by_the_same_check_as_an_append_and_only_with_an_epoch() {
        let log = [entry(1, 3, "a")];
        for (theirs, ours) in [(2, 3), (3, 3), (4, 3)] {
            let fenced =
                single_on(&log, ours, 2, Some(theirs), "b") == SingleDecision::Fenced(theirs);
            let append = append(theirs, pos(1, 3), vec![], 1);
            assert_eq!(fenced, decide_on(&log, ours, &append) == Decision::Fenced, "{theirs}");
            assert_eq!(fenced, refusal(theirs, ours).is_some(), "{theirs}");
        }
        assert!(matches!(single_on(&log, 3, 2, None, "b"), SingleDecision::Append { .. }));
    }

    #[test]
    fn a_single_entry_continues_the_log_or_is_a_replay_and_never_replaces_or_skips() {
        let log = [entry(1, 1, "a"), entry(2, 2, "b")];
        assert_eq!(
            single_on(&log, 2, 3, None, "c"),
            SingleDecision::Append { entry: entry(3, 2, "c"), epoch: 0 },
            "without an epoch it joins the last entry's, and records none"
        );
        assert_eq!(
            single_on(&log, 2, 3, Some(4), "c"),
            SingleDecision::Append { entry: entry(3, 4, "c"), epoch: 4 }
        );
        assert_eq!(single_on(&log, 2, 2, None, "b"), SingleDecision::Duplicate);
        assert_eq!(single_on(&log, 2, 1, Some(2), "a"), SingleDecision::Duplicate);
        assert_eq!(single_on(&log, 2, 2, None, "x"), SingleDecision::Conflict);
        assert_eq!(single_on(&log, 2, 4, None, "d"), SingleDecision::Gap);
        assert_eq!(single_needed(3, pos(2, 2)), None, "nothing to read past the end");
    }
}
