//! Which client request appended each recent entry, so that the replication requests carrying
//! those entries name it (`X-Request-Id`) and one write can be followed across the cluster.
//! Memory only, and only the last entries: a trace, not part of the log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Entries remembered: enough for every write waiting on its write concern at once.
const REMEMBERED: usize = 4096;

#[derive(Debug, Default)]
pub struct Traces {
    recent: Mutex<VecDeque<(u64, Arc<str>)>>,
}

impl Traces {
    /// The entry at `seq` was appended by request `id`.
    pub(crate) fn record(&self, seq: u64, id: Arc<str>) {
        let mut recent = self.lock();
        if recent.len() == REMEMBERED {
            recent.pop_front();
        }
        // Appends are numbered in order but may finish out of it: keep the queue sorted.
        let at = recent.partition_point(|(held, _)| *held < seq);
        recent.insert(at, (seq, id));
    }

    /// The requests that appended entries `first..=last`, oldest first, at most `max`.
    pub(crate) fn between(&self, first: u64, last: u64, max: usize) -> Vec<Arc<str>> {
        let recent = self.lock();
        let start = recent.partition_point(|(seq, _)| *seq < first);
        recent
            .range(start..)
            .take_while(|(seq, _)| *seq <= last)
            .take(max)
            .map(|(_, id)| id.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<str>)>> {
        self.recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_found_by_range_in_order_and_old_ones_forgotten() {
        let traces = Traces::default();
        traces.record(2, "b".into());
        traces.record(1, "a".into());
        traces.record(3, "c".into());
        let ids = |first, last, max| -> Vec<String> {
            traces.between(first, last, max).iter().map(|id| id.to_string()).collect()
        };
        assert_eq!(ids(1, 3, 10), ["a", "b", "c"]);
        assert_eq!(ids(2, 9, 10), ["b", "c"]);
        assert_eq!(ids(1, 3, 1), ["a"]);
        for seq in 4..4 + REMEMBERED as u64 {
            traces.record(seq, "x".into());
        }
        assert!(ids(1, 3, 10).is_empty(), "the oldest are forgotten");
    }
}
