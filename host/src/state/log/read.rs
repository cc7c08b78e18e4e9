//! Reading the log: pages of entries bounded in count and in bytes, whole (what a replication
//! step sends) or as their messages alone (what `GET /messages` answers).

use super::Log;
use super::held::{LogTable, StoredEntry};
use crate::state::entry::Entry;

/// The messages of a page, one after another, and where each one ends in `text`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct TextPage {
    pub(crate) text: String,
    pub(crate) ends: Vec<u32>,
}

impl Log {
    /// Up to `limit` entries starting at `seq` = `start` (0: the log's start).
    pub fn read(&self, start: u64, limit: u32) -> Vec<Entry> {
        self.read_bounded(start, limit, usize::MAX)
    }

    /// Up to `limit` entries starting at `seq` = `start`, stopping before the entry that would
    /// take their messages past `max_bytes` (the first always comes).
    pub(crate) fn read_bounded(&self, start: u64, limit: u32, max_bytes: usize) -> Vec<Entry> {
        let inner = self.shared.read();
        page(&inner, start, limit, max_bytes)
            .map(|(seq, held)| Entry {
                seq,
                epoch: held.epoch,
                key: held.key.as_deref().map(str::to_owned),
                msg: held.msg.clone(),
            })
            .collect()
    }

    /// The messages of the same entries as `read_bounded`, copied once into one string: a
    /// reader that needs nothing else gets them without an allocation per message.
    pub(crate) fn read_text(&self, start: u64, limit: u32, max_bytes: u32) -> TextPage {
        let inner = self.shared.read();
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let mut page_text = TextPage::default();
        for (_, held) in page(&inner, start, limit, max_bytes) {
            page_text.text.push_str(&held.msg);
            // Only the first message can take the page past `max_bytes` (a u32), and no
            // message comes near 4 GiB (bodies are bounded far below).
            page_text.ends.push(u32::try_from(page_text.text.len()).unwrap_or(u32::MAX));
        }
        page_text
    }
}

/// The entries of a page with their `seq`: up to `limit` from `start` (0: from the log's
/// start; none when `start` is below it),
/// stopping before the one that would take their messages past `max_bytes` (the first always
/// comes).
fn page(
    inner: &LogTable,
    start: u64,
    limit: u32,
    max_bytes: usize,
) -> impl Iterator<Item = (u64, &StoredEntry)> {
    // Nothing below the log's start: a reader asking for what retention removed gets nothing,
    // never the entries after it under the wrong numbers.
    let first = if start == 0 { inner.start() } else { start };
    let skip = match first.checked_sub(inner.start()) {
        Some(skip) => usize::try_from(skip).unwrap_or(usize::MAX),
        None => usize::MAX,
    };
    let mut bytes = 0usize;
    inner
        .entries
        .range(skip.min(inner.entries.len())..)
        .take(limit as usize)
        .take_while(move |held| {
            let fits = bytes == 0 || bytes.saturating_add(held.msg.len()) <= max_bytes;
            bytes = bytes.saturating_add(held.msg.len()).max(1);
            fits
        })
        .zip(first..)
        .map(|(held, seq)| (seq, held))
}
