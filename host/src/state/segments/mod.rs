//! The log on disk: append-only segment files of checksummed records.
//!
//! A segment is `NNNNNNNNNNNN.seg` (its number, counting from 1) and starts with a 16-byte
//! header: the magic `REPLOG\0\0` and the format version (u32, little-endian), then four
//! reserved bytes. Records follow, each
//!
//! ```text
//! length: u32 LE   -- of the payload
//! crc32:  u32 LE   -- CRC-32 (IEEE) of the payload
//! payload: kind u8, then by kind (integers little-endian)
//!   1 entry:    seq u64, epoch u64, key length u16 (0: none), the client's key, the message
//!   2 truncate: after u64   -- every entry after this seq is dropped
//!   3 epoch:    epoch u64   -- the highest epoch this node has seen
//!   4 begin:    after u64, epoch u64
//!               -- the log holds entry `after` of `epoch`; if it does not, everything it held
//!                  goes and it begins after that entry
//! ```
//!
//! Every segment of format 3 starts with a head: an `epoch` record and a `begin` record that
//! say where the log stood when the segment was started. Replaying from any segment with a head
//! therefore gives the log from that point on, which is what lets retention remove whole
//! segments from the oldest (see `state::retention`): deleting a file is atomic, so a crash
//! leaves the old start or a newer one, never a hole. A truncation below a later segment's head
//! marks that head unusable (`SegmentInfo::broken`), so that no removal depends on it.
//!
//! The log is what replaying the records in order gives: a repair is a `truncate` record
//! followed by the entries that replace the dropped ones, so it is one append, and a crash in
//! its middle leaves either the old log or a shorter valid one. Format 1 (before epochs) held
//! only entries, `seq u64` then the message; its segments are read as entries of epoch 0, and
//! new records go to a new segment in the current format.
//!
//! A crash can leave the last record of the last segment half-written: on start it is found,
//! cut off and reported. A bad record anywhere else means the data was damaged, and the node
//! refuses to start rather than silently drop what follows.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::disk::{Disk, DiskFile};
use super::entry::Entry;

pub(crate) const MAGIC: &[u8; 8] = b"REPLOG\0\0";
pub(crate) const FORMAT_VERSION: u32 = 3;
/// The format before segment heads (no `begin` records), still read.
const FORMAT_V2: u32 = 2;
/// The format before epochs, still read.
const FORMAT_V1: u32 = 1;
pub(crate) const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
/// A new segment is started once the current one holds this much, unless told otherwise
/// (`SEGMENT_BYTES`).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// No record is larger: messages are bounded by the nodes' request limits well below this.
const MAX_RECORD_LEN: usize = 64 << 20;

/// Why a log on disk cannot be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The data directory could not be created or listed.
    #[error("cannot use data directory {dir}: {error}")]
    Dir {
        /// The data directory.
        dir: PathBuf,
        /// What it failed with.
        error: io::Error,
    },
    /// Another process holds the data directory's lock.
    #[error("data directory {dir} is in use by {}", match pid {
        Some(pid) => format!("pid {pid}"),
        None => "another process".to_owned(),
    })]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// The process that holds it, as its lock file says, if it does.
        pid: Option<u32>,
    },
    /// A file in the data directory could not be read or written.
    #[error("{file}: {error}")]
    Io {
        /// The file.
        file: PathBuf,
        /// What it failed with.
        error: io::Error,
    },
    /// A segment file does not start with the segment header.
    #[error("{file} is not a replog log segment (bad header)")]
    NotASegment {
        /// The file.
        file: PathBuf,
    },
    /// A segment is in a format version this replog does not read.
    #[error("{file} has format version {found}; this replog reads versions 1 to {FORMAT_VERSION}")]
    Version {
        /// The segment file.
        file: PathBuf,
        /// The version its header gives.
        found: u32,
    },
    /// A record that does not decode is followed by valid ones (or is not in the last
    /// segment): the data was damaged, not cut off by a crash.
    #[error(
        "{file} is damaged at byte {offset} ({why}) and valid records follow: refusing to start \
         rather than drop them. Restore the data directory from a replica or a backup, or move \
         it aside to start empty"
    )]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Where the bad record starts, in bytes from the file's start.
        offset: u64,
        /// What is wrong with it.
        why: String,
    },
}

/// One record: what the log does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// An entry, after the last one.
    Entry(Entry),
    /// Every entry after `after` is dropped.
    Truncate { after: u64 },
    /// The highest epoch seen is (at least) `epoch`.
    Epoch { epoch: u64 },
    /// The log holds entry `after`, of `epoch`; if it does not, it drops everything and begins
    /// after it. At a segment's head, where the log stood; elsewhere, a secondary brought to its
    /// master's start.
    Begin { after: u64, epoch: u64 },
}

