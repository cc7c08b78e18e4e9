//! Segment files: records written and read back, torn tails, damage, the older format.
use std::fs::OpenOptions;

use super::*;

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("replog-segments-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn record(seq: u64, msg: &str) -> Record {
    Record::Entry(Entry { seq, epoch: 1, key: None, msg: msg.to_owned() })
}

fn open(dir: &Path) -> Result<(Segments, Replay), StorageError> {
    Segments::open(Arc::new(crate::state::disk::Os), dir, DEFAULT_SEGMENT_BYTES)
}

/// Appends `records` to a log that stood at `head` (for a new segment's head).
fn append(segments: &mut Segments, records: &[Record]) -> Result<(), StorageError> {
    segments.append(records, Head::default)
}

/// The records replayed, without the segments' heads of an empty log.
fn body(replayed: &Replay) -> Vec<Record> {
    let head =
        |r: &Record| matches!(r, Record::Epoch { epoch: 0 } | Record::Begin { after: 0, epoch: 0 });
    replayed.records.iter().filter(|r| !head(r)).cloned().collect()
}

/// Bytes of a segment's header and the head of an empty log.
const EMPTY_SEGMENT: usize = HEADER_LEN + RECORD_HEADER_LEN + 9 + RECORD_HEADER_LEN + 17;

fn only_segment(dir: &Path) -> PathBuf {
    segment_path(dir, 1)
}

