//! The log: an ordered, gap-free sequence of entries, each named by its `seq` and the epoch of
//! the master that appended it.
//!
//! Two ways in. The master appends (`append`): many requests at once share one disk write and
//! one sync (group commit), each numbered on arrival. Whole changes (`write`) raise the recorded
//! epoch, drop a suffix and append entries as one step, checked against the log's version: a
//! secondary repairing and extending its log on its master's word, or a recovering master
//! taking back what a replica holds. Writes run one at a time and never overlap appends.
//!
//! Readers see only what is durable, so nothing a reader saw is undone by a crash (a repair
//! undoes it on purpose). Every change is checked against the log's invariants: no gaps,
//! epochs that never decrease along the log, and no entry from an epoch above the highest one
//! recorded. Components decide what to change; this is what keeps any decision from breaking
//! the log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::durable::{Durable, Sink};
pub use super::entry::Entry;
use super::keys::{Keys, Seen};
use super::segments::{Record, Replayed, Segments, StorageError};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Whether its key was written already, with the same message: nothing new was appended,
    /// and `seq` is the original's.
    pub duplicate: bool,
}

/// Where a log ends: its last entry's `seq` and `epoch` (both 0 when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub epoch: u64,
}

/// The entries from `first` up to the next run share `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub epoch: u64,
    pub first: u64,
}

/// The log's epoch, end and version, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: u64,
    pub last: Position,
    pub version: u64,
}

/// A change to the whole log, applied at once (durably, when the log is on disk) or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The version it was decided on: refused when the log has changed since.
    pub version: u64,
    /// Record this as the highest epoch seen, if it is higher than the one recorded.
    pub epoch: u64,
    /// First drop every entry after this `seq`.
    pub truncate_after: Option<u64>,
    /// Then append these.
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Another change came first; the payload is the version now.
    #[error("the log changed since this change was decided (it is at version {0} now)")]
    Moved(u64),
    /// The change would break the log's invariants.
    #[error("{0}")]
    Invalid(String),
    /// The append's key was written already, with another message, at this `seq`.
    #[error("the key was used already, with another message, at sequence number {0}")]
    KeyReused(u64),
    /// The disk did not take it; nothing was acknowledged, and the log takes no more writes.
    #[error("the log could not be written: {0}")]
    Storage(String),
}

/// A node's log. Cheap to share behind an `Arc`.
pub struct Log {
    shared: Arc<Shared>,
    /// The disk behind the log; none in memory mode.
    durable: Option<Durable>,
    /// `write`s run one at a time, each to its end (on disk), so that a change is always
    /// decided on a log with nothing in flight.
    writes: tokio::sync::Mutex<()>,
}

struct Shared {
    inner: RwLock<Inner>,
    /// The log's length after every visible change, for whoever waits for it to grow
    /// (replication streams).
    grown: watch::Sender<u64>,
}

struct Held {
    epoch: u64,
    key: Option<Box<str>>,
    msg: String,
}

struct Inner {
    /// The visible log: `entries[i]` has `seq` `i + 1`.
    entries: Vec<Held>,
    runs: Vec<Run>,
    /// The highest epoch recorded.
    epoch: u64,
    /// Changes with every visible change.
    version: u64,
    /// Entries handed to the disk and not yet durable.
    pending: u64,
    /// Where the log will end once everything handed to the disk is durable: appends number
    /// after it. (It stays right when a writer gives up waiting: what was handed over is
    /// written all the same.)
    planned: Position,
    /// The last group-commit ticket handed out.
    ticket: u64,
    /// The keys of the last entries, for recognising retried writes.
    keys: Keys,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("len", &self.len())
            .field("epoch", &self.epoch())
            .field("durable", &self.durable.is_some())
            .finish()
    }
}

impl Default for Log {
    fn default() -> Self {
        Self::in_memory(super::keys::DEFAULT_KEY_WINDOW)
    }
}

