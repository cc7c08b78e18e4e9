//! The log: a gap-free, ordered prefix that readers see, entries that arrived ahead of a gap,
//! and entries on their way to disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::durable::{Durable, Sink};
use super::segments::{Record, Replayed, Segments, StorageError};

/// How far past the gap-free prefix a secondary buffers entries that arrived early. Bounds the
/// memory a confused or hostile sender can make it hold.
pub const AHEAD_WINDOW: u64 = 1_000_000;

/// One message and its place in the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub msg: String,
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub added: u32,
    pub duplicates: u32,
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The entry is further ahead of the prefix than `AHEAD_WINDOW`.
    #[error("sequence number {seq} is too far ahead: this node accepts up to {max} now")]
    OutOfWindow { seq: u64, max: u64 },
    /// This node already holds a different message at `seq`: its log did not come from the
    /// master that sends now (for example, that master lost its log).
    #[error("this node already holds a different message at sequence number {seq}")]
    Conflict { seq: u64 },
    /// The disk did not take it; nothing was acknowledged.
    #[error("the log could not be written: {0}")]
    Storage(String),
}

/// A node's log. Readers only ever see the gap-free prefix of what is durable, so every node's
/// log is a prefix of the master's, and nothing a reader saw can be lost in a crash.
pub struct Log {
    shared: Arc<Shared>,
    /// The disk behind the log; none in memory mode.
    durable: Option<Durable>,
}

struct Shared {
    inner: RwLock<Inner>,
    /// The prefix's length, for whoever waits for it to grow (replication streams).
    grown: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    /// `prefix[i]` has `seq` `i + 1`.
    prefix: Vec<String>,
    /// Entries past a gap, waiting for it to fill.
    ahead: BTreeMap<u64, String>,
    /// Entries given to the disk and not yet written: not visible, but taken.
    pending: BTreeMap<u64, String>,
    /// The last group-commit ticket handed out.
    ticket: u64,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("len", &self.len())
            .field("durable", &self.durable.is_some())
            .finish()
    }
}

impl Default for Log {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl Log {
    /// A log kept in memory only: lost when the process ends. For tests and demos.
    pub fn in_memory() -> Self {
        Self { shared: Arc::new(Shared::new(Inner::default())), durable: None }
    }

    /// The log kept in `dir`: what is there is read back (a torn tail cut off), and every
    /// entry taken from now on is on disk before it is acknowledged.
    pub fn open(dir: &Path, node: &str) -> Result<(Self, Replayed), StorageError> {
        let (segments, mut replayed) = Segments::open(dir)?;
        let mut inner = Inner::default();
        for Record { seq, msg } in std::mem::take(&mut replayed.records) {
            match inner.held(seq) {
                None => inner.insert_visible(seq, msg),
                Some(held) if *held != msg => tracing::warn!(
                    node,
                    seq,
                    "the log holds two different messages at one sequence number; keeping the first"
                ),
                Some(_) => {}
            }
        }
        let shared = Arc::new(Shared::new(inner));
        let durable = Durable::start(segments, node, shared.clone());
        Ok((Self { shared, durable: Some(durable) }, replayed))
    }

    /// Length of the gap-free prefix.
    pub fn len(&self) -> u64 {
        self.shared.read().prefix.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Follows the prefix's length: `changed()` resolves when it grows.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.shared.grown.subscribe()
    }

    /// Up to `limit` entries of the prefix starting at `seq` = `start` (0 is read as 1).
    pub fn read(&self, start: u64, limit: u32) -> Vec<Entry> {
        let inner = self.shared.read();
        let first = start.max(1);
        let Ok(skip) = usize::try_from(first - 1) else { return Vec::new() };
        inner
            .prefix
            .iter()
            .skip(skip)
            .take(limit as usize)
            .zip(first..)
            .map(|(msg, seq)| Entry { seq, msg: msg.clone() })
            .collect()
    }

