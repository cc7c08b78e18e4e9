//! The log a node keeps whatever its role, with the claim on its data directory.

use std::path::Path;

use super::lock::DirLock;
use super::log::Log;
use super::retention::Retention;
use super::segments::{Replay, StorageError};

/// The log a node keeps whatever its role, with the claim on the directory it lives in: what
/// passes from one role's state to the other's when a node changes role.
#[derive(Debug)]
pub struct Ledger {
    pub(super) log: Log,
    /// The claim on the data directory, held while the node runs.
    _lock: Option<DirLock>,
}

impl Ledger {
    /// A log in memory only, remembering the last `key_window` idempotency keys.
    pub(crate) fn in_memory(key_window: usize) -> Self {
        Self { log: Log::in_memory(key_window), _lock: None }
    }

    /// The log kept in `dir`, which it locks first (one process per directory), under
    /// `dir/log`, keeping what `retention` says. Reads back what is there.
    pub(crate) fn open_dir(
        dir: &Path,
        node: &str,
        key_window: usize,
        retention: Retention,
    ) -> Result<(Self, Replay), StorageError> {
        let lock = DirLock::acquire(dir)?;
        let disk = std::sync::Arc::new(super::disk::Os);
        let (log, replayed) = Log::open_on(disk, &dir.join("log"), node, key_window, retention)?;
        Ok((Self { log, _lock: Some(lock) }, replayed))
    }
}