impl Log {
    /// A log kept in memory only, remembering the last `key_window` idempotency keys: lost when
    /// the process ends. For tests and demos.
    pub fn in_memory(key_window: usize) -> Self {
        Self::new(Shared::new(Inner::new(key_window)), None)
    }

    fn new(shared: Arc<Shared>, durable: Option<Durable>) -> Self {
        Self { shared, durable, writes: tokio::sync::Mutex::new(()) }
    }

    /// The log kept in `dir`, remembering the last `key_window` idempotency keys: what is there
    /// is read back (a torn tail cut off), and every change from now on is on disk before it is
    /// acknowledged.
    pub fn open(
        dir: &Path,
        node: &str,
        key_window: usize,
    ) -> Result<(Self, Replayed), StorageError> {
        let (mut segments, mut replayed) = Segments::open(dir)?;
        let (inner, past_a_gap) =
            replay(std::mem::take(&mut replayed.records), node, Inner::new(key_window));
        if past_a_gap > 0 {
            // Only logs written before epochs could hold entries past a gap (a secondary kept
            // what arrived early). They were never visible nor acknowledged; dropping them on
            // disk too keeps a later entry at their `seq` from being shadowed by them.
            tracing::warn!(
                node,
                entries = past_a_gap,
                after = inner.len(),
                "dropped entries that waited past a gap in a log of the older format"
            );
            segments.append(&[Record::Truncate { after: inner.len() }])?;
        }
        let shared = Shared::new(inner);
        let durable = Durable::start(segments, node, shared.clone());
        Ok((Self::new(shared, Some(durable)), replayed))
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.shared.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last entry's `seq` and `epoch`.
    pub fn last(&self) -> Position {
        self.shared.read().last()
    }

    /// The highest epoch recorded.
    pub fn epoch(&self) -> u64 {
        self.shared.read().epoch
    }

    /// Changes with every visible change; `write` checks it.
    pub fn version(&self) -> u64 {
        self.shared.read().version
    }

    /// Epoch, end and version at one instant.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.shared.read();
        Snapshot { epoch: inner.epoch, last: inner.last(), version: inner.version }
    }

    /// The epoch of the entry at `seq` (`Some(0)` for `seq` 0, before the first entry).
    pub fn epoch_at(&self, seq: u64) -> Option<u64> {
        self.shared.read().epoch_at(seq)
    }

    /// The log's runs of entries sharing an epoch, oldest first.
    pub fn runs(&self) -> Vec<Run> {
        self.shared.read().runs.clone()
    }

