//! What a node keeps between requests, and every rule the host enforces on it, by role.
//!
//! - The log every role keeps (`log`, on `segments` through `disk`, `durable` for group
//!   commit and, between writes, `retention`; `keys` for idempotency, `traces` for who appended
//!   what; `failpoint` for tests of crashes), and the claim on its directory (`lock`): together
//!   a `Ledger`.
//! - A master's state, `sequencer`: its mode (recovering, open in an epoch, fenced), its view
//!   of the secondaries, and the rules on appends, restores, openings and fences.
//! - A secondary's state, `replica`: whole versioned changes, and why it refuses its master.
//!
//! Components keep nothing between calls that a later call needs (an instance may serve many
//! calls, but holds no state of the node's by design): this is the memory that lets a node
//! serve request after request, and a new component version take over without losing the log.
//! A ledger passes from one role's state to the other's (`hand_over`), so a node can change
//! role without a restart.

mod disk;
mod durable;
mod entry;
mod failpoint;
mod keys;
mod ledger;
mod lock;
mod log;
mod replica;
mod retention;
mod role;
mod segments;
mod sequencer;
mod traces;

pub use self::entry::Entry;
pub use self::keys::DEFAULT_KEY_WINDOW;
pub use self::ledger::Ledger;
pub use self::log::{Appended, Change, Log, LogError, Position, Run, Snapshot};
pub(crate) use self::log::{CLAIM_FOR, Renders, Rendition, TextPage};
pub use self::replica::{Replica, ReplicaStanding};
pub use self::retention::Retention;
pub use self::role::{RoleKind, RoleState};
pub use self::segments::{DEFAULT_SEGMENT_BYTES, Replay, StorageError};
pub use self::sequencer::{Contact, Mode, PeerRecord, PeerStatus, Peers, Sequencer};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::NodeMetrics;

/// The state of one node: its role's, and what it counts.
#[derive(Debug)]
pub struct NodeState {
    role: RoleState,
    /// What the node counts, for `GET /metrics`: kept across role changes.
    pub metrics: Arc<NodeMetrics>,
}

impl NodeState {
    fn new(kind: RoleKind, ledger: Ledger) -> Self {
        let metrics = Arc::new(NodeMetrics::new(ledger.log.metrics().clone()));
        Self { role: RoleState::new(kind, Arc::new(ledger)), metrics }
    }

    /// The same node's state in the role of `kind`, over the same log and counting on; this
    /// state's role changes the log no more (see `RoleState::hand_over`). `epoch`: the term a
    /// new sequencer was elected for, or the epoch that fences an old one.
    pub fn hand_over(&self, kind: RoleKind, epoch: Option<u64>) -> Self {
        Self { role: self.role.hand_over(kind, epoch), metrics: self.metrics.clone() }
    }

    /// A node's state in memory only, remembering the last `key_window` idempotency keys.
    pub(crate) fn in_memory(kind: RoleKind, key_window: usize) -> Self {
        Self::new(kind, Ledger::in_memory(key_window))
    }

    /// The replicated log, in memory or on disk.
    pub fn log(&self) -> &Log {
        self.role.log()
    }

    /// Its role's state.
    pub fn role(&self) -> &RoleState {
        &self.role
    }

    /// A master's state; none on a secondary.
    pub fn sequencer(&self) -> Option<&Sequencer> {
        match &self.role {
            RoleState::Sequencer(sequencer) => Some(sequencer),
            RoleState::Replica(_) => None,
        }
    }

    /// A secondary's state; none on a master.
    pub fn replica(&self) -> Option<&Replica> {
        match &self.role {
            RoleState::Replica(replica) => Some(replica),
            RoleState::Sequencer(_) => None,
        }
    }
}

/// The state of node `name`: read back from `dir` (off the async threads; it takes a while
/// for a long log) and kept as `retention` says, or new in memory without one (retention is
/// by segments: a log in memory keeps everything). Says in the log what it found.
pub(crate) async fn open(
    kind: RoleKind,
    dir: Option<PathBuf>,
    name: &str,
    key_window: usize,
    retention: Retention,
) -> Result<NodeState, StorageError> {
    let Some(dir) = dir else { return Ok(NodeState::in_memory(kind, key_window)) };
    let started = Instant::now();
    let opening = {
        let (dir, name) = (dir.clone(), name.to_owned());
        move || Ledger::open_dir(&dir, &name, key_window, retention)
    };
    let (ledger, replayed) = tokio::task::spawn_blocking(opening)
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
        start = ledger.log.start(),
        last = ledger.log.len(),
        ms = started.elapsed().as_millis() as u64,
        "log read back"
    );
    Ok(NodeState::new(kind, ledger))
}

#[cfg(test)]
mod tests;
