//! What the log holds in memory, and the rules every change must follow: no gaps, epochs that
//! never decrease along the log, no entry from an epoch above the highest one recorded. Changes
//! are planned here as records (checked), then applied once durable; a log on disk is rebuilt
//! from the same records.

use std::collections::{BTreeMap, VecDeque};

use super::change::{Change, LogError, Position, Run};
use crate::state::entry::Entry;
use crate::state::keys::{Keys, Seen};
use crate::state::segments::{Head, Record};

/// An entry as the log holds it in memory: its place is its index (`seq` is the log's
/// `offset` + index + 1).
pub(super) struct StoredEntry {
    pub(super) epoch: u64,
    pub(super) key: Option<Box<str>>,
    pub(super) msg: String,
}

/// The log in memory: its entries, runs, epoch and version, and what is on its way to disk.
pub(super) struct LogTable {
    /// Entries before the first held: retention removed them, or the log began after them
    /// (`Record::Begin`). Sequence numbers go on from there: they never restart.
    pub(super) offset: u64,
    /// The epoch of the entry at `offset` (0 when `offset` is 0), which log matching needs at
    /// the log's start.
    pub(super) base_epoch: u64,
    /// The visible log: `entries[i]` has `seq` `offset + i + 1`. A ring, so that retention
    /// takes entries from the front without moving the rest.
    pub(super) entries: VecDeque<StoredEntry>,
    pub(super) runs: Vec<Run>,
    /// The highest epoch recorded.
    pub(super) epoch: u64,
    /// Changes with every visible change.
    pub(super) version: u64,
    /// Entries handed to the disk and not yet durable.
    pub(super) pending: u64,
    /// Where the log will end once everything handed to the disk is durable: appends number
    /// after it. (It stays right when a writer gives up waiting: what was handed over is
    /// written all the same.)
    pub(super) planned: Position,
    /// The last group-commit ticket handed out.
    pub(super) ticket: u64,
    /// The keys of the last entries, for recognising retried writes.
    pub(super) keys: Keys,
    /// Bytes of the visible entries' messages.
    pub(super) bytes: u64,
}

impl LogTable {
    pub(super) fn new(key_window: usize) -> Self {
        Self {
            offset: 0,
            base_epoch: 0,
            entries: VecDeque::new(),
            runs: Vec::new(),
            epoch: 0,
            version: 0,
            pending: 0,
            planned: Position::default(),
            ticket: 0,
            keys: Keys::new(key_window),
            bytes: 0,
        }
    }

    /// The last entry's `seq` (the log's length when nothing was removed).
    pub(super) fn len(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }

    /// The first `seq` the log holds (or will hold, when it holds none).
    pub(super) fn start(&self) -> u64 {
        self.offset + 1
    }

    pub(super) fn last(&self) -> Position {
        Position {
            seq: self.len(),
            epoch: self.entries.back().map_or(self.base_epoch, |e| e.epoch),
        }
    }

    /// Where the log stands, as a new segment's head records it.
    pub(super) fn head(&self) -> Head {
        let last = self.last();
        Head { epoch: self.epoch, after: last.seq, after_epoch: last.epoch }
    }

    /// The held entry at `seq`.
    pub(super) fn get(&self, seq: u64) -> Option<&StoredEntry> {
        let i = seq.checked_sub(self.offset + 1)?;
        self.entries.get(usize::try_from(i).ok()?)
    }

    /// The epoch of the entry at `seq`: known from the one before the log's start on.
    pub(super) fn epoch_at(&self, seq: u64) -> Option<u64> {
        if seq == self.offset {
            return Some(self.base_epoch);
        }
        self.get(seq).map(|held| held.epoch)
    }

    /// Adds `entry` at the end; its key is remembered (appends remember theirs earlier, when
    /// they are numbered, so that a retry while the entry is on its way is recognised).
    pub(super) fn push(&mut self, Entry { seq, epoch, key, msg }: Entry) {
        debug_assert_eq!(seq, self.len() + 1, "entries are pushed in order");
        if self.runs.last().is_none_or(|run| run.epoch != epoch) {
            self.runs.push(Run { epoch, first: seq });
        }
        if let Some(key) = &key
            && self.keys.check(key, &msg) == Seen::New
        {
            self.keys.insert(key, seq, &msg);
        }
        self.bytes += msg.len() as u64;
        self.entries.push_back(StoredEntry { epoch, key: key.map(String::into_boxed_str), msg });
    }

