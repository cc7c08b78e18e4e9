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
//!
//! A log has a start as well as an end: retention removes committed entries from the front,
//! whole segments at a time (`state::retention`), and a secondary brought to its master's start
//! begins there (`Change::begin`). Sequence numbers never restart: `len` is the last `seq`,
//! `start` the first held, and reads below the start find nothing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::metrics::LogMetrics;

pub use self::change::{Appended, Change, LogError, Position, Run, Snapshot};
use self::held::{LogTable, planned_after, replay};
pub(crate) use self::read::TextPage;
pub(crate) use self::renditions::CLAIM_FOR;
use self::renditions::Renditions;
pub(crate) use self::renditions::{Renders, Rendition};
use super::disk::{Disk, Os};
use super::durable::{Durable, Sink};
use super::entry::Entry;
use super::keys::Seen;
use super::retention::{Retention, Standing};
use super::segments::{Head, Record, Replay, Segments, StorageError};
use super::traces::Traces;

mod change;
mod held;
mod read;
mod renditions;
#[cfg(test)]
mod tests;

/// A node's log. Cheap to share behind an `Arc`.
pub struct Log {
    shared: Arc<Shared>,
    /// What it counts; its writer thread holds a clone.
    metrics: LogMetrics,
    /// Which client request appended each recent entry.
    traces: Traces,
    /// The disk behind the log; none in memory mode.
    durable: Option<Durable>,
    /// `write`s run one at a time, each to its end (on disk), so that a change is always
    /// decided on a log with nothing in flight.
    writes: tokio::sync::Mutex<()>,
    /// Entries as components render them for their followers, kept near the log's end.
    renditions: Mutex<Renditions>,
    /// Counts the renders handed over to keep, for followers waiting for one (`claim_render`).
    kept: watch::Sender<u64>,
}

struct Shared {
    inner: RwLock<LogTable>,
    /// The log's length after every visible change, for whoever waits for it to grow
    /// (replication streams, tails).
    grown: watch::Sender<u64>,
    /// The commit point (see `Log::commit`), for whoever waits for it to advance (tails of
    /// committed entries). Kept in memory only: a node learns it again from its cluster.
    committed: watch::Sender<u64>,
    /// Moves on with every change a reader can see (see `Log::mark`).
    mark: AtomicU64,
}

/// Renders are checked against the log they were made from.
impl renditions::Entries for LogTable {
    fn len(&self) -> u64 {
        LogTable::len(self)
    }

    fn epoch_at(&self, seq: u64) -> Option<u64> {
        LogTable::epoch_at(self, seq)
    }
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
    pub(crate) fn in_memory(key_window: usize) -> Self {
        Self::new(Shared::new(LogTable::new(key_window)), None, LogMetrics::default())
    }

    fn new(shared: Arc<Shared>, durable: Option<Durable>, metrics: LogMetrics) -> Self {
        Self {
            shared,
            durable,
            metrics,
            traces: Traces::default(),
            writes: tokio::sync::Mutex::new(()),
            renditions: Mutex::default(),
            kept: watch::Sender::new(0),
        }
    }

    /// What it counts (entries added and dropped, replays, group commits).
    pub(crate) fn metrics(&self) -> &LogMetrics {
        &self.metrics
    }

    /// Which client request appended each recent entry (see `append_traced`).
    pub(crate) fn traces(&self) -> &Traces {
        &self.traces
    }

    /// The log kept in `dir`, remembering the last `key_window` idempotency keys: what is there
    /// is read back (a torn tail cut off), and every change from now on is on disk before it is
    /// acknowledged.
    pub fn open(dir: &Path, node: &str, key_window: usize) -> Result<(Self, Replay), StorageError> {
        Self::open_on(Arc::new(Os), dir, node, key_window, Retention::default())
    }

