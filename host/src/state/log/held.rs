//! What the log holds in memory, and the rules every change must follow: no gaps, epochs that
//! never decrease along the log, no entry from an epoch above the highest one recorded. Changes
//! are planned here as records (checked), then applied once durable; a log on disk is rebuilt
//! from the same records.

use std::collections::BTreeMap;

use super::change::{Change, LogError, Position, Run};
use crate::state::entry::Entry;
use crate::state::keys::{Keys, Seen};
use crate::state::segments::Record;

/// An entry as the log holds it in memory: its place is its index (`seq` is index + 1).
pub(super) struct StoredEntry {
    pub(super) epoch: u64,
    pub(super) key: Option<Box<str>>,
    pub(super) msg: String,
}

/// The log in memory: its entries, runs, epoch and version, and what is on its way to disk.
pub(super) struct LogTable {
    /// The visible log: `entries[i]` has `seq` `i + 1`.
    pub(super) entries: Vec<StoredEntry>,
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
            entries: Vec::new(),
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

    pub(super) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    pub(super) fn last(&self) -> Position {
        self.entries
            .last()
            .map_or(Position::default(), |held| Position { seq: self.len(), epoch: held.epoch })
    }

    pub(super) fn epoch_at(&self, seq: u64) -> Option<u64> {
        match seq {
            0 => Some(0),
            _ => self.entries.get(usize::try_from(seq - 1).ok()?).map(|held| held.epoch),
        }
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
        self.entries.push(StoredEntry { epoch, key: key.map(String::into_boxed_str), msg });
    }

    pub(super) fn truncate(&mut self, after: u64) {
        let keep = usize::try_from(after).unwrap_or(usize::MAX);
        let dropped: usize = self.entries.iter().skip(keep).map(|held| held.msg.len()).sum();
        self.bytes -= dropped as u64;
        self.entries.truncate(keep);
        self.runs.retain(|run| run.first <= after);
        self.keys.forget_after(after);
    }

    /// Applies one record that `plan` or `append` produced (so it fits).
    pub(super) fn apply(&mut self, record: Record) {
        match record {
            Record::Entry(entry) => self.push(entry),
            Record::Truncate { after } => self.truncate(after),
            Record::Epoch { epoch } => self.epoch = self.epoch.max(epoch),
        }
    }

    /// The records that make `change`, or why it would break the log.
    pub(super) fn plan(&self, change: Change) -> Result<Vec<Record>, LogError> {
        let invalid = |why: String| Err(LogError::Invalid(why));
        let len = self.len();
        let base = match change.truncate_after {
            Some(after) if after > len => {
                return invalid(format!(
                    "cannot drop the entries after {after}: the log ends at {len}"
                ));
            }
            Some(after) => after,
            None => len,
        };
        let epoch = self.epoch.max(change.epoch);
        let mut before = self.epoch_at(base).unwrap_or_default();
        let mut records = Vec::with_capacity(change.entries.len() + 2);
        if epoch > self.epoch {
            records.push(Record::Epoch { epoch });
        }
        if base < len {
            records.push(Record::Truncate { after: base });
        }
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
        Record::Truncate { .. } | Record::Epoch { .. } => end,
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
                } else if inner.entries[(entry.seq - 1) as usize].msg != entry.msg {
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
        }
    }
    inner.epoch = inner.epoch.max(inner.last().epoch);
    inner.planned = inner.last();
    (inner, ahead.len())
}
