//! The log's numbering, changes, invariants and durability.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_key_answers_the_original_seq_also_after_a_restart() {
    let dir = dir("keys");
    {
        let (log, _) = Log::open(&dir, "test", 10).unwrap();
        at_epoch(&log, 1).await;
        let key = || Some("retry-me".to_owned());
        assert_eq!(log.append("once".into(), 1, key()).await, appended(1));
        assert_eq!(log.append("other".into(), 1, None).await, appended(2));
        let retry = log.append("once".into(), 1, key()).await;
        assert_eq!(retry, Ok(Appended { seq: 1, duplicate: true }));
        assert_eq!(log.append("changed".into(), 1, key()).await, Err(LogError::KeyReused(1)));
        assert_eq!(log.len(), 2, "nothing appended for a retry");
    }
    let (log, _) = Log::open(&dir, "test", 10).unwrap();
    at_epoch(&log, 2).await;
    let retry = log.append("once".into(), 2, Some("retry-me".into())).await;
    assert_eq!(retry, Ok(Appended { seq: 1, duplicate: true }), "the key came back with the log");
    assert_eq!(log.read(1, 1)[0].key.as_deref(), Some("retry-me"));
    std::fs::remove_dir_all(dir).unwrap();
}

fn entry(seq: u64, epoch: u64, msg: &str) -> Entry {
    Entry { seq, epoch, key: None, msg: msg.to_owned() }
}

fn appended(seq: u64) -> Result<Appended, LogError> {
    Ok(Appended { seq, duplicate: false })
}

fn messages(log: &Log) -> Vec<String> {
    log.read(0, u32::MAX).into_iter().map(|e| e.msg).collect()
}

fn dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("replog-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A log that has recorded `epoch`.
async fn at_epoch(log: &Log, epoch: u64) {
    log.write(Change { version: log.version(), epoch, ..Change::default() }).await.unwrap();
}

#[tokio::test]
async fn appends_number_from_one_in_the_recorded_epoch() {
    let log = Log::in_memory(10);
    assert!(
        matches!(log.append("early".into(), 1, None).await, Err(LogError::Invalid(_))),
        "no epoch recorded yet"
    );
    at_epoch(&log, 1).await;
    assert_eq!(log.append("a".into(), 1, None).await, appended(1));
    assert_eq!(log.append("b".into(), 1, None).await, appended(2));
    assert_eq!(log.read(2, 10), vec![entry(2, 1, "b")]);
    assert_eq!(log.read(0, 1), vec![entry(1, 1, "a")]);
    assert!(log.read(3, 10).is_empty());
    assert_eq!(log.last(), Position { seq: 2, epoch: 1 });
    assert_eq!((log.epoch_at(0), log.epoch_at(2), log.epoch_at(3)), (Some(0), Some(1), None));
}

#[tokio::test]
async fn the_mark_moves_with_every_change_a_reader_sees_and_only_then() {
    let log = Log::in_memory(10);
    let mut seen = log.mark();
    let mut moved = |log: &Log, why: &str| {
        let now = log.mark();
        assert!(now > seen, "{why}: the mark moves on");
        seen = now;
    };
    at_epoch(&log, 1).await;
    moved(&log, "an epoch recorded");
    log.append("a".into(), 1, None).await.unwrap();
    moved(&log, "an append");
    log.append("b".into(), 1, None).await.unwrap();
    moved(&log, "another append");
    log.commit(1);
    moved(&log, "the commit point raised");
    let unmoved = log.mark();
    log.commit(1);
    log.commit(0);
    assert_eq!(log.mark(), unmoved, "a commit point that does not move leaves the mark");
    let change =
        Change { version: log.version(), epoch: 2, truncate_after: Some(1), ..Change::default() };
    log.write(change).await.unwrap();
    moved(&log, "a truncation");
    let _ = log.read(1, 10);
    assert_eq!(log.mark(), seen, "reads leave it");
}

#[tokio::test]
async fn a_change_raises_the_epoch_drops_a_suffix_and_appends_at_once() {
    let log = Log::in_memory(10);
    let version = log.version();
    let entries = vec![entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 2, "c")];
    let version =
        log.write(Change { version, epoch: 2, truncate_after: None, begin: None, entries }).await;
    let version = version.unwrap();
    assert_eq!((log.epoch(), messages(&log).len()), (2, 3));
    assert_eq!(log.runs(), [Run { epoch: 1, first: 1 }, Run { epoch: 2, first: 3 }]);

    let repair = Change {
        version,
        epoch: 3,
        truncate_after: Some(1),
        begin: None,
        entries: vec![entry(2, 3, "B"), entry(3, 3, "C"), entry(4, 3, "D")],
    };
    log.write(repair).await.unwrap();
    assert_eq!(messages(&log), ["a", "B", "C", "D"]);
    assert_eq!(log.runs(), [Run { epoch: 1, first: 1 }, Run { epoch: 3, first: 2 }]);
    assert_eq!(log.last(), Position { seq: 4, epoch: 3 });
}

