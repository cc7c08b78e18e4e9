//! One process per data directory.
//!
//! Two nodes writing one log would interleave their records, and a restart would mix their
//! logs; so a node takes an exclusive `flock` on `DIR/LOCK` before it reads anything there,
//! and holds it while it runs. The kernel drops the lock when the process ends, however it
//! ends, so a crash never leaves a stale lock behind. The file also holds the owner's pid, for
//! the message the next process gets.
//!
//! The lock is the standard library's `File::try_lock` (flock(2) on Linux): no crate needed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use super::segments::StorageError;

/// Held for as long as the node uses the directory.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `dir` (creating it if needed), or says which process has it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self, StorageError> {
        let dir_error = |error| StorageError::Dir { dir: dir.to_owned(), error };
        std::fs::create_dir_all(dir).map_err(dir_error)?;
        let path = dir.join("LOCK");
        let io_error = |error| StorageError::Io { file: path.clone(), error };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let pid = owner.trim().parse().ok();
                return Err(StorageError::InUse { dir: dir.to_owned(), pid });
            }
            Err(TryLockError::Error(error)) => return Err(io_error(error)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_error)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_with_the_owner_named_until_the_first_ends() {
        let dir = std::env::temp_dir().join(format!("replog-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = DirLock::acquire(&dir).unwrap();
        let refused = DirLock::acquire(&dir).unwrap_err().to_string();
        assert_eq!(
            refused,
            format!("data directory {} is in use by pid {}", dir.display(), std::process::id())
        );
        drop(first);
        let again = DirLock::acquire(&dir);
        assert!(again.is_ok(), "free again once released: {again:?}");
        assert!(dir.join("LOCK").exists());
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