impl Record {
    /// Roughly how many bytes it takes on disk, for batching.
    pub(crate) fn size(&self) -> usize {
        match self {
            Record::Entry(entry) => {
                RECORD_HEADER_LEN + 19 + entry.key.as_ref().map_or(0, String::len) + entry.msg.len()
            }
            Record::Truncate { .. } | Record::Epoch { .. } => RECORD_HEADER_LEN + 9,
            Record::Begin { .. } => RECORD_HEADER_LEN + 17,
        }
    }
}

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_EPOCH: u8 = 3;
const KIND_BEGIN: u8 = 4;

/// What was found on disk at start.
#[derive(Debug, Default)]
pub struct Replay {
    pub(crate) records: Vec<Record>,
    /// A torn tail that was cut off: the file, where, and how many bytes went.
    pub(crate) truncated: Option<(PathBuf, u64, u64)>,
    /// The format of the last segment read (0: none).
    last_version: u32,
}

/// Where the log stood when a segment was started: what its head records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The highest epoch recorded.
    pub(crate) epoch: u64,
    /// The last entry's `seq` and epoch.
    pub(crate) after: u64,
    pub(crate) after_epoch: u64,
}

/// What removing whole segments needs to know of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub(crate) number: u64,
    /// Its size on disk.
    pub(crate) bytes: u64,
    /// The last entry its head says the log held when it was started (none: a segment of an
    /// older format): replaying from here gives the log after that entry.
    pub(crate) head: Option<u64>,
    /// A later truncation went below `head`: the log cannot be replayed from here.
    pub(crate) broken: bool,
    /// When it was last written to.
    pub(crate) modified: std::time::SystemTime,
}

/// The segment being appended to.
struct Current {
    file: Box<dyn DiskFile>,
    path: PathBuf,
    len: u64,
    /// Whether it holds no record but its head.
    fresh: bool,
}

/// The segment files of one data directory, open for appending.
pub(crate) struct Segments {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// None until the first append when there is no segment of this format to append to.
    current: Option<Current>,
    /// Every segment, oldest first; the last is `current`'s when there is one.
    infos: Vec<SegmentInfo>,
    /// A new segment is started once the current one holds this much.
    segment_bytes: u64,
}

