//! Retention: which whole segments to remove from the oldest, and when.
//!
//! A log keeps everything unless told otherwise. With a bound (`RETENTION_BYTES`,
//! `RETENTION_MESSAGES`, `RETENTION_MS`), the oldest segment goes once the log stays within the
//! bound without it: at least that many bytes or messages are kept, and a segment goes once its
//! last write is older than the age. Segments go whole, never rewritten, as Kafka's do; the log
//! then starts after the entry the next segment's head names. Two rules keep that safe:
//!
//! - **Only committed entries go**: an entry a majority holds is never taken back by a later
//!   master, so no repair will need what was removed (an operator's forced recovery aside).
//! - **Only where replay can start**: the next segment must have a head that no later truncation
//!   went below (`SegmentInfo::broken`), so that the log read back is the log that was kept.
//!
//! Segments that hold nothing of the log any more (it was dropped whole by a `begin`) go
//! whatever the bounds.

use std::time::{Duration, SystemTime};

use super::segments::SegmentInfo;

/// How much of its log a node keeps, and in what pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Keep at least this many bytes of segments; remove older ones.
    pub bytes: Option<u64>,
    /// Keep at least this many messages; remove segments of older ones.
    pub messages: Option<u64>,
    /// Remove segments last written longer ago than this.
    pub age: Option<Duration>,
    /// A new segment starts once the current one holds this many bytes.
    pub segment_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            bytes: None,
            messages: None,
            age: None,
            segment_bytes: super::segments::DEFAULT_SEGMENT_BYTES,
        }
    }
}

impl Retention {
    /// Whether any bound is set.
    pub fn bounded(&self) -> bool {
        self.bytes.is_some() || self.messages.is_some() || self.age.is_some()
    }
}

/// Where the log stands, as a removal decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Entries before the log's start.
    pub(crate) offset: u64,
    /// The last entry's `seq`.
    pub(crate) len: u64,
    /// The commit point.
    pub(crate) committed: u64,
}

/// What removing the oldest segment does to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Nothing visible: the log holds nothing of that segment.
    Unused,
    /// The log then starts after `through`.
    Through(u64),
}

/// Whether the oldest of `segments` goes now, and what that does.
pub(crate) fn next_removal(
    segments: &[SegmentInfo],
    log: Standing,
    retention: &Retention,
    now: SystemTime,
) -> Option<Removal> {
    let [oldest, next, ..] = segments else { return None };
    let through = next.head.filter(|_| !next.broken)?;
    if through <= log.offset {
        return Some(Removal::Unused);
    }
    if through > log.committed {
        return None;
    }
    let total: u64 = segments.iter().map(|s| s.bytes).sum();
    let bytes = retention.bytes.is_some_and(|keep| total - oldest.bytes >= keep);
    let messages = retention.messages.is_some_and(|keep| log.len - through >= keep);
    let age = retention
        .age
        .is_some_and(|age| now.duration_since(oldest.modified).is_ok_and(|since| since > age));
    (bytes || messages || age).then_some(Removal::Through(through))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(number: u64, bytes: u64, head: Option<u64>, age_s: u64) -> SegmentInfo {
        SegmentInfo {
            number,
            bytes,
            head,
            broken: false,
            modified: SystemTime::now() - Duration::from_secs(age_s),
        }
    }

    fn keep(bytes: Option<u64>, messages: Option<u64>, age_s: Option<u64>) -> Retention {
        Retention { bytes, messages, age: age_s.map(Duration::from_secs), ..Retention::default() }
    }

    const LOG: Standing = Standing { offset: 0, len: 300, committed: 300 };

    #[test]
    fn nothing_goes_without_a_bound_and_the_current_segment_never_goes() {
        let segments = [segment(1, 100, Some(0), 99), segment(2, 100, Some(100), 0)];
        assert_eq!(next_removal(&segments, LOG, &Retention::default(), SystemTime::now()), None);
        let all = keep(Some(0), Some(0), Some(0));
        assert_eq!(next_removal(&segments[..1], LOG, &all, SystemTime::now()), None);
    }

    #[test]
    fn each_bound_keeps_at_least_what_it_names() {
        let segments = [
            segment(1, 100, Some(0), 60),
            segment(2, 100, Some(100), 30),
            segment(3, 50, Some(200), 0),
        ];
        let now = SystemTime::now();
        let removal = |retention| next_removal(&segments, LOG, &retention, now);
        assert_eq!(removal(keep(Some(150), None, None)), Some(Removal::Through(100)));
        assert_eq!(removal(keep(Some(151), None, None)), None, "150 bytes would be left");
        assert_eq!(removal(keep(None, Some(200), None)), Some(Removal::Through(100)));
        assert_eq!(removal(keep(None, Some(201), None)), None, "200 messages would be left");
        assert_eq!(removal(keep(None, None, Some(59))), Some(Removal::Through(100)));
        assert_eq!(removal(keep(None, None, Some(61))), None, "written 60 s ago");
    }

    #[test]
    fn only_committed_entries_go_and_only_where_replay_can_start() {
        let mut segments = [segment(1, 100, Some(0), 0), segment(2, 100, Some(100), 0)];
        let all = keep(Some(0), None, None);
        let now = SystemTime::now();
        let short = Standing { committed: 99, ..LOG };
        assert_eq!(next_removal(&segments, short, &all, now), None, "100 is not committed");
        segments[1].broken = true;
        assert_eq!(next_removal(&segments, LOG, &all, now), None, "a truncation went below");
        segments[1].broken = false;
        segments[1].head = None;
        assert_eq!(next_removal(&segments, LOG, &all, now), None, "no head (an older format)");
    }

    #[test]
    fn a_segment_the_log_no_longer_reaches_goes_whatever_the_bounds() {
        let segments = [segment(1, 100, Some(0), 0), segment(2, 100, Some(100), 0)];
        let begun = Standing { offset: 500, len: 500, committed: 0 };
        let removal = next_removal(&segments, begun, &Retention::default(), SystemTime::now());
        assert_eq!(removal, Some(Removal::Unused));
    }
}
