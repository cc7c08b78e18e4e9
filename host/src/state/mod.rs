//! What a node keeps between requests: its log and, on the master, each secondary's progress.
//!
//! Components are instantiated per request and keep nothing; this is the memory that lets a
//! node serve request after request (and, later, lets a new component version take over
//! without losing the log).

mod durable;
mod log;
mod peers;
mod segments;

pub use self::log::{Entry, Log, LogError, Stored};
pub use self::peers::{Peer, PeerStatus, Peers};
pub use self::segments::{Replayed, StorageError};

use std::path::Path;

/// The state of one node.
#[derive(Debug, Default)]
pub struct NodeState {
    pub log: Log,
    /// The master's secondaries (none on a secondary).
    pub peers: Peers,
}

impl NodeState {
    /// A node's state in memory only, knowing the secondaries it replicates to.
    pub fn in_memory<'a>(secondaries: impl IntoIterator<Item = &'a str>) -> Self {
        Self { log: Log::in_memory(), peers: Peers::new(secondaries) }
    }

    /// A node's state kept in `dir`: the log under `dir/log`, what the master knows of its
    /// secondaries in `dir/peers.json`. Reads back what is there.
    pub fn open<'a>(
        dir: &Path,
        node: &str,
        secondaries: impl IntoIterator<Item = &'a str>,
    ) -> Result<(Self, Replayed), StorageError> {
        let (log, replayed) = Log::open(&dir.join("log"), node)?;
        let file = dir.join("peers.json");
        let peers = Peers::open(secondaries, file.clone())
            .map_err(|error| StorageError::Io { file, error })?;
        Ok((Self { log, peers }, replayed))
    }
}