    /// Appends after everything held or on its way (the master numbering a message, or a
    /// secondary taking the original unnumbered form) and returns the `seq` given, once the
    /// entry is durable.
    pub async fn append(&self, msg: String) -> Result<u64, LogError> {
        let (seq, ticket) = {
            let mut inner = self.shared.write();
            let seq = inner.last_seq() + 1;
            match &self.durable {
                None => {
                    inner.insert_visible(seq, msg);
                    self.shared.grew(&inner);
                    return Ok(seq);
                }
                Some(durable) => {
                    inner.pending.insert(seq, msg.clone());
                    inner.ticket += 1;
                    durable.submit(inner.ticket, vec![Record { seq, msg }]);
                    (seq, inner.ticket)
                }
            }
        };
        self.wait(ticket).await?;
        Ok(seq)
    }

    /// Stores entries at their `seq`, in any order, each at most once, and returns once the
    /// new ones are durable. Nothing is stored when any entry is refused.
    pub async fn store(&self, entries: Vec<Entry>) -> Result<Stored, LogError> {
        let (added, duplicates, ticket) = {
            let mut inner = self.shared.write();
            let max = inner.prefix.len() as u64 + AHEAD_WINDOW;
            for entry in &entries {
                if entry.seq > max {
                    return Err(LogError::OutOfWindow { seq: entry.seq, max });
                }
                if inner.held(entry.seq).is_some_and(|held| *held != entry.msg) {
                    return Err(LogError::Conflict { seq: entry.seq });
                }
            }
            let mut new: Vec<Record> = Vec::new();
            let mut in_batch = std::collections::BTreeSet::new();
            let mut duplicates = 0u32;
            for Entry { seq, msg } in entries {
                if inner.held(seq).is_some() || !in_batch.insert(seq) {
                    duplicates += 1;
                    continue;
                }
                new.push(Record { seq, msg });
            }
            let added = u32::try_from(new.len()).unwrap_or(u32::MAX);
            let ticket = match &self.durable {
                None => {
                    for Record { seq, msg } in new {
                        inner.insert_visible(seq, msg);
                    }
                    self.shared.grew(&inner);
                    None
                }
                Some(_) if new.is_empty() => None,
                Some(durable) => {
                    for record in &new {
                        inner.pending.insert(record.seq, record.msg.clone());
                    }
                    inner.ticket += 1;
                    durable.submit(inner.ticket, new);
                    Some(inner.ticket)
                }
            };
            (added, duplicates, ticket)
        };
        if let Some(ticket) = ticket {
            self.wait(ticket).await?;
        }
        Ok(Stored { added, duplicates, len: self.len() })
    }

    async fn wait(&self, ticket: u64) -> Result<(), LogError> {
        let durable = self.durable.as_ref().expect("tickets are only handed out with a disk");
        durable.wait(ticket).await.map_err(LogError::Storage)
    }
}

impl Shared {
    fn new(inner: Inner) -> Self {
        let len = inner.prefix.len() as u64;
        Self { inner: RwLock::new(inner), grown: watch::channel(len).0 }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every update is complete before the lock is released, so a poisoned lock is usable.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn grew(&self, inner: &Inner) {
        self.grown.send_replace(inner.prefix.len() as u64);
    }
}

impl Sink for Shared {
    fn durable(&self, records: Vec<Record>) {
        let mut inner = self.write();
        for Record { seq, msg } in records {
            inner.pending.remove(&seq);
            inner.insert_visible(seq, msg);
        }
        self.grew(&inner);
    }

    fn lost(&self, records: Vec<Record>) {
        let mut inner = self.write();
        for record in records {
            inner.pending.remove(&record.seq);
        }
    }
}

impl Inner {
    fn held(&self, seq: u64) -> Option<&String> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.prefix.get(index).or_else(|| self.ahead.get(&seq)).or_else(|| self.pending.get(&seq))
    }

    /// The highest `seq` held or on its way.
    fn last_seq(&self) -> u64 {
        let ahead = self.ahead.last_key_value().map_or(0, |(seq, _)| *seq);
        let pending = self.pending.last_key_value().map_or(0, |(seq, _)| *seq);
        (self.prefix.len() as u64).max(ahead).max(pending)
    }