impl Segments {
    /// Reads every record in `dir` on `disk` (creating it if needed), cuts off a torn tail,
    /// and opens the last segment for appending; new segments start past `segment_bytes`.
    pub(crate) fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        segment_bytes: u64,
    ) -> Result<(Self, Replay), StorageError> {
        let dir_error = |error| StorageError::Dir { dir: dir.to_owned(), error };
        disk.create_dir_all(dir).map_err(dir_error)?;
        let mut numbers = Vec::new();
        for name in disk.file_names(dir).map_err(dir_error)? {
            if let Some(number) = name.strip_suffix(".seg").and_then(|n| n.parse::<u64>().ok()) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        let mut replayed = Replay::default();
        let mut infos: Vec<SegmentInfo> = Vec::new();
        for (i, number) in numbers.iter().enumerate() {
            let last = i + 1 == numbers.len();
            let path = segment_path(dir, *number);
            let first_record = replayed.records.len();
            let Some(bytes) = read_segment(&*disk, &path, last, &mut replayed)? else {
                continue; // a torn new segment, removed
            };
            let io_error = |error| StorageError::Io { file: path.clone(), error };
            let modified = disk.modified(&path).map_err(io_error)?;
            let records = &replayed.records[first_record..];
            let head =
                (replayed.last_version == FORMAT_VERSION).then(|| head_of(records)).flatten();
            infos.push(SegmentInfo { number: *number, bytes, head, broken: false, modified });
            mark_broken(&mut infos, records);
        }
        let current = match infos.last() {
            Some(info) if replayed.last_version == FORMAT_VERSION => {
                let path = segment_path(dir, info.number);
                let io_error = |error| StorageError::Io { file: path.clone(), error };
                let file = disk.open_append(&path).map_err(io_error)?;
                let len = file.len().map_err(io_error)?;
                Some(Current { file, path, len, fresh: false })
            }
            // Records of another format never go into an older segment: the first append
            // starts a new one.
            _ => None,
        };
        let segments = Self {
            disk,
            dir: dir.to_owned(),
            current,
            infos,
            segment_bytes: segment_bytes.max(HEADER_LEN as u64 + 1),
        };
        Ok((segments, replayed))
    }

    /// Starts segment `number`: its header and `head`, durable, name included.
    fn create(&mut self, number: u64, head: Head) -> Result<(), StorageError> {
        let path = segment_path(&self.dir, number);
        let io_error = |error| StorageError::Io { file: path.clone(), error };
        let mut file = self.disk.create_new(&path).map_err(io_error)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + 64);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        encode(&Record::Epoch { epoch: head.epoch }, &mut bytes);
        encode(&Record::Begin { after: head.after, epoch: head.after_epoch }, &mut bytes);
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io_error)?;
        // The new file's name must be durable too.
        self.disk.sync_dir(&self.dir).map_err(io_error)?;
        let len = bytes.len() as u64;
        self.infos.push(SegmentInfo {
            number,
            bytes: len,
            head: Some(head.after),
            broken: false,
            modified: std::time::SystemTime::now(),
        });
        self.current = Some(Current { file, path, len, fresh: true });
        Ok(())
    }

    /// Writes `records` and waits until they are on disk (one write, one fdatasync), starting
    /// a new segment first when the current one is full (or there is none); `head` says where
    /// the log stands before these records, for the new segment's head. A `begin` starts a new
    /// segment too: if it drops the log, every segment before holds nothing the log reaches,
    /// and goes (see `state::retention`).
    pub(crate) fn append(
        &mut self,
        records: &[Record],
        head: impl FnOnce() -> Head,
    ) -> Result<(), StorageError> {
        let mut buf = Vec::with_capacity(records.iter().map(Record::size).sum());
        for record in records {
            encode(record, &mut buf);
        }
        let full = match &self.current {
            None => true,
            Some(current) => {
                let begins = records.iter().any(|r| matches!(r, Record::Begin { .. }));
                !current.fresh && (begins || current.len + buf.len() as u64 > self.segment_bytes)
            }
        };
        if full {
            let number = self.infos.last().map_or(1, |info| info.number + 1);
            self.create(number, head())?;
        }
        let current = self.current.as_mut().expect("a segment to append to was made above");
        let io_error = |error| StorageError::Io { file: current.path.clone(), error };
        current.file.write_all(&buf).and_then(|()| current.file.sync_data()).map_err(io_error)?;
        current.len += buf.len() as u64;
        current.fresh = false;
        let info = self.infos.last_mut().expect("the current segment has its info");
        info.bytes = current.len;
        info.modified = std::time::SystemTime::now();
        mark_broken(&mut self.infos, records);
        Ok(())
    }

    /// Every segment, oldest first.
    pub(crate) fn infos(&self) -> &[SegmentInfo] {
        &self.infos
    }

    /// Bytes of all segments.
    pub(crate) fn bytes(&self) -> u64 {
        self.infos.iter().map(|info| info.bytes).sum()
    }

    /// Deletes the oldest segment (never the one being appended to). Its name is gone for good
    /// only after `sync_dir`.
    pub(crate) fn remove_oldest(&mut self) -> Result<(), StorageError> {
        if self.infos.len() < 2 {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.infos[0].number);
        self.disk.remove(&path).map_err(|error| StorageError::Io { file: path, error })?;
        self.infos.remove(0);
        Ok(())
    }

    /// Makes the names of the segments durable (after a removal).
    pub(crate) fn sync_dir(&self) -> Result<(), StorageError> {
        let dir = self.dir.clone();
        self.disk.sync_dir(&self.dir).map_err(|error| StorageError::Io { file: dir, error })
    }
}

/// The entry a segment's head says the log held last, from its first records: `epoch`
/// records, then `begin`.
fn head_of(records: &[Record]) -> Option<u64> {
    match records.iter().find(|record| !matches!(record, Record::Epoch { .. })) {
        Some(Record::Begin { after, .. }) => Some(*after),
        _ => None,
    }
}

/// Marks the heads that a truncation among `records` went below.
fn mark_broken(infos: &mut [SegmentInfo], records: &[Record]) {
    for record in records {
        if let Record::Truncate { after } = record {
            for info in infos.iter_mut() {
                if info.head.is_some_and(|head| head > *after) {
                    info.broken = true;
                }
            }
        }
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:012}.seg"))
}

