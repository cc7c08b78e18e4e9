//! What a node keeps between requests: its log and, on a master, whether it takes writes and
//! each secondary's progress.
//!
//! Components are instantiated per request and keep nothing; this is the memory that lets a
//! node serve request after request, and lets a new component version take over without losing
//! the log.

mod disk;
mod durable;
mod entry;
mod gate;
mod keys;
mod lock;
mod log;
mod peers;
mod segments;
mod traces;

pub use self::entry::Entry;
pub use self::gate::{Gate, Mode};
pub use self::keys::DEFAULT_KEY_WINDOW;
pub(crate) use self::lock::DirLock;
pub(crate) use self::log::TextPage;
pub use self::log::{Appended, Change, Log, LogError, Position, Run, Snapshot};
pub use self::peers::{Contact, Peer, PeerStatus, Peers};
pub use self::segments::{Replayed, StorageError};

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::metrics::NodeMetrics;

/// The state of one node.
#[derive(Debug)]
pub struct NodeState {
    /// The replicated log, in memory or on disk.
    pub log: Log,
    /// The master's secondaries (none on a secondary).
    pub peers: Peers,
    /// Whether a master takes writes (a secondary's stays recovering: it takes none).
    pub gate: Gate,
    /// Why a secondary refused the last master that contacted it, as its component recorded
    /// (none: it serves its master). Not kept across restarts: the next contact tells again.
    refusal: Mutex<Option<String>>,
    /// What the node counts, for `GET /metrics`.
    pub metrics: NodeMetrics,
    /// The claim on the data directory, held while the node runs.
    _lock: Option<DirLock>,
}

impl Default for NodeState {
    fn default() -> Self {
        Self::new(Log::default(), None)
    }
}

impl NodeState {
    fn new(log: Log, lock: Option<DirLock>) -> Self {
        let metrics = NodeMetrics::new(log.metrics().clone());
        Self {
            log,
            peers: Peers::default(),
            gate: Gate::default(),
            refusal: Mutex::default(),
            metrics,
            _lock: lock,
        }
    }

    /// A node's state in memory only, remembering the last `key_window` idempotency keys.
    pub(crate) fn in_memory(key_window: usize) -> Self {
        Self::new(Log::in_memory(key_window), None)
    }

    /// Why a secondary refuses its master now (none: it serves it).
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub(crate) fn set_refusal(&self, reason: Option<String>) {
        *self.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
    }

    /// A node's state kept in `dir`, which it locks first (one process per directory), with
    /// the log under `dir/log`. Reads back what is there.
    pub(crate) fn open_dir(
        dir: &Path,
        node: &str,
        key_window: usize,
    ) -> Result<(Self, Replayed), StorageError> {
        let lock = DirLock::acquire(dir)?;
        let (log, replayed) = Log::open(&dir.join("log"), node, key_window)?;
        Ok((Self::new(log, Some(lock)), replayed))
    }
}

/// The state of node `name`: read back from `dir` (off the async threads; it takes a while
/// for a long log), or new in memory without one. Says in the log what it found.
pub(crate) async fn open(
    dir: Option<PathBuf>,
    name: &str,
    key_window: usize,
) -> Result<NodeState, StorageError> {
    let Some(dir) = dir else { return Ok(NodeState::in_memory(key_window)) };
    let started = Instant::now();
    let opening = {
        let (dir, name) = (dir.clone(), name.to_owned());
        move || NodeState::open_dir(&dir, &name, key_window)
    };
    let (state, replayed) = tokio::task::spawn_blocking(opening)
        .await
        .map_err(|e| StorageError::Io { file: dir.clone(), error: std::io::Error::other(e) })??;
    if let Some((file, offset, bytes)) = &replayed.truncated {
        tracing::warn!(
            node = %name,
            file = %file.display(),
            offset,
            bytes,
            "the log ended in a record cut short (a crash while writing it): cut it off"
        );
    }
    tracing::info!(
        node = %name,
        dir = %dir.display(),
        messages = state.log.len(),
        ms = started.elapsed().as_millis() as u64,
        "log read back"
    );
    Ok(state)
}
