//! What the log's operations take and give: a change, where a log ends, why a change failed.

use crate::state::entry::Entry;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Where the message is in the log.
    pub seq: u64,
    /// Whether its key was written already, with the same message: nothing new was appended,
    /// and `seq` is the original's.
    pub duplicate: bool,
}

/// Where a log ends: its last entry's `seq` and `epoch` (both 0 when empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    /// The last entry's place.
    pub seq: u64,
    /// The last entry's epoch.
    pub epoch: u64,
}

/// The entries from `first` up to the next run share `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The epoch the run's entries were numbered in.
    pub epoch: u64,
    /// Its first entry's `seq`.
    pub first: u64,
}

/// The log's epoch, end and version, read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The highest epoch the log has seen.
    pub epoch: u64,
    /// Where it ends.
    pub last: Position,
    /// How many changes it has taken: a change decided on it must name this.
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
    /// Or, when the log does not hold this entry, drop everything and begin after it: a
    /// secondary brought to its master's start, below which the master holds nothing (retention
    /// removed it). Takes the place of `truncate_after`; nothing happens when the entry is held.
    pub begin: Option<Position>,
    /// Then append these.
    pub entries: Vec<Entry>,
}

/// Why a change was not applied; the log is as it was.
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
    /// The node's role does not take this write now (a sequencer recovering or fenced); the
    /// text says why.
    #[error("{0}")]
    Closed(String),
    /// The disk did not take it; nothing was acknowledged, and the log takes no more writes.
    #[error("the log could not be written: {0}")]
    Storage(String),
}