#[test]
fn what_is_appended_is_replayed_in_order() {
    let dir = dir("roundtrip");
    let (mut segments, replayed) = open(&dir).unwrap();
    assert!(replayed.records.is_empty());
    append(&mut segments, &[record(1, "a"), record(2, "bé")]).unwrap();
    append(&mut segments, &[record(4, "d"), record(3, "")]).unwrap();
    drop(segments);
    let (_, replayed) = open(&dir).unwrap();
    assert_eq!(body(&replayed), [record(1, "a"), record(2, "bé"), record(4, "d"), record(3, "")]);
    assert!(replayed.truncated.is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncations_and_epochs_are_records_too() {
    let dir = dir("kinds");
    let (mut segments, _) = open(&dir).unwrap();
    let records = [
        Record::Epoch { epoch: 3 },
        Record::Entry(Entry {
            seq: 1,
            epoch: 3,
            key: Some("client key 1".into()),
            msg: "a".into(),
        }),
        Record::Truncate { after: 0 },
        Record::Entry(Entry { seq: 1, epoch: 4, key: None, msg: "b".into() }),
    ];
    append(&mut segments, &records).unwrap();
    drop(segments);
    let (_, replayed) = open(&dir).unwrap();
    assert_eq!(body(&replayed), records);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn format_1_segments_are_read_as_epoch_0_and_never_appended_to() {
    let dir = dir("v1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&FORMAT_V1.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    for (seq, msg) in [(1u64, "old"), (2, "older format")] {
        let mut payload = seq.to_le_bytes().to_vec();
        payload.extend_from_slice(msg.as_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
    }
    std::fs::write(segment_path(&dir, 1), &bytes).unwrap();

    let (mut segments, replayed) = open(&dir).unwrap();
    assert_eq!(
        replayed.records,
        [
            Record::Entry(Entry { seq: 1, epoch: 0, key: None, msg: "old".into() }),
            Record::Entry(Entry { seq: 2, epoch: 0, key: None, msg: "older format".into() }),
        ]
    );
    assert!(segments.current.is_none(), "new records start a segment of the current format");
    append(&mut segments, &[record(3, "new")]).unwrap();
    drop(segments);
    assert_eq!(std::fs::read(segment_path(&dir, 1)).unwrap(), bytes, "left as it was");
    let (_, replayed) = open(&dir).unwrap();
    let records = body(&replayed);
    assert_eq!(records.len(), 3);
    assert_eq!(records[2], record(3, "new"));
    assert_eq!(replayed.records[2], Record::Epoch { epoch: 0 });
    assert_eq!(replayed.records[3], Record::Begin { after: 0, epoch: 0 });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_last_record_is_cut_off_and_reported() {
    let dir = dir("torn");
    let (mut segments, _) = open(&dir).unwrap();
    append(&mut segments, &[record(1, "kept"), record(2, "torn in half")]).unwrap();
    drop(segments);
    let file = only_segment(&dir);
    let len = std::fs::metadata(&file).unwrap().len();
    OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 5).unwrap();

    let (mut segments, replayed) = open(&dir).unwrap();
    assert_eq!(body(&replayed), [record(1, "kept")]);
    let (path, at, cut) = replayed.truncated.unwrap();
    assert_eq!(path, file);
    assert_eq!(at + cut, len - 5);
    append(&mut segments, &[record(2, "again")]).unwrap();
    drop(segments);
    let (_, replayed) = open(&dir).unwrap();
    assert_eq!(
        body(&replayed),
        [record(1, "kept"), record(2, "again")],
        "appends resume after the cut"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn damage_in_the_middle_stops_the_start_with_the_place_named() {
    let dir = dir("flipped");
    let (mut segments, _) = open(&dir).unwrap();
    append(&mut segments, &[record(1, "first"), record(2, "second"), record(3, "third")]).unwrap();
    drop(segments);
    let file = only_segment(&dir);
    let mut bytes = std::fs::read(&file).unwrap();
    let second = EMPTY_SEGMENT + RECORD_HEADER_LEN + 19 + "first".len();
    bytes[second + RECORD_HEADER_LEN + 9] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let error = open(&dir).err().expect("refused").to_string();
    assert!(error.contains(&file.display().to_string()), "{error}");
    assert!(
        error.contains(&format!("byte {second}")) && error.contains("checksum mismatch"),
        "{error}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "nothing was cut");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn another_format_version_is_refused() {
    let dir = dir("version");
    append(&mut open(&dir).unwrap().0, &[record(1, "a")]).unwrap();
    let file = only_segment(&dir);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8] = 9;
    std::fs::write(&file, &bytes).unwrap();
    let error = open(&dir).err().unwrap().to_string();
    assert!(error.contains("format version 9"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_full_segment_continues_in_the_next_which_starts_with_where_the_log_stood() {
    let dir = dir("rotate");
    let (mut segments, _) = Segments::open(Arc::new(crate::state::disk::Os), &dir, 100).unwrap();
    append(&mut segments, &[record(1, "in the first segment")]).unwrap();
    let head = Head { epoch: 3, after: 1, after_epoch: 1 };
    segments.append(&[record(2, &"x".repeat(80))], || head).unwrap();
    assert_eq!(
        segments.infos().iter().map(|i| (i.number, i.head)).collect::<Vec<_>>(),
        [(1, Some(0)), (2, Some(1))]
    );
    assert_eq!(
        segments.bytes(),
        std::fs::metadata(segment_path(&dir, 1)).unwrap().len()
            + std::fs::metadata(segment_path(&dir, 2)).unwrap().len()
    );
    drop(segments);
    let (segments, replayed) = open(&dir).unwrap();
    assert_eq!(
        replayed.records[3..],
        [
            Record::Epoch { epoch: 3 },
            Record::Begin { after: 1, epoch: 1 },
            record(2, &"x".repeat(80))
        ]
    );
    assert_eq!(segments.infos().len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_oldest_segment_goes_whole_and_a_truncation_below_a_head_marks_it() {
    let dir = dir("remove");
    let (mut segments, _) = Segments::open(Arc::new(crate::state::disk::Os), &dir, 64).unwrap();
    for seq in 1..=3 {
        let head = Head { epoch: 1, after: seq - 1, after_epoch: 1 };
        segments.append(&[record(seq, &"m".repeat(40))], || head).unwrap();
    }
    assert_eq!(segments.infos().len(), 3);
    segments.remove_oldest().unwrap();
    segments.sync_dir().unwrap();
    assert!(!segment_path(&dir, 1).exists(), "deleted, not emptied");
    append(&mut segments, &[Record::Truncate { after: 1 }]).unwrap();
    let marks: Vec<_> = segments.infos().iter().map(|i| (i.number, i.broken)).collect();
    assert_eq!(marks, [(2, false), (3, true), (4, false)]);
    drop(segments);
    let (segments, replayed) = open(&dir).unwrap();
    assert_eq!(
        replayed.records[..2],
        [Record::Epoch { epoch: 1 }, Record::Begin { after: 1, epoch: 1 }]
    );
    let marks: Vec<_> = segments.infos().iter().map(|i| (i.number, i.broken)).collect();
    assert_eq!(marks, [(2, false), (3, true), (4, false)], "read back the same");
    std::fs::remove_dir_all(dir).unwrap();
}