    /// Follows the log's length: `changed()` resolves on every visible change.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.shared.grown.subscribe()
    }

    /// Up to `limit` entries starting at `seq` = `start` (0 is read as 1).
    pub fn read(&self, start: u64, limit: u32) -> Vec<Entry> {
        self.read_bounded(start, limit, usize::MAX)
    }

    /// Up to `limit` entries starting at `seq` = `start`, stopping before the entry that would
    /// take their messages past `max_bytes` (the first always comes).
    pub fn read_bounded(&self, start: u64, limit: u32, max_bytes: usize) -> Vec<Entry> {
        let inner = self.shared.read();
        let first = start.max(1);
        let Ok(skip) = usize::try_from(first - 1) else { return Vec::new() };
        let mut bytes = 0usize;
        inner
            .entries
            .iter()
            .skip(skip)
            .take(limit as usize)
            .take_while(|held| {
                let fits = bytes == 0 || bytes.saturating_add(held.msg.len()) <= max_bytes;
                bytes = bytes.saturating_add(held.msg.len()).max(1);
                fits
            })
            .zip(first..)
            .map(|(held, seq)| Entry {
                seq,
                epoch: held.epoch,
                key: held.key.as_deref().map(str::to_owned),
                msg: held.msg.clone(),
            })
            .collect()
    }

    /// Resolves once the entry at `seq` is durable and visible (or the log failed).
    async fn visible(&self, seq: u64) {
        let mut grown = self.watch();
        while self.len() < seq {
            if grown.changed().await.is_err() {
                return;
            }
        }
    }

    /// Appends `msg` in `epoch` after everything held or on its way, and returns its `seq` once
    /// it is durable. With a `key` written already: the original's `seq` (once that is durable)
    /// if the message is the same, `KeyReused` if not; nothing is appended.
    pub async fn append(
        &self,
        msg: String,
        epoch: u64,
        key: Option<String>,
    ) -> Result<Appended, LogError> {
        /// What happened under the lock, to be waited for after it.
        enum Taken {
            Duplicate(u64),
            Visible(u64),
            OnItsWay(u64, u64),
        }
        let taken = {
            let mut inner = self.shared.write();
            let seen = key.as_deref().map_or(Seen::New, |key| inner.keys.check(key, &msg));
            match seen {
                Seen::Other(seq) => return Err(LogError::KeyReused(seq)),
                Seen::Same(seq) => Taken::Duplicate(seq),
                Seen::New => {
                    let after = inner.planned.epoch;
                    if epoch < after || epoch > inner.epoch {
                        return Err(LogError::Invalid(format!(
                            "cannot append in epoch {epoch}: the log's last entry is of epoch \
                             {after} and the highest epoch recorded is {}",
                            inner.epoch
                        )));
                    }
                    let seq = inner.planned.seq + 1;
                    inner.planned = Position { seq, epoch };
                    if let Some(key) = &key {
                        inner.keys.insert(key, seq, &msg);
                    }
                    let entry = Entry { seq, epoch, key, msg };
                    match &self.durable {
                        None => {
                            inner.push(entry);
                            self.shared.changed(&mut inner);
                            Taken::Visible(seq)
                        }
                        Some(durable) => {
                            inner.pending += 1;
                            inner.ticket += 1;
                            durable.submit(inner.ticket, vec![Record::Entry(entry)]);
                            Taken::OnItsWay(seq, inner.ticket)
                        }
                    }
                }
            }
        };
        match taken {
            Taken::Duplicate(seq) => {
                self.visible(seq).await;
                Ok(Appended { seq, duplicate: true })
            }
            Taken::Visible(seq) => Ok(Appended { seq, duplicate: false }),
            Taken::OnItsWay(seq, ticket) => {
                self.wait(ticket).await?;
                Ok(Appended { seq, duplicate: false })
            }
        }
    }

    /// Applies `change` if the log is still at `change.version`, and returns the version
    /// afterwards, once the change is durable.
    pub async fn write(&self, change: Change) -> Result<u64, LogError> {
        let _one_at_a_time = self.writes.lock().await;
        let ticket = {
            let mut inner = self.shared.write();
            if change.version != inner.version || inner.pending > 0 {
                return Err(LogError::Moved(inner.version));
            }
            let records = inner.plan(change)?;
            if records.is_empty() {
                return Ok(inner.version);
            }
            let Some(durable) = &self.durable else {
                for record in records {
                    inner.apply(record);
                }
                self.shared.changed(&mut inner);
                return Ok(inner.version);
            };
            inner.planned = planned_after(inner.last(), &records, |seq| inner.epoch_at(seq));
            inner.pending +=
                records.iter().filter(|r| matches!(r, Record::Entry(_))).count() as u64;
            inner.ticket += 1;
            durable.submit(inner.ticket, records);
            inner.ticket
        };
        self.wait(ticket).await?;
        Ok(self.shared.read().version)
    }

    async fn wait(&self, ticket: u64) -> Result<(), LogError> {
        let durable = self.durable.as_ref().expect("tickets are only handed out with a disk");
        durable.wait(ticket).await.map_err(LogError::Storage)
    }
}

