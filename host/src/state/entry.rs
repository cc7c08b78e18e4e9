//! An entry of the log.

/// One message and its identity in the order: `(seq, epoch)`, and the key its client gave it, if
/// any, so that a retry of the same write is recognised (also on another node, after a
/// recovery: the key travels with the entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the log, from 1.
    pub seq: u64,
    /// The epoch of the master that numbered it.
    pub epoch: u64,
    /// The client's idempotency key.
    pub key: Option<String>,
    /// The message.
    pub msg: String,
}
