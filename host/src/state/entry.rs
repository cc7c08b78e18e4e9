//! An entry of the log.

/// One message and its identity in the order: `(seq, epoch)`, and the key its client gave it, if
/// any, so that a retry of the same write is recognised (also on another node, after a
/// recovery: the key travels with the entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub epoch: u64,
    pub key: Option<String>,
    pub msg: String,
}