#[tokio::test]
async fn changes_that_would_break_the_log_are_refused_whole() {
    let log = Log::in_memory(10);
    let v = log.version();
    log.write(Change {
        version: v,
        epoch: 2,
        truncate_after: None,
        begin: None,
        entries: vec![entry(1, 2, "a")],
    })
    .await
    .unwrap();
    let v = log.version();
    for (change, says) in [
        (Change { version: v, entries: vec![entry(3, 2, "gap")], ..Change::default() }, "continue"),
        (
            Change { version: v, entries: vec![entry(2, 1, "older")], ..Change::default() },
            "never decrease",
        ),
        (
            Change { version: v, entries: vec![entry(2, 5, "newer")], ..Change::default() },
            "above the highest",
        ),
        (Change { version: v, truncate_after: Some(9), ..Change::default() }, "ends at 1"),
    ] {
        let refused = log.write(change).await;
        assert!(
            matches!(&refused, Err(LogError::Invalid(why)) if why.contains(says)),
            "{refused:?} should say {says:?}"
        );
    }
    let stale = Change { version: v - 1, entries: vec![entry(2, 2, "late")], ..Change::default() };
    assert_eq!(log.write(stale).await, Err(LogError::Moved(v)));
    assert_eq!(messages(&log), ["a"], "nothing of a refused change is kept");
    assert_eq!(log.version(), v);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_log_comes_back_whole_with_its_repairs_and_epoch() {
    let dir = dir("durable");
    {
        let (log, replayed) = Log::open(&dir, "test", 10).unwrap();
        assert!(replayed.records.is_empty() && log.is_empty());
        at_epoch(&log, 1).await;
        let log = Arc::new(log);
        let appends: Vec<_> = (0..50)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(format!("m{i}"), 1, None).await.unwrap().seq })
            })
            .collect();
        let mut seqs = Vec::new();
        for append in appends {
            let seq = append.await.unwrap();
            assert!(log.len() >= seq, "visible once durable");
            seqs.push(seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>(), "each seq given once");
        let repair = Change {
            version: log.version(),
            epoch: 4,
            truncate_after: Some(48),
            begin: None,
            entries: vec![entry(49, 4, "new 49")],
        };
        log.write(repair).await.unwrap();
    }
    let (log, _) = Log::open(&dir, "test", 10).unwrap();
    assert_eq!((log.len(), log.epoch()), (49, 4));
    assert_eq!(log.read(49, 1), [entry(49, 4, "new 49")]);
    assert_eq!(log.append("next".into(), 4, None).await, appended(50), "numbering goes on");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn reads_stop_at_their_byte_bound_but_always_bring_one_entry() {
    let log = Log::in_memory(10);
    let entries = vec![entry(1, 1, "aaaa"), entry(2, 1, "bbbb"), entry(3, 1, "cccc")];
    log.write(Change { version: 0, epoch: 1, entries, ..Change::default() }).await.unwrap();
    assert_eq!(log.read_bounded(1, 10, 8).len(), 2);
    assert_eq!(log.read_bounded(1, 10, 3).len(), 1, "the first entry comes whatever its size");
    assert_eq!(log.read_bounded(2, 1, usize::MAX), [entry(2, 1, "bbbb")]);
}