pub(crate) fn encode(record: &Record, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    match record {
        Record::Entry(Entry { seq, epoch, key, msg }) => {
            buf.push(KIND_ENTRY);
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(&epoch.to_le_bytes());
            let key = key.as_deref().unwrap_or_default().as_bytes();
            // Keys are at most a few hundred bytes (the master refuses longer ones).
            buf.extend_from_slice(&(key.len().min(usize::from(u16::MAX)) as u16).to_le_bytes());
            buf.extend_from_slice(&key[..key.len().min(usize::from(u16::MAX))]);
            buf.extend_from_slice(msg.as_bytes());
        }
        Record::Truncate { after } => {
            buf.push(KIND_TRUNCATE);
            buf.extend_from_slice(&after.to_le_bytes());
        }
        Record::Epoch { epoch } => {
            buf.push(KIND_EPOCH);
            buf.extend_from_slice(&epoch.to_le_bytes());
        }
        Record::Begin { after, epoch } => {
            buf.push(KIND_BEGIN);
            buf.extend_from_slice(&after.to_le_bytes());
            buf.extend_from_slice(&epoch.to_le_bytes());
        }
    }
    let payload_len = (buf.len() - start - RECORD_HEADER_LEN) as u32;
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The record at the start of `bytes` in segment format `version`, with its total length, or
/// why there is none.
fn decode(bytes: &[u8], version: u32) -> Result<(Record, usize), &'static str> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err("record header cut short");
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if !(8..=MAX_RECORD_LEN).contains(&len) {
        return Err("impossible record length");
    }
    let Some(payload) = bytes.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Err("record cut short");
    };
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    let record = if version == FORMAT_V1 {
        let msg = text(&payload[8..])?;
        Record::Entry(Entry { seq: u64_at(payload, 0)?, epoch: 0, key: None, msg })
    } else {
        match payload[0] {
            KIND_ENTRY if payload.len() >= 19 => {
                let key_len = usize::from(u16::from_le_bytes([payload[17], payload[18]]));
                let key = payload.get(19..19 + key_len).ok_or("record cut short")?;
                Record::Entry(Entry {
                    seq: u64_at(payload, 1)?,
                    epoch: u64_at(payload, 9)?,
                    key: (key_len > 0).then(|| text(key)).transpose()?,
                    msg: text(&payload[19 + key_len..])?,
                })
            }
            KIND_TRUNCATE if payload.len() == 9 => Record::Truncate { after: u64_at(payload, 1)? },
            KIND_EPOCH if payload.len() == 9 => Record::Epoch { epoch: u64_at(payload, 1)? },
            KIND_BEGIN if payload.len() == 17 && version != FORMAT_V2 => {
                Record::Begin { after: u64_at(payload, 1)?, epoch: u64_at(payload, 9)? }
            }
            _ => return Err("unknown record kind"),
        }
    };
    Ok((record, RECORD_HEADER_LEN + len))
}

fn u64_at(payload: &[u8], at: usize) -> Result<u64, &'static str> {
    let bytes = payload.get(at..at + 8).ok_or("record cut short")?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

fn text(bytes: &[u8]) -> Result<String, &'static str> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| "message is not UTF-8")
}

/// Reads the segment at `path` into `replayed`; returns its length afterwards (none: it was a
/// torn new segment, and is removed).
fn read_segment(
    disk: &dyn Disk,
    path: &Path,
    last: bool,
    replayed: &mut Replay,
) -> Result<Option<u64>, StorageError> {
    let io_error = |error| StorageError::Io { file: path.to_owned(), error };
    let bytes = disk.read(path).map_err(io_error)?;
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        // A segment whose header was never completely written can only be the newest, cut
        // off while being created: it holds nothing.
        if last && bytes.len() < HEADER_LEN && MAGIC.starts_with(&bytes[..bytes.len().min(8)]) {
            truncate(disk, path, 0, bytes.len() as u64, replayed)?;
            disk.remove(path).map_err(io_error)?;
            return Ok(None);
        }
        return Err(StorageError::NotASegment { file: path.to_owned() });
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if !(FORMAT_V1..=FORMAT_VERSION).contains(&version) {
        return Err(StorageError::Version { file: path.to_owned(), found: version });
    }
    replayed.last_version = version;
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        match decode(&bytes[offset..], version) {
            Ok((record, len)) => {
                replayed.records.push(record);
                offset += len;
            }
            Err(why) => {
                if !last || valid_record_after(&bytes, offset, version) {
                    return Err(StorageError::Corrupt {
                        file: path.to_owned(),
                        offset: offset as u64,
                        why: why.to_owned(),
                    });
                }
                truncate(disk, path, offset as u64, (bytes.len() - offset) as u64, replayed)?;
                return Ok(Some(offset as u64));
            }
        }
    }
    Ok(Some(bytes.len() as u64))
}

/// Whether a whole, valid record starts anywhere after `offset`: then the bad bytes at
/// `offset` are damage in the middle of the log, not a write the crash cut short.
fn valid_record_after(bytes: &[u8], offset: usize, version: u32) -> bool {
    (offset + 1..bytes.len()).any(|at| decode(&bytes[at..], version).is_ok())
}

fn truncate(
    disk: &dyn Disk,
    path: &Path,
    at: u64,
    cut: u64,
    replayed: &mut Replay,
) -> Result<(), StorageError> {
    let io_error = |error| StorageError::Io { file: path.to_owned(), error };
    disk.truncate(path, at).map_err(io_error)?;
    replayed.truncated = Some((path.to_owned(), at, cut));
    Ok(())
}

#[cfg(test)]
mod tests;