    fn insert_visible(&mut self, seq: u64, msg: String) {
        if seq == self.prefix.len() as u64 + 1 {
            self.prefix.push(msg);
            while let Some(msg) = self.ahead.remove(&(self.prefix.len() as u64 + 1)) {
                self.prefix.push(msg);
            }
        } else if seq > self.prefix.len() as u64 {
            self.ahead.insert(seq, msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, msg: &str) -> Entry {
        Entry { seq, msg: msg.to_owned() }
    }

    fn messages(log: &Log) -> Vec<String> {
        log.read(1, u32::MAX).into_iter().map(|e| e.msg).collect()
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("replog-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn append_numbers_from_one() {
        let log = Log::in_memory();
        assert_eq!(log.append("a".into()).await, Ok(1));
        assert_eq!(log.append("b".into()).await, Ok(2));
        assert_eq!(log.read(2, 10), vec![entry(2, "b")]);
        assert_eq!(log.read(0, 1), vec![entry(1, "a")]);
        assert!(log.read(3, 10).is_empty());
    }

    #[tokio::test]
    async fn readers_see_only_the_gap_free_prefix() {
        let log = Log::in_memory();
        let stored = log.store(vec![entry(1, "a"), entry(2, "b"), entry(4, "d")]).await.unwrap();
        assert_eq!(stored, Stored { added: 3, duplicates: 0, len: 2 });
        assert_eq!(messages(&log), ["a", "b"]);
        let stored = log.store(vec![entry(3, "c")]).await.unwrap();
        assert_eq!(stored, Stored { added: 1, duplicates: 0, len: 4 });
        assert_eq!(messages(&log), ["a", "b", "c", "d"]);
    }

    #[tokio::test]
    async fn replays_are_acknowledged_not_stored_again() {
        let log = Log::in_memory();
        log.store(vec![entry(1, "a"), entry(3, "c")]).await.unwrap();
        let stored = log
            .store(vec![entry(1, "a"), entry(2, "b"), entry(3, "c"), entry(2, "b")])
            .await
            .unwrap();
        assert_eq!(stored, Stored { added: 1, duplicates: 3, len: 3 });
        assert_eq!(messages(&log), ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_different_message_at_a_held_seq_is_refused_whole() {
        let log = Log::in_memory();
        log.store(vec![entry(1, "a")]).await.unwrap();
        let refused = log.store(vec![entry(2, "b"), entry(1, "not a")]).await;
        assert_eq!(refused, Err(LogError::Conflict { seq: 1 }));
        assert_eq!(messages(&log), ["a"], "nothing of a refused batch is kept");
    }

    #[tokio::test]
    async fn entries_far_ahead_are_refused() {
        let log = Log::in_memory();
        let refused = log.store(vec![entry(AHEAD_WINDOW + 1, "far")]).await;
        assert_eq!(
            refused,
            Err(LogError::OutOfWindow { seq: AHEAD_WINDOW + 1, max: AHEAD_WINDOW })
        );
        assert!(log.store(vec![entry(AHEAD_WINDOW, "edge")]).await.is_ok());
    }

    #[tokio::test]
    async fn unnumbered_appends_go_after_entries_waiting_past_a_gap() {
        let log = Log::in_memory();
        log.store(vec![entry(1, "a"), entry(3, "c")]).await.unwrap();
        assert_eq!(log.append("d".into()).await, Ok(4));
        log.store(vec![entry(2, "b")]).await.unwrap();
        assert_eq!(messages(&log), ["a", "b", "c", "d"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_durable_log_comes_back_whole_and_numbering_goes_on() {
        let dir = dir("durable");
        {
            let (log, replayed) = Log::open(&dir, "test").unwrap();
            assert!(replayed.records.is_empty() && log.is_empty());
            let log = Arc::new(log);
            let appends: Vec<_> = (0..50)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move { log.append(format!("m{i}")).await.unwrap() })
                })
                .collect();
            for append in appends {
                let seq = append.await.unwrap();
                assert!(log.len() >= seq || log.read(seq, 1).is_empty(), "visible once durable");
            }
            assert_eq!(log.len(), 50);
            log.store(vec![entry(52, "ahead")]).await.unwrap();
        }
        let (log, _) = Log::open(&dir, "test").unwrap();
        assert_eq!(log.len(), 50, "the entry past the gap stays past it");
        assert_eq!(
            log.append("next".into()).await,
            Ok(53),
            "numbering continues after everything held"
        );
        let all = messages(&log);
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 50);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