    pub(super) fn truncate(&mut self, after: u64) {
        if after < self.offset {
            // Only a replay meets this (a change below the start is refused): what was there is
            // gone, and the log is empty where the next segment said it began.
            tracing::warn!(after, start = self.start(), "a truncation below the log's start");
        }
        let keep = usize::try_from(after.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let dropped: usize =
            self.entries.range(keep.min(self.entries.len())..).map(|held| held.msg.len()).sum();
        self.bytes -= dropped as u64;
        self.entries.truncate(keep);
        self.runs.retain(|run| run.first <= after);
        self.keys.forget_after(after);
    }

    /// Makes the log begin after `after`, of epoch `epoch`, unless it holds that entry already:
    /// then nothing changes. Otherwise everything it held goes (see `Record::Begin`).
    pub(super) fn begin(&mut self, after: u64, epoch: u64) {
        if self.epoch_at(after) == Some(epoch) {
            return;
        }
        self.entries.clear();
        self.runs.clear();
        self.keys.forget_after(0);
        self.bytes = 0;
        self.offset = after;
        self.base_epoch = epoch;
        self.epoch = self.epoch.max(epoch);
    }

    /// Removes the entries through `through` (retention): the log starts after it. Returns
    /// them, for the caller to free once it no longer holds the log's lock.
    pub(super) fn remove_through(&mut self, through: u64) -> Vec<StoredEntry> {
        let Some(base_epoch) = self.epoch_at(through).filter(|_| through > self.offset) else {
            return Vec::new();
        };
        let count = through - self.offset;
        let gone: Vec<StoredEntry> = self.entries.drain(..count as usize).collect();
        self.bytes -= gone.iter().map(|held| held.msg.len() as u64).sum::<u64>();
        self.offset = through;
        self.base_epoch = base_epoch;
        // The run that holds the new start stays, starting where it did: its epoch is what
        // matters, and a run is only compared from its first entry held.
        let keep_from = self.runs.iter().rposition(|run| run.first <= through + 1).unwrap_or(0);
        self.runs.drain(..keep_from);
        self.keys.forget_through(through);
        gone
    }

    /// Applies one record that `plan` or `append` produced (so it fits).
    pub(super) fn apply(&mut self, record: Record) {
        match record {
            Record::Entry(entry) => self.push(entry),
            Record::Truncate { after } => self.truncate(after),
            Record::Epoch { epoch } => self.epoch = self.epoch.max(epoch),
            Record::Begin { after, epoch } => self.begin(after, epoch),
        }
    }

    /// The records that make `change`, or why it would break the log.
    pub(super) fn plan(&self, change: Change) -> Result<Vec<Record>, LogError> {
        let invalid = |why: String| Err(LogError::Invalid(why));
        let len = self.len();
        let epoch = self.epoch.max(change.epoch);
        let mut records = Vec::with_capacity(change.entries.len() + 3);
        if epoch > self.epoch {
            records.push(Record::Epoch { epoch });
        }
        let jump = change.begin.filter(|at| self.epoch_at(at.seq) != Some(at.epoch));
        let (base, mut before) = if let Some(at) = jump {
            if at.epoch > epoch {
                return invalid(format!(
                    "cannot begin after an entry of epoch {}, above the highest epoch recorded \
                     ({epoch})",
                    at.epoch
                ));
            }
            records.push(Record::Begin { after: at.seq, epoch: at.epoch });
            (at.seq, at.epoch)
        } else {
            let base = match change.truncate_after {
                Some(after) if after > len => {
                    return invalid(format!(
                        "cannot drop the entries after {after}: the log ends at {len}"
                    ));
                }
                Some(after) if after < self.offset => {
                    return invalid(format!(
                        "cannot drop the entries after {after}: the log starts at {} (retention \
                         removed those before)",
                        self.start()
                    ));
                }
                Some(after) => after,
                None => len,
            };
            if base < len {
                records.push(Record::Truncate { after: base });
            }
            (base, self.epoch_at(base).unwrap_or_default())
        };
        for (expected, entry) in (base + 1..).zip(change.entries) {
            let (seq, of) = (entry.seq, entry.epoch);
            if seq != expected {
                return invalid(format!(
                    "entry {seq} does not continue the log, which would end at {}",
                    expected - 1
                ));
            }
            if of < before {
                return invalid(format!(
                    "entry {seq} is of epoch {of}, after an entry of epoch {before}: epochs never \
                     decrease along a log"
                ));
            }
            if of > epoch {
                return invalid(format!(
                    "entry {seq} is of epoch {of}, above the highest epoch recorded ({epoch})"
                ));
            }
            before = of;
            records.push(Record::Entry(entry));
        }
        Ok(records)
    }
}

/// Where a log that ends at `last` ends once `records` are applied (`epoch_at` tells the
/// epochs it holds, for a truncation).
pub(super) fn planned_after(
    last: Position,
    records: &[Record],
    epoch_at: impl Fn(u64) -> Option<u64>,
) -> Position {
    records.iter().fold(last, |end, record| match record {
        Record::Entry(entry) => Position { seq: entry.seq, epoch: entry.epoch },
        Record::Truncate { after } if *after < end.seq => {
            Position { seq: *after, epoch: epoch_at(*after).unwrap_or_default() }
        }
        Record::Begin { after, epoch } if epoch_at(*after) != Some(*epoch) => {
            Position { seq: *after, epoch: *epoch }
        }
        Record::Truncate { .. } | Record::Epoch { .. } | Record::Begin { .. } => end,
    })
}

/// Rebuilds the log from its records; returns it with the number of entries left past a gap
/// (only logs of the format before epochs can hold those).
pub(super) fn replay(records: Vec<Record>, node: &str, mut inner: LogTable) -> (LogTable, usize) {
    let mut ahead: BTreeMap<u64, Entry> = BTreeMap::new();
    for record in records {
        match record {
            Record::Entry(entry) => {
                let len = inner.len();
                if entry.seq == len + 1 {
                    inner.push(entry);
                    while let Some(next) = ahead.remove(&(inner.len() + 1)) {
                        inner.push(next);
                    }
                } else if entry.seq > len {
                    ahead.insert(entry.seq, entry);
                } else if inner.get(entry.seq).is_some_and(|held| held.msg != entry.msg) {
                    tracing::warn!(
                        node,
                        seq = entry.seq,
                        "the log holds two different messages at one sequence number; keeping the first"
                    );
                }
            }
            Record::Truncate { after } => {
                ahead.retain(|seq, _| *seq <= after);
                inner.truncate(after);
            }
            Record::Epoch { epoch } => inner.epoch = inner.epoch.max(epoch),
            Record::Begin { after, epoch } => {
                ahead.clear();
                inner.begin(after, epoch);
            }
        }
    }
    inner.epoch = inner.epoch.max(inner.last().epoch);
    inner.planned = inner.last();
    (inner, ahead.len())
}
