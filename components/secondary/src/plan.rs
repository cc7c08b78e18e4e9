//! Log matching: what a secondary does with what its master sent. Pure, so that it is tested on
//! the native target: the handler gathers what it needs from the host, this decides, the host
//! writes.
//!
//! The rules are Raft's. A request from an older epoch than the one recorded is refused (its
//! master has been replaced). Entries apply only after `prev`, which this node must hold with
//! the same epoch; since a master numbers each `seq` once per epoch, agreeing there means
//! agreeing on everything before. An entry held already is a replay; a different one at the
//! same `seq` starts a suffix the master does not have, which is dropped and replaced.

use replog_guest::wire::{Append, Position, WireEntry};

/// What this node holds, where a decision looks.
#[derive(Debug)]
pub struct LocalLog<'a> {
    /// The highest epoch recorded.
    pub epoch: u64,
    pub last: Position,
    /// The entries held from `held_from` on, as far as [`needed`] says.
    pub held_from: u64,
    pub held: &'a [WireEntry],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// The sender's epoch is older than the one recorded.
    Fenced,
    /// This node does not hold `prev` as sent: the master must look for where the logs agree.
    Mismatch,
    Apply(Apply),
}

/// How the log changes: drop after `truncate_after`, then append `entries`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Apply {
    pub truncate_after: Option<u64>,
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
    (theirs < ours).then(|| {
        format!(
            "refusing the master that contacted this node last: its epoch {theirs} is older than \
             the epoch {ours} this node follows (a newer master took over)"
        )
    })
}

pub fn decide(append: &Append, local: &LocalLog) -> Decision {
    if append.epoch < local.epoch {
        return Decision::Fenced;
    }
    let held_at = |seq: u64| {
        seq.checked_sub(local.held_from).and_then(|i| local.held.get(usize::try_from(i).ok()?))
    };
    let prev = append.prev.unwrap_or_default();
    let holds_prev = prev.seq == 0
        || prev == local.last
        || held_at(prev.seq).is_some_and(|held| held.epoch == prev.epoch);
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

    fn append(epoch: u64, prev: Position, entries: Vec<WireEntry>, end: u64) -> Append {
        Append { epoch, prev: Some(prev), entries, end: Some(end) }
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
}