/// Where a log that ends at `last` ends once `records` are applied (`epoch_at` tells the
/// epochs it holds, for a truncation).
fn planned_after(
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
fn replay(records: Vec<Record>, node: &str, mut inner: Inner) -> (Inner, usize) {
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

impl Shared {
    fn new(inner: Inner) -> Arc<Self> {
        let len = inner.len();
        Arc::new(Self { inner: RwLock::new(inner), grown: watch::channel(len).0 })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every update is complete before the lock is released, so a poisoned lock is usable.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After a visible change: a new version, and a word to whoever follows the log.
    fn changed(&self, inner: &mut Inner) {
        inner.version += 1;
        if inner.pending == 0 {
            inner.planned = inner.last();
        }
        self.grown.send_replace(inner.len());
    }
}

impl Sink for Shared {
    fn durable(&self, records: Vec<Record>) {
        let mut inner = self.write();
        for record in records {
            if matches!(record, Record::Entry(_)) {
                inner.pending -= 1;
            }
            inner.apply(record);
        }
        self.changed(&mut inner);
    }

    fn lost(&self, records: Vec<Record>) {
        let mut inner = self.write();
        let entries = records.iter().filter(|r| matches!(r, Record::Entry(_))).count();
        inner.pending -= entries as u64;
    }
}

impl Inner {
    fn new(key_window: usize) -> Self {
        Self {
            entries: Vec::new(),
            runs: Vec::new(),
            epoch: 0,
            version: 0,
            pending: 0,
            planned: Position::default(),
            ticket: 0,
            keys: Keys::new(key_window),
        }
    }

    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn last(&self) -> Position {
        self.entries
            .last()
            .map_or(Position::default(), |held| Position { seq: self.len(), epoch: held.epoch })
    }

    fn epoch_at(&self, seq: u64) -> Option<u64> {
        match seq {
            0 => Some(0),
            _ => self.entries.get(usize::try_from(seq - 1).ok()?).map(|held| held.epoch),
        }
    }

    /// Adds `entry` at the end; its key is remembered (appends remember theirs earlier, when
    /// they are numbered, so that a retry while the entry is on its way is recognised).
    fn push(&mut self, Entry { seq, epoch, key, msg }: Entry) {
        debug_assert_eq!(seq, self.len() + 1, "entries are pushed in order");
        if self.runs.last().is_none_or(|run| run.epoch != epoch) {
            self.runs.push(Run { epoch, first: seq });
        }
        if let Some(key) = &key
            && self.keys.check(key, &msg) == Seen::New
        {
            self.keys.insert(key, seq, &msg);
        }
        self.entries.push(Held { epoch, key: key.map(String::into_boxed_str), msg });
    }

    fn truncate(&mut self, after: u64) {
        self.entries.truncate(usize::try_from(after).unwrap_or(usize::MAX));
        self.runs.retain(|run| run.first <= after);
        self.keys.forget_after(after);
    }

    /// Applies one record that `plan` or `append` produced (so it fits).
    fn apply(&mut self, record: Record) {
        match record {
            Record::Entry(entry) => self.push(entry),
            Record::Truncate { after } => self.truncate(after),
            Record::Epoch { epoch } => self.epoch = self.epoch.max(epoch),
        }
    }

    /// The records that make `change`, or why it would break the log.
    fn plan(&self, change: Change) -> Result<Vec<Record>, LogError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_key_answers_the_original_seq_also_after_a_restart() {
        let dir = dir("keys");
        {
            let (log, _) = Log::open(&dir, "test", 10).unwrap();
            at_epoch(&log, 1).await;
            let key = || Some("retry-me".to_owned());
            assert_eq!(log.append("once".into(), 1, key()).await, appended(1));
            assert_eq!(log.append("other".into(), 1, None).await, appended(2));
            let retry = log.append("once".into(), 1, key()).await;
            assert_eq!(retry, Ok(Appended { seq: 1, duplicate: true }));
            assert_eq!(log.append("changed".into(), 1, key()).await, Err(LogError::KeyReused(1)));
            assert_eq!(log.len(), 2, "nothing appended for a retry");
        }
        let (log, _) = Log::open(&dir, "test", 10).unwrap();
        at_epoch(&log, 2).await;
        let retry = log.append("once".into(), 2, Some("retry-me".into())).await;
        assert_eq!(
            retry,
            Ok(Appended { seq: 1, duplicate: true }),
            "the key came back with the log"
        );
        assert_eq!(log.read(1, 1)[0].key.as_deref(), Some("retry-me"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn entry(seq: u64, epoch: u64, msg: &str) -> Entry {
        Entry { seq, epoch, key: None, msg: msg.to_owned() }
    }

    fn appended(seq: u64) -> Result<Appended, LogError> {
        Ok(Appended { seq, duplicate: false })
    }

    fn messages(log: &Log) -> Vec<String> {
        log.read(1, u32::MAX).into_iter().map(|e| e.msg).collect()
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("replog-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A log that has recorded `epoch`.
    async fn at_epoch(log: &Log, epoch: u64) {
        log.write(Change { version: log.version(), epoch, ..Change::default() }).await.unwrap();
    }

    #[tokio::test]
    async fn appends_number_from_one_in_the_recorded_epoch() {
        let log = Log::in_memory(10);
        assert!(
            matches!(log.append("early".into(), 1, None).await, Err(LogError::Invalid(_))),
            "no epoch recorded yet"
        );
        at_epoch(&log, 1).await;
        assert_eq!(log.append("a".into(), 1, None).await, appended(1));
        assert_eq!(log.append("b".into(), 1, None).await, appended(2));
        assert_eq!(log.read(2, 10), vec![entry(2, 1, "b")]);
        assert_eq!(log.read(0, 1), vec![entry(1, 1, "a")]);
        assert!(log.read(3, 10).is_empty());
        assert_eq!(log.last(), Position { seq: 2, epoch: 1 });
        assert_eq!((log.epoch_at(0), log.epoch_at(2), log.epoch_at(3)), (Some(0), Some(1), None));
    }

    #[tokio::test]
    async fn a_change_raises_the_epoch_drops_a_suffix_and_appends_at_once() {
        let log = Log::in_memory(10);
        let version = log.version();
        let entries = vec![entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 2, "c")];
        let version = log.write(Change { version, epoch: 2, truncate_after: None, entries }).await;
        let version = version.unwrap();
        assert_eq!((log.epoch(), messages(&log).len()), (2, 3));
        assert_eq!(log.runs(), [Run { epoch: 1, first: 1 }, Run { epoch: 2, first: 3 }]);

        let repair = Change {
            version,
            epoch: 3,
            truncate_after: Some(1),
            entries: vec![entry(2, 3, "B"), entry(3, 3, "C"), entry(4, 3, "D")],
        };
        log.write(repair).await.unwrap();
        assert_eq!(messages(&log), ["a", "B", "C", "D"]);
        assert_eq!(log.runs(), [Run { epoch: 1, first: 1 }, Run { epoch: 3, first: 2 }]);
        assert_eq!(log.last(), Position { seq: 4, epoch: 3 });
    }

    #[tokio::test]
    async fn changes_that_would_break_the_log_are_refused_whole() {
        let log = Log::in_memory(10);
        let v = log.version();
        log.write(Change {
            version: v,
            epoch: 2,
            truncate_after: None,
            entries: vec![entry(1, 2, "a")],
        })
        .await
        .unwrap();
        let v = log.version();
        for (change, says) in [
            (
                Change { version: v, entries: vec![entry(3, 2, "gap")], ..Change::default() },
                "continue",
            ),
            (
                Change { version: v, entries: vec![entry(2, 1, "older")], ..Change::default() },
                "never decrease",
            ),
            (
                Change { version: v, entries: vec![entry(2, 5, "newer")], ..Change::default() },
                "above the highest",
            ),
            (Change { version: v, truncate_after: Some(9), ..Change::default() }, "ends at 1"),
        ] {
            let refused = log.write(change).await;
            assert!(
                matches!(&refused, Err(LogError::Invalid(why)) if why.contains(says)),
                "{refused:?} should say {says:?}"
            );
        }
        let stale =
            Change { version: v - 1, entries: vec![entry(2, 2, "late")], ..Change::default() };
        assert_eq!(log.write(stale).await, Err(LogError::Moved(v)));
        assert_eq!(messages(&log), ["a"], "nothing of a refused change is kept");
        assert_eq!(log.version(), v);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_log_comes_back_whole_with_its_repairs_and_epoch() {
        let dir = dir("durable");
        {
            let (log, replayed) = Log::open(&dir, "test", 10).unwrap();
            assert!(replayed.records.is_empty() && log.is_empty());
            at_epoch(&log, 1).await;
            let log = Arc::new(log);
            let appends: Vec<_> = (0..50)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(
                        async move { log.append(format!("m{i}"), 1, None).await.unwrap().seq },
                    )
                })
                .collect();
            let mut seqs = Vec::new();
            for append in appends {
                let seq = append.await.unwrap();
                assert!(log.len() >= seq, "visible once durable");
                seqs.push(seq);
            }
            seqs.sort_unstable();
            assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "each seq given once");
            let repair = Change {
                version: log.version(),
                epoch: 4,
                truncate_after: Some(48),
                entries: vec![entry(49, 4, "new 49")],
            };
            log.write(repair).await.unwrap();
        }
        let (log, _) = Log::open(&dir, "test", 10).unwrap();
        assert_eq!((log.len(), log.epoch()), (49, 4));
        assert_eq!(log.read(49, 1), [entry(49, 4, "new 49")]);
        assert_eq!(log.append("next".into(), 4, None).await, appended(50), "numbering goes on");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn reads_stop_at_their_byte_bound_but_always_bring_one_entry() {
        let log = Log::in_memory(10);
        let entries = vec![entry(1, 1, "aaaa"), entry(2, 1, "bbbb"), entry(3, 1, "cccc")];
        log.write(Change { version: 0, epoch: 1, entries, ..Change::default() }).await.unwrap();
        assert_eq!(log.read_bounded(1, 10, 8).len(), 2);
        assert_eq!(log.read_bounded(1, 10, 3).len(), 1, "the first entry comes whatever its size");
        assert_eq!(log.read_bounded(2, 1, usize::MAX), [entry(2, 1, "bbbb")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_repair_cut_short_by_a_crash_leaves_a_valid_log() {
        let dir = dir("torn-repair");
        {
            let (log, _) = Log::open(&dir, "test", 10).unwrap();
            let old: Vec<_> = (1..=5).map(|i| entry(i, 1, "old")).collect();
            log.write(Change {
                version: log.version(),
                epoch: 1,
                entries: old,
                ..Change::default()
            })
            .await
            .unwrap();
            let new: Vec<_> = (3..=6).map(|i| entry(i, 2, "new")).collect();
            let repair =
                Change { version: log.version(), epoch: 2, truncate_after: Some(2), entries: new };
            log.write(repair).await.unwrap();
        }
        // The crash cut the repair's last record in half.
        let segment = dir.join("000000000001.seg");
        let len = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 3).unwrap();
        let (log, replayed) = Log::open(&dir, "test", 10).unwrap();
        assert!(replayed.truncated.is_some());
        let entries = log.read(1, u32::MAX);
        assert_eq!(entries.len(), 5, "the old suffix stays dropped, the new one is short by one");
        assert!(
            entries[..2].iter().all(|e| e.epoch == 1) && entries[2..].iter().all(|e| e.epoch == 2)
        );
        assert_eq!(log.epoch(), 2);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn entries_past_a_gap_in_an_older_log_are_dropped_for_good() {
        let dir = dir("gap");
        {
            let (mut segments, _) = Segments::open(&dir).unwrap();
            let old = |seq: u64, msg: &str| Record::Entry(entry(seq, 0, msg));
            segments.append(&[old(1, "a"), old(3, "early")]).unwrap();
        }
        let (log, _) = Log::open(&dir, "test", 10).unwrap();
        assert_eq!(messages(&log), ["a"]);
        let next = vec![entry(2, 1, "b"), entry(3, 1, "c")];
        log.write(Change { version: log.version(), epoch: 1, truncate_after: None, entries: next })
            .await
            .unwrap();
        drop(log);
        let (log, _) = Log::open(&dir, "test", 10).unwrap();
        assert_eq!(messages(&log), ["a", "b", "c"], "the early entry does not come back at 3");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
