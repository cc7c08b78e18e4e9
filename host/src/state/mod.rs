//! What a node keeps between requests: its log and, on a master, whether it takes writes and
//! each secondary's progress.
//!
//! Components are instantiated per request and keep nothing; this is the memory that lets a
//! node serve request after request, and lets a new component version take over without losing
//! the log.

mod durable;
mod entry;
mod gate;
mod keys;
mod lock;
mod log;
mod peers;
mod segments;

pub use self::gate::{Gate, Mode};
pub use self::keys::DEFAULT_KEY_WINDOW;
pub use self::lock::DirLock;
pub use self::log::{Appended, Change, Entry, Log, LogError, Position, Run, Snapshot};
pub use self::peers::{Contact, Peer, PeerStatus, Peers};
pub use self::segments::{Replayed, StorageError};

use std::path::Path;

/// The state of one node.
#[derive(Debug, Default)]
pub struct NodeState {
    pub log: Log,
    /// The master's secondaries (none on a secondary).
    pub peers: Peers,
    /// Whether a master takes writes (a secondary's stays recovering: it takes none).
    pub gate: Gate,
    /// The claim on the data directory, held while the node runs.
    _lock: Option<DirLock>,
}

impl NodeState {
    /// A node's state in memory only, knowing the secondaries it replicates to and
    /// remembering the last `key_window` idempotency keys.
    pub fn in_memory<'a>(
        secondaries: impl IntoIterator<Item = &'a str>,
        key_window: usize,
    ) -> Self {
        Self { log: Log::in_memory(key_window), peers: Peers::new(secondaries), ..Self::default() }
    }

    /// A node's state kept in `dir`, which it locks first (one process per directory), with
    /// the log under `dir/log`. Reads back what is there.
    pub fn open<'a>(
        dir: &Path,
        node: &str,
        secondaries: impl IntoIterator<Item = &'a str>,
        key_window: usize,
    ) -> Result<(Self, Replayed), StorageError> {
        let lock = DirLock::acquire(dir)?;
        let (log, replayed) = Log::open(&dir.join("log"), node, key_window)?;
        let state =
            Self { log, peers: Peers::new(secondaries), gate: Gate::default(), _lock: Some(lock) };
        Ok((state, replayed))
    }
}