#[tokio::test]
async fn a_text_page_holds_the_messages_of_the_same_entries_and_where_each_ends() {
    let log = Log::in_memory(10);
    let entries =
        vec![entry(1, 1, "a"), entry(2, 1, "\u{e9}t\u{e9}"), entry(3, 2, ""), entry(4, 2, "dd")];
    log.write(Change { version: 0, epoch: 2, entries, ..Change::default() }).await.unwrap();
    let page = log.read_text(0, 10, u32::MAX);
    assert_eq!((page.text.as_str(), page.ends.as_slice()), ("a\u{e9}t\u{e9}dd", &[1, 6, 6, 8][..]));
    for (start, limit, max_bytes) in [(2, 10, 5), (2, 2, u32::MAX), (1, 10, 0), (5, 10, 100)] {
        let page = log.read_text(start, limit, max_bytes);
        let whole = log.read_bounded(start, limit, max_bytes as usize);
        let messages: Vec<&str> = whole.iter().map(|e| e.msg.as_str()).collect();
        let mut from = 0;
        let sliced: Vec<&str> = page
            .ends
            .iter()
            .map(|&end| {
                let msg = &page.text[from..end as usize];
                from = end as usize;
                msg
            })
            .collect();
        assert_eq!(sliced, messages, "read_text({start}, {limit}, {max_bytes})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_cut_short_by_a_crash_leaves_a_valid_log() {
    let dir = dir("torn-repair");
    {
        let (log, _) = Log::open(&dir, "test", 10).unwrap();
        let old: Vec<_> = (1..=5).map(|i| entry(i, 1, "old")).collect();
        log.write(Change { version: log.version(), epoch: 1, entries: old, ..Change::default() })
            .await
            .unwrap();
        let new: Vec<_> = (3..=6).map(|i| entry(i, 2, "new")).collect();
        let repair = Change {
            version: log.version(),
            epoch: 2,
            truncate_after: Some(2),
            begin: None,
            entries: new,
        };
        log.write(repair).await.unwrap();
    }
    // The crash cut the repair's last record in half.
    let segment = dir.join("000000000001.seg");
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 3).unwrap();
    let (log, replayed) = Log::open(&dir, "test", 10).unwrap();
    assert!(replayed.truncated.is_some());
    let entries = log.read(1, u32::MAX);
    assert_eq!(entries.len(), 5, "the old suffix stays dropped, the new one is short by one");
    assert!(entries[..2].iter().all(|e| e.epoch == 1) && entries[2..].iter().all(|e| e.epoch == 2));
    assert_eq!(log.epoch(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_past_a_gap_in_an_older_log_are_dropped_for_good() {
    let dir = dir("gap");
    {
        let (mut segments, _) = Segments::open(
            std::sync::Arc::new(crate::state::disk::Os),
            &dir,
            crate::state::DEFAULT_SEGMENT_BYTES,
        )
        .unwrap();
        let old = |seq: u64, msg: &str| Record::Entry(entry(seq, 0, msg));
        segments.append(&[old(1, "a"), old(3, "early")], Default::default).unwrap();
    }
    let (log, _) = Log::open(&dir, "test", 10).unwrap();
    assert_eq!(messages(&log), ["a"]);
    let next = vec![entry(2, 1, "b"), entry(3, 1, "c")];
    log.write(Change {
        version: log.version(),
        epoch: 1,
        truncate_after: None,
        begin: None,
        entries: next,
    })
    .await
    .unwrap();
    drop(log);
    let (log, _) = Log::open(&dir, "test", 10).unwrap();
    assert_eq!(messages(&log), ["a", "b", "c"], "the early entry does not come back at 3");
    std::fs::remove_dir_all(dir).unwrap();
}

/// SplitMix64, for the power cuts' timing.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Nothing is acknowledged before it is durable: writers append as fast as they can while the
/// power is cut at random moments (between a write and its sync, in the middle of a sync,
/// between records), losing what was not synced, whole or torn; after each restart every entry
/// ever acknowledged is read back at its `seq`. Without the sync after each group commit the
/// first restart finds acknowledged entries gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_acknowledged_survives_power_cuts_at_any_point() {
    use std::sync::Mutex;

    use crate::state::disk::{Cut, SimulatedDisk};

    let disk = SimulatedDisk::with_sync_time(Duration::from_micros(300));
    let dir = std::path::PathBuf::from("/simulated/log");
    let mut rng = 0x5eed_u64;
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    let (mut lost_bytes, mut torn) = (0, 0);
    for round in 0..60 {
        disk.restart();
        let (log, replayed) =
            Log::open_on(Arc::new(disk.clone()), &dir, "power", 10, Default::default()).unwrap();
        torn += usize::from(replayed.truncated.is_some());
        let held = log.read(1, u32::MAX);
        for (seq, msg) in &acknowledged {
            let found = held.get(*seq as usize - 1).map(|e| e.msg.as_str());
            assert_eq!(found, Some(msg.as_str()), "round {round}: acknowledged seq {seq} lost");
        }
        let epoch = log.epoch() + 1;
        at_epoch(&log, epoch).await;
        let log = Arc::new(log);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let (log, acked) = (log.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0..100_000 {
                        let msg = format!("round {round} writer {writer} message {i}");
                        match log.append(msg.clone(), epoch, None).await {
                            Ok(appended) => acked.lock().unwrap().push((appended.seq, msg)),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_micros(next(&mut rng) % 20_000)).await;
        lost_bytes += disk.unsynced();
        let cut = match next(&mut rng) % 3 {
            0 => Cut::Whole,
            _ => Cut::Torn((next(&mut rng) % 300) as usize),
        };
        disk.cut(cut);
        for writer in writers {
            tokio::time::timeout(Duration::from_secs(10), writer)
                .await
                .expect("appends fail once the power is gone")
                .unwrap();
        }
        acknowledged.extend(std::mem::take(&mut *acked.lock().unwrap()));
    }
    assert!(acknowledged.len() > 1_000, "the writers wrote: {}", acknowledged.len());
    assert!(lost_bytes > 0, "some cuts fell between a write and its sync");
    assert!(torn > 0, "some cuts left a torn record, cut off on restart");
}

#[tokio::test]
async fn the_commit_point_rises_within_the_log_and_falls_only_with_a_truncation() {
    let log = Log::in_memory(10);
    at_epoch(&log, 1).await;
    for msg in ["a", "b", "c"] {
        log.append(msg.into(), 1, None).await.unwrap();
    }
    let mut moved = log.watch_committed();
    assert_eq!(log.commit(9), 3, "no further than the log holds");
    assert!(moved.has_changed().unwrap(), "followers of the commit point are told");
    moved.borrow_and_update();
    assert_eq!(log.commit(1), 3, "never back");
    assert!(!moved.has_changed().unwrap(), "nothing to tell");
    let version = log.version();
    let repair = Change { version, epoch: 2, truncate_after: Some(1), ..Change::default() };
    log.write(repair).await.unwrap();
    assert_eq!(log.committed(), 1, "lowered to the log's new end, loudly");
    assert!(moved.has_changed().unwrap());
}

fn retained(messages: Option<u64>, bytes: Option<u64>) -> crate::state::Retention {
    crate::state::Retention { messages, bytes, age: None, segment_bytes: 1024 }
}

/// Waits (bounded) until `log` starts past 1.
async fn until_removed(log: &Log) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.start() == 1 {
        assert!(std::time::Instant::now() < deadline, "retention removed nothing in 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_whole_committed_segments_and_the_start_survives_a_restart() {
    let dir = dir("retention");
    let disk = || Arc::new(crate::state::disk::Os);
    let (log, _) = Log::open_on(disk(), &dir, "test", 1000, retained(Some(20), None)).unwrap();
    for i in 1..=100u64 {
        let msg = format!("message {i:03} {}", "x".repeat(60));
        log.append(msg, 0, Some(format!("key-{i}"))).await.unwrap();
    }
    assert_eq!(log.start(), 1, "nothing is removed before it is committed");
    log.commit(100);
    until_removed(&log).await;
    let (start, len) = (log.start(), log.len());
    assert_eq!(len, 100, "numbers never restart");
    assert!(len - start + 1 >= 20, "at least 20 messages kept, from {start}");
    assert!(start > 60, "whole segments of about 12 messages went, up to {start}");
    let held = log.read(0, 1000);
    assert_eq!(held.first().map(|e| e.seq), Some(start), "a read from 0 starts at the start");
    assert!(log.read(start - 1, 10).is_empty(), "nothing below the start");
    for (entry, seq) in held.iter().zip(start..) {
        assert_eq!(entry.seq, seq);
        assert!(entry.msg.starts_with(&format!("message {seq:03} ")));
    }
    assert_eq!(log.epoch_at(start - 1), Some(0), "the epoch before the start is known");
    assert_eq!(log.epoch_at(start - 2), None);
    // A removed entry's key is forgotten with it: a retry is a new write.
    let retry = log.append(format!("message 001 {}", "x".repeat(60)), 0, Some("key-1".into()));
    assert_eq!(retry.await.unwrap(), Appended { seq: 101, duplicate: false });
    let kept = format!("message 100 {}", "x".repeat(60));
    let again = log.append(kept, 0, Some("key-100".into())).await.unwrap();
    assert_eq!(again, Appended { seq: 100, duplicate: true }, "a kept entry's key still answers");
    // Counted after each write's retention pass, which follows its acknowledgement.
    let on_disk = || -> u64 {
        std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().metadata().unwrap().len()).sum()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.disk_bytes() != on_disk() {
        assert!(std::time::Instant::now() < deadline, "{} != {}", log.disk_bytes(), on_disk());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(log.removed() >= start - 1);
    let start = log.start(); // later writes may have removed more
    drop(log);
    let (log, _) = Log::open_on(disk(), &dir, "test", 1000, retained(Some(20), None)).unwrap();
    assert_eq!((log.start(), log.len()), (start, 101), "read back from the same start");
    assert_eq!(log.read(0, 1).first().map(|e| e.seq), Some(start));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_bytes_keeps_at_least_the_bytes_and_less_than_one_more_segment() {
    let dir = dir("retention-bytes");
    let disk = Arc::new(crate::state::disk::Os);
    let (log, _) = Log::open_on(disk, &dir, "test", 0, retained(None, Some(4096))).unwrap();
    for i in 1..=200u64 {
        log.append(format!("{i:04} {}", "y".repeat(95)), 0, None).await.unwrap();
    }
    log.commit(200);
    until_removed(&log).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.disk_bytes() >= 4096 + 1024 + 200 {
        assert!(std::time::Instant::now() < deadline, "still {} bytes", log.disk_bytes());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(log.disk_bytes() >= 4096, "at least the retention kept: {}", log.disk_bytes());
    drop(log);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_brought_to_its_masters_start_drops_what_it_held_and_its_old_segments() {
    let dir = dir("begin");
    let disk = || Arc::new(crate::state::disk::Os);
    let (log, _) = Log::open_on(disk(), &dir, "test", 10, retained(None, None)).unwrap();
    for first in [1, 11, 21] {
        let old = (first..first + 10).map(|seq| entry(seq, 1, &"o".repeat(50))).collect();
        log.write(Change { version: log.version(), epoch: 1, entries: old, ..Change::default() })
            .await
            .unwrap();
    }
    assert!(std::fs::read_dir(&dir).unwrap().count() > 1, "several segments");
    // Held already: nothing changes.
    let held = Position { seq: 30, epoch: 1 };
    log.write(Change { version: log.version(), begin: Some(held), ..Change::default() })
        .await
        .unwrap();
    assert_eq!((log.start(), log.len()), (1, 30));
    // Not held: everything goes, and the log goes on after it.
    let begin = Position { seq: 500, epoch: 2 };
    let next = vec![entry(501, 2, "after the start"), entry(502, 2, "and on")];
    log.write(Change {
        version: log.version(),
        epoch: 2,
        begin: Some(begin),
        entries: next,
        ..Change::default()
    })
    .await
    .unwrap();
    assert_eq!((log.start(), log.len(), log.epoch_at(500)), (501, 502, Some(2)));
    assert_eq!(messages(&log), ["after the start", "and on"]);
    log.write(Change {
        version: log.version(),
        entries: vec![entry(503, 2, "x")],
        ..Change::default()
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&dir).unwrap().count() > 1 {
        assert!(std::time::Instant::now() < deadline, "the old segments stay");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(log);
    let (log, _) = Log::open_on(disk(), &dir, "test", 10, retained(None, None)).unwrap();
    assert_eq!((log.start(), log.len()), (501, 503));
    assert_eq!(messages(&log), ["after the start", "and on", "x"]);
    std::fs::remove_dir_all(dir).unwrap();
}