    /// `open`, on `disk`, keeping what `retention` says.
    pub(crate) fn open_on(
        disk: Arc<dyn Disk>,
        dir: &Path,
        node: &str,
        key_window: usize,
        retention: Retention,
    ) -> Result<(Self, Replay), StorageError> {
        let (mut segments, mut replayed) = Segments::open(disk, dir, retention.segment_bytes)?;
        let (inner, past_a_gap) =
            replay(std::mem::take(&mut replayed.records), node, LogTable::new(key_window));
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
            let head = inner.head();
            segments.append(&[Record::Truncate { after: inner.len() }], || head)?;
        }
        let shared = Shared::new(inner);
        let metrics = LogMetrics::default();
        let durable = Durable::start(segments, node, shared.clone(), metrics.clone(), retention);
        Ok((Self::new(shared, Some(durable), metrics), replayed))
    }

    /// The last entry's `seq`: the number of entries appended over the log's life (retention
    /// removes from the start, and numbers never restart).
    pub fn len(&self) -> u64 {
        self.shared.read().len()
    }

    /// The first `seq` the log holds (1 unless retention removed entries, or the log began
    /// after its master's start); past `len` when it holds none.
    pub fn start(&self) -> u64 {
        self.shared.read().start()
    }

    /// Entries retention removed from this log since the node started.
    pub fn removed(&self) -> u64 {
        self.metrics.removed_entries()
    }

    /// Bytes of the log's segment files (0 in memory).
    pub fn disk_bytes(&self) -> u64 {
        self.metrics.disk_bytes()
    }

    /// Bytes of messages held.
    pub fn bytes(&self) -> u64 {
        self.shared.read().bytes
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.shared.read().entries.is_empty()
    }

    /// The last entry's `seq` and `epoch`.
    pub(crate) fn last(&self) -> Position {
        self.shared.read().last()
    }

    /// The highest epoch recorded.
    pub fn epoch(&self) -> u64 {
        self.shared.read().epoch
    }

    /// A number that moves on (it never repeats) with every change a reader of the log can see:
    /// entries appended, dropped or removed, the commit point moved. An answer made from the log
    /// after reading the mark holds as long as the mark has not moved: answers kept by the host
    /// (`node::answers`) are served only while it stands where it stood before they were made.
    pub fn mark(&self) -> u64 {
        self.shared.mark.load(Ordering::Acquire)
    }

    /// Changes with every visible change; `write` checks it.
    pub fn version(&self) -> u64 {
        self.shared.read().version
    }

    /// Epoch, end and version at one instant.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let inner = self.shared.read();
        Snapshot { epoch: inner.epoch, last: inner.last(), version: inner.version }
    }

    /// The epoch of the entry at `seq` (`Some(0)` for `seq` 0, before the first entry).
    pub(crate) fn epoch_at(&self, seq: u64) -> Option<u64> {
        self.shared.read().epoch_at(seq)
    }

    /// The log's runs of entries sharing an epoch, oldest first.
    pub(crate) fn runs(&self) -> Vec<Run> {
        self.shared.read().runs.clone()
    }

    /// The renders in `form` kept for the entries from `start` through `through`, as far as
    /// they are kept without a gap, and made from the entries the log holds now; at most
    /// `max_bytes` of them (the first always comes). See `renditions`.
    pub(crate) fn rendered(
        &self,
        form: &str,
        start: u64,
        through: u64,
        max_bytes: usize,
    ) -> Rendition {
        let inner = self.shared.read();
        self.renditions().rendered(&*inner, form, start, through, max_bytes)
    }

    /// Keeps `renders` in `form`, for `rendered`, as far as they are renders of entries the log
    /// holds near its end.
    pub(crate) fn keep_rendered(&self, form: &str, renders: &Renders<'_>) {
        {
            let inner = self.shared.read();
            self.renditions().keep(&*inner, form, renders);
        }
        self.kept.send_modify(|kept| *kept += 1);
    }

    /// Whether the caller is to render the entry at `seq` in `form`, which it found not kept:
    /// yes unless another follower is rendering it (then wait on `watch_kept`, a little).
    pub(crate) fn claim_render(&self, form: &str, seq: u64) -> bool {
        let inner = self.shared.read();
        self.renditions().claim(&*inner, form, seq, std::time::Instant::now())
    }

    /// Changes whenever renders are handed over to keep.
    pub(crate) fn watch_kept(&self) -> watch::Receiver<u64> {
        self.kept.subscribe()
    }

    /// Bytes of renders kept.
    pub(crate) fn rendered_bytes(&self) -> usize {
        self.renditions().bytes()
    }

    fn renditions(&self) -> std::sync::MutexGuard<'_, Renditions> {
        // A panic while keeping renders leaves nothing half-done that matters: each is checked
        // against the log when it is handed out.
        self.renditions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follows the log's length: `changed()` resolves on every visible change.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.shared.grown.subscribe()
    }

    /// Follows the commit point: `changed()` resolves whenever it moves.
    pub(crate) fn watch_committed(&self) -> watch::Receiver<u64> {
        self.shared.committed.subscribe()
    }

    /// The commit point: the highest `seq` this node knows a majority of the cluster holds.
    pub fn committed(&self) -> u64 {
        *self.shared.committed.borrow()
    }

    /// Raises the commit point to `seq`, at most to the log's end (what is not held here is not
    /// readable here), and returns it. Which `seq` a majority holds is for the role's component
    /// to decide; the host keeps it from decreasing and from passing the log's end.
    pub fn commit(&self, seq: u64) -> u64 {
        let inner = self.shared.read();
        let to = seq.min(inner.len());
        let raised = self.shared.committed.send_if_modified(|committed| {
            let raised = to > *committed;
            if raised {
                *committed = to;
            }
            raised
        });
        if raised {
            self.shared.mark.fetch_add(1, Ordering::AcqRel);
        }
        *self.shared.committed.borrow()
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
        self.append_traced(msg, epoch, key, None).await
    }

    /// `append`, for the client request `trace`: remembered as the one that appended the entry
    /// from the moment it is numbered, before any reader can see the entry.
    pub(crate) async fn append_traced(
        &self,
        msg: String,
        epoch: u64,
        key: Option<String>,
        trace: Option<Arc<str>>,
    ) -> Result<Appended, LogError> {
        /// What happened under the lock, to be waited for after it.
        enum Placement {
            Duplicate(u64),
            Visible(u64),
            OnItsWay(u64, u64),
        }
        let placement = {
            let mut inner = self.shared.write();
            let seen = key.as_deref().map_or(Seen::New, |key| inner.keys.check(key, &msg));
            match seen {
                Seen::Other(seq) => return Err(LogError::KeyReused(seq)),
                Seen::Same(seq) => Placement::Duplicate(seq),
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
                    if let Some(trace) = trace {
                        self.traces.record(seq, trace);
                    }
                    if let Some(key) = &key {
                        inner.keys.insert(key, seq, &msg);
                    }
                    let entry = Entry { seq, epoch, key, msg };
                    match &self.durable {
                        None => {
                            inner.push(entry);
                            self.shared.changed(&mut inner);
                            Placement::Visible(seq)
                        }
                        Some(durable) => {
                            inner.pending += 1;
                            inner.ticket += 1;
                            durable.submit(inner.ticket, vec![Record::Entry(entry)]);
                            Placement::OnItsWay(seq, inner.ticket)
                        }
                    }
                }
            }
        };
        match placement {
            Placement::Duplicate(seq) => {
                self.metrics.replayed();
                self.visible(seq).await;
                Ok(Appended { seq, duplicate: true })
            }
            Placement::Visible(seq) => {
                self.metrics.appended(1);
                Ok(Appended { seq, duplicate: false })
            }
            Placement::OnItsWay(seq, ticket) => {
                // Counted when handed over: the writer makes it durable whether or not this
                // request waits for it.
                self.metrics.appended(1);
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
            self.count(&records, inner.len());
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

    /// Counts what `records`, planned on a log of `len` entries, add and drop.
    fn count(&self, records: &[Record], len: u64) {
        let mut added = 0;
        for record in records {
            match record {
                Record::Entry(_) => added += 1,
                Record::Truncate { after } if *after < len => self.metrics.truncated(len - after),
                Record::Truncate { .. } | Record::Epoch { .. } | Record::Begin { .. } => {}
            }
        }
        self.metrics.appended(added);
    }

    async fn wait(&self, ticket: u64) -> Result<(), LogError> {
        let durable = self.durable.as_ref().expect("tickets are only handed out with a disk");
        durable.wait(ticket).await.map_err(LogError::Storage)
    }
}

impl Shared {
    fn new(inner: LogTable) -> Arc<Self> {
        let len = inner.len();
        Arc::new(Self {
            inner: RwLock::new(inner),
            grown: watch::channel(len).0,
            committed: watch::channel(0).0,
            mark: AtomicU64::new(0),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, LogTable> {
        // Every update is complete before the lock is released, so a poisoned lock is usable.
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, LogTable> {
        self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// After a visible change: a new version, and a word to whoever follows the log.
    fn changed(&self, inner: &mut LogTable) {
        inner.version += 1;
        // Under the lock, after the change: a reader that read the mark before it sees the mark
        // move, whatever of the change it saw.
        self.mark.fetch_add(1, Ordering::AcqRel);
        if inner.pending == 0 {
            inner.planned = inner.last();
        }
        let len = inner.len();
        self.grown.send_replace(len);
        // Only an operator's forced recovery drops committed entries; readers of committed
        // entries are told by their tails, which compare what they sent with what is here.
        self.committed.send_if_modified(|committed| {
            let lowered = *committed > len;
            if lowered {
                tracing::error!(
                    committed = *committed,
                    len,
                    "entries through the commit point were dropped (a forced recovery?): the \
                     commit point is lowered to the log's end"
                );
                *committed = len;
            }
            lowered
        });
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

    fn head(&self) -> Head {
        self.read().head()
    }

    fn standing(&self) -> Standing {
        let inner = self.read();
        Standing { offset: inner.offset, len: inner.len(), committed: *self.committed.borrow() }
    }

    fn retire(&self, through: u64) -> u64 {
        let removed = {
            let mut inner = self.write();
            let removed = inner.remove_through(through);
            if !removed.is_empty() {
                self.changed(&mut inner);
            }
            removed
        };
        let count = removed.len() as u64;
        // A segment holds hundreds of thousands of messages: they are freed after the lock, on
        // a thread of their own, so that neither readers nor the next group commit wait.
        if removed.len() > 1024 {
            let freeing = std::thread::Builder::new().name("replog-log-free".into());
            if let Err(e) = freeing.spawn(move || drop(removed)) {
                tracing::debug!(error = %e, "freeing removed entries on this thread");
            }
        }
        count
    }
}
