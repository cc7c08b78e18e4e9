//! The file operations the log on disk makes, behind one seam: the operating system's files in
//! production, and in tests a simulated disk that keeps what was written but not synced apart
//! from what is durable, and loses it (whole, or torn) at a simulated power cut, as SQLite's
//! crash-test VFS and FoundationDB's simulator do. `kill -9` leaves the page cache intact, so
//! only such a disk shows that nothing is acknowledged before it is synced.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// What the log's segments do with files.
pub(crate) trait Disk: Send + Sync + 'static {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn file_names(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A new file, to append to; its name is durable only once its folder is synced.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Makes the names of `dir`'s files durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Cuts the file at `path` to `len` bytes, durably.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// When the file at `path` was last written to.
    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime>;
}

/// A file open for appending.
pub(crate) trait DiskFile: Send {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes what was written and the file's metadata durable (`fsync`).
    fn sync_all(&mut self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
}

/// The operating system's files.
pub(crate) struct Os;

impl Disk for Os {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(dir)?
            .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(OpenOptions::new().create_new(true).append(true).open(path)?))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(OpenOptions::new().append(true).open(path)?))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
        std::fs::metadata(path)?.modified()
    }
}

impl DiskFile for File {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

#[cfg(test)]
pub(crate) use self::simulated::{Cut, SimulatedDisk};

#[cfg(test)]
mod simulated {
    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, MutexGuard};

    use super::{Disk, DiskFile};

    /// What a power cut does to bytes written but not synced.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Cut {
        /// They are gone.
        Whole,
        /// The first `n` of them (or all, if fewer) reached the platter; the rest are gone.
        Torn(usize),
    }

    /// A disk in memory whose unsynced writes a power cut loses. Cheap to clone: clones are
    /// the same disk.
    #[derive(Clone, Default)]
    pub(crate) struct SimulatedDisk {
        state: Arc<Mutex<State>>,
        /// How long a sync takes, as a real disk's does: a cut may fall inside it.
        sync_time: std::time::Duration,
    }

    #[derive(Default)]
    struct State {
        files: BTreeMap<PathBuf, SimulatedFile>,
        /// After a cut and until `restart`, every operation fails: the machine is off.
        off: bool,
    }

    #[derive(Default)]
    struct SimulatedFile {
        /// What a reader sees now.
        written: Vec<u8>,
        /// How much of it survives a power cut (files are only appended to, or cut durably).
        synced: usize,
        /// Whether its name survives a power cut (its folder was synced since it was made).
        named: bool,
    }

    fn off() -> io::Error {
        io::Error::other("the simulated machine has no power")
    }

    impl SimulatedDisk {
        fn lock(&self) -> io::Result<MutexGuard<'_, State>> {
            let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if state.off { Err(off()) } else { Ok(state) }
        }

        /// Cuts the power: every file keeps what was synced (and, `Torn`, a part of what was
        /// not), a file whose name was never synced is gone, and the disk takes nothing more
        /// until `restart`.
        pub(crate) fn cut(&self, cut: Cut) {
            let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.off = true;
            state.files.retain(|_, file| file.named);
            for file in state.files.values_mut() {
                let unsynced = file.written.len() - file.synced;
                let kept = match cut {
                    Cut::Whole => 0,
                    Cut::Torn(n) => n.min(unsynced),
                };
                file.written.truncate(file.synced + kept);
                file.synced = file.written.len();
            }
        }

        /// Powers the machine on again, with what survived.
        pub(crate) fn restart(&self) {
            self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).off = false;
        }

        /// A disk whose syncs take `sync_time`.
        pub(crate) fn with_sync_time(sync_time: std::time::Duration) -> Self {
            Self { sync_time, ..Self::default() }
        }

        /// Bytes written and not yet synced, in all files.
        pub(crate) fn unsynced(&self) -> usize {
            let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.files.values().map(|f| f.written.len() - f.synced).sum()
        }
    }

    impl Disk for SimulatedDisk {
        fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
            self.lock().map(drop)
        }

        fn file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
            let state = self.lock()?;
            let names = state.files.keys().filter(|path| path.parent() == Some(dir));
            Ok(names.filter_map(|p| Some(p.file_name()?.to_string_lossy().into_owned())).collect())
        }

        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            let state = self.lock()?;
            let file = state.files.get(path).ok_or(io::ErrorKind::NotFound)?;
            Ok(file.written.clone())
        }

        fn create_new(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
            let mut state = self.lock()?;
            if state.files.contains_key(path) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            state.files.insert(path.to_owned(), SimulatedFile::default());
            Ok(Box::new(Handle { disk: self.clone(), path: path.to_owned() }))
        }

        fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
            if !self.lock()?.files.contains_key(path) {
                return Err(io::ErrorKind::NotFound.into());
            }
            Ok(Box::new(Handle { disk: self.clone(), path: path.to_owned() }))
        }

        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            let mut state = self.lock()?;
            for (path, file) in state.files.iter_mut() {
                if path.parent() == Some(dir) {
                    file.named = true;
                }
            }
            Ok(())
        }

        fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
            let mut state = self.lock()?;
            let file = state.files.get_mut(path).ok_or(io::ErrorKind::NotFound)?;
            let len = usize::try_from(len).unwrap_or(usize::MAX).min(file.written.len());
            file.written.truncate(len);
            file.synced = len;
            Ok(())
        }

        fn remove(&self, path: &Path) -> io::Result<()> {
            let mut state = self.lock()?;
            state.files.remove(path).map(drop).ok_or(io::ErrorKind::NotFound.into())
        }

        fn modified(&self, path: &Path) -> io::Result<std::time::SystemTime> {
            // The simulation keeps no clock: a file read back counts as written just now.
            self.lock()?.files.get(path).ok_or(io::ErrorKind::NotFound)?;
            Ok(std::time::SystemTime::now())
        }
    }

    /// An open file of a simulated disk.
    struct Handle {
        disk: SimulatedDisk,
        path: PathBuf,
    }

    impl Handle {
        fn with<R>(&self, act: impl FnOnce(&mut SimulatedFile) -> R) -> io::Result<R> {
            let mut state = self.disk.lock()?;
            let file = state.files.get_mut(&self.path).ok_or(io::ErrorKind::NotFound)?;
            Ok(act(file))
        }
    }

    impl DiskFile for Handle {
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.with(|file| file.written.extend_from_slice(bytes))
        }

        fn sync_data(&mut self) -> io::Result<()> {
            // What is written by the time the sync starts is what it makes durable, once it
            // has taken its time (and if the power is still on then).
            let written = self.with(|file| file.written.len())?;
            std::thread::sleep(self.disk.sync_time);
            self.with(|file| file.synced = file.synced.max(written.min(file.written.len())))
        }

        fn sync_all(&mut self) -> io::Result<()> {
            self.sync_data()
        }

        fn len(&self) -> io::Result<u64> {
            self.with(|file| file.written.len() as u64)
        }
    }
}
