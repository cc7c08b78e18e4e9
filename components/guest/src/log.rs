//! The host-held log as both roles read it: page by page, through [`Pages`], the one reader
//! of the log in bounded pages; and as both roles answer with it: `GET /messages`, and any
//! answer that carries the log. However long the log, it goes out page by page: the component
//! holds one page at a time, and the host one buffer of the stream.

use std::io::Write;
use std::marker::PhantomData;

use serde::Serialize;

pub use crate::host::log::{self as host, Entry, Position, Run, TextPage};
use crate::http::Response;

/// Entries asked of the host in one call...
const PAGE_ENTRIES: u32 = 4096;
/// ... and at most about this many bytes of their messages (a message may be up to a megabyte,
/// and the first entry of a page always comes whole): what bounds a reader's memory, whatever
/// it reads the log for.
pub const PAGE_BYTES: u32 = 256 * 1024;

/// A page of the log as one of the host's reads hands it out: entries whole (`log.read`), or
/// their messages alone as text (`log.read-text`).
pub trait Page {
    /// How many entries the page holds: where the next page starts.
    fn entries(&self) -> u64;
}

impl Page for Vec<Entry> {
    fn entries(&self) -> u64 {
        self.len() as u64
    }
}

impl Page for TextPage {
    fn entries(&self) -> u64 {
        self.ends.len() as u64
    }
}

/// The log from one `seq` on, read a page at a time, at most a given number of entries in all:
/// every loop over the log goes through this, so that each host call is bounded (by
/// `PAGE_ENTRIES` and `PAGE_BYTES`) and a page is read only when the one before is used up.
/// It ends at the count, or at the log's end (an empty page).
pub struct Pages<P, R> {
    next: u64,
    left: u64,
    read: R,
    page: PhantomData<fn() -> P>,
}

impl<P: Page, R: FnMut(u64, u32, u32) -> P> Pages<P, R> {
    /// At most `count` entries from `seq` = `from` (0 is read as 1, as the host reads it),
    /// through `read(start, limit, max_bytes)`: one of the host's reads, or a test's.
    pub fn new(from: u64, count: u64, read: R) -> Self {
        Self { next: from.max(1), left: count, read, page: PhantomData }
    }
}

impl<P: Page, R: FnMut(u64, u32, u32) -> P> Iterator for Pages<P, R> {
    type Item = P;

    fn next(&mut self) -> Option<P> {
        if self.left == 0 {
            return None;
        }
        let limit = u32::try_from(self.left).unwrap_or(u32::MAX).min(PAGE_ENTRIES);
        let page = (self.read)(self.next, limit, PAGE_BYTES);
        let entries = page.entries();
        if entries == 0 {
            self.left = 0;
            return None;
        }
        self.next += entries;
        self.left = self.left.saturating_sub(entries);
        Some(page)
    }
}

/// The log's entries from `seq` = `from`, at most `count`, in pages of [`Entry`].
pub fn entry_pages(from: u64, count: u64) -> impl Iterator<Item = Vec<Entry>> {
    Pages::new(from, count, host::read)
}

/// The log's entries from `seq` = `from`, at most `count`, one at a time (read a page at a
/// time).
pub fn entries(from: u64, count: u64) -> impl Iterator<Item = Entry> {
    entry_pages(from, count).flatten()
}

/// The messages of the log from `seq` = `from`, at most `count`, in pages of text.
pub fn text_pages(from: u64, count: u64) -> impl Iterator<Item = TextPage> {
    Pages::new(from, count, host::read_text)
}

/// `items` while those taken cost less than `budget` in all by `cost`: the item that reaches
/// the budget is the last one. What is past it is never asked for, so an iterator over
/// [`Pages`] reads no page it does not use.
pub fn within_bytes<T, F: FnMut(&T) -> usize>(
    items: impl Iterator<Item = T>,
    budget: usize,
    cost: F,
) -> impl Iterator<Item = T> {
    WithinBytes { items, spent: 0, budget, cost }
}

/// What [`within_bytes`] returns: unlike `take_while`, it stops before asking for an item it
/// would not take.
struct WithinBytes<I, F> {
    items: I,
    spent: usize,
    budget: usize,
    cost: F,
}

impl<T, I: Iterator<Item = T>, F: FnMut(&T) -> usize> Iterator for WithinBytes<I, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.spent >= self.budget {
            return None;
        }
        let item = self.items.next()?;
        self.spent = self.spent.saturating_add((self.cost)(&item));
        Some(item)
    }
}

/// Through which `seq` two logs agree, given each one's runs and length. Epochs never decrease
/// along a log and a master numbers each `seq` once per epoch, so two logs holding the same
/// `(seq, epoch)` agree on everything up to it: the answer is the furthest such `seq`.
pub fn common_prefix(ours: &[Run], our_len: u64, theirs: &[Run], their_len: u64) -> u64 {
    let spans = |runs: &[Run], len: u64| -> Vec<(u64, u64, u64)> {
        runs.iter()
            .enumerate()
            .map(|(i, run)| {
                let end = runs.get(i + 1).map_or(len, |next| next.first - 1);
                (run.epoch, run.first, end)
            })
            .filter(|(_, first, end)| first <= end)
            .collect()
    };
    let theirs = spans(theirs, their_len);
    spans(ours, our_len)
        .into_iter()
        .filter_map(|(epoch, first, end)| {
            let (_, their_first, their_end) = *theirs.iter().find(|(e, ..)| *e == epoch)?;
            let (from, to) = (first.max(their_first), end.min(their_end));
            (from <= to).then_some(to)
        })
        .max()
        .unwrap_or(0)
}

/// Writes `[...]`: the messages of the log from `seq` = `from`, at most `limit` of them, as a
/// JSON array.
pub fn write_messages(out: &mut dyn Write, from: u64, limit: u64) -> std::io::Result<()> {
    out.write_all(b"[")?;
    let mut json = Vec::new();
    for (i, TextPage { text, ends }) in text_pages(from, limit).enumerate() {
        json.clear();
        page_json(&mut json, &text, &ends, i > 0)?;
        out.write_all(&json)?;
    }
    out.write_all(b"]")
}

/// Appends the messages of a page (`text` cut at `ends`) as JSON strings separated by commas,
/// with a comma first unless it is the first page.
pub(crate) fn page_json(
    json: &mut Vec<u8>,
    text: &str,
    ends: &[u32],
    after: bool,
) -> std::io::Result<()> {
    json.reserve(text.len() + 3 * ends.len());
    let mut start = 0;
    for (i, end) in ends.iter().enumerate() {
        if after || i > 0 {
            json.push(b',');
        }
        let end = *end as usize;
        let msg = text.get(start..end).ok_or_else(|| bad_page(start, end))?;
        crate::json::push_string(json, msg);
        start = end;
    }
    Ok(())
}

/// A host whose page does not cut its text where it says: better an error than a wrong log.
fn bad_page(start: usize, end: usize) -> std::io::Error {
    std::io::Error::other(format!("the host's page of messages is not cut at {start}..{end}"))
}

/// `status` with `{"messages": [the log from `from`, at most `limit`], ...rest}`, where `rest`
/// is an object whose fields follow the messages. Written page by page.
pub fn respond_with_log(
    status: u16,
    from: u64,
    limit: u64,
    rest: Option<&impl Serialize>,
) -> Response {
    let rest = match rest.map(serde_json::to_vec).transpose() {
        Ok(rest) => rest,
        Err(e) => return Response::error(500, &format!("could not encode the response: {e}")),
    };
    Response::streamed(
        status,
        Box::new(move |out| {
            out.write_all(br#"{"messages":"#)?;
            write_messages(out, from, limit)?;
            match rest.as_deref() {
                // `{"a":1}` joins as `,"a":1}`; an empty object adds nothing.
                Some([b'{', fields @ .., b'}']) if !fields.is_empty() => {
                    out.write_all(b",")?;
                    out.write_all(fields)?;
                    out.write_all(b"}")
                }
                _ => out.write_all(b"}"),
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `len` entries whose message at `seq` is `size(seq)` bytes long, and a reader of
    /// it that pages as the host's `log.read` does.
    fn fake_log(
        len: u64,
        size: fn(u64) -> usize,
    ) -> (Vec<Entry>, impl FnMut(u64, u32, u32) -> Vec<Entry>) {
        let log: Vec<Entry> = (1..=len)
            .map(|seq| Entry { seq, epoch: 1, key: None, msg: "m".repeat(size(seq)) })
            .collect();
        let held = log.clone();
        let read = move |start: u64, limit: u32, max_bytes: u32| {
            let mut bytes = 0;
            held.iter()
                .skip(start.max(1) as usize - 1)
                .take(limit as usize)
                .enumerate()
                .take_while(|(i, entry)| {
                    bytes += entry.msg.len();
                    *i == 0 || bytes <= max_bytes as usize
                })
                .map(|(_, entry)| entry.clone())
                .collect::<Vec<Entry>>()
        };
        (log, read)
    }

    #[test]
    fn pages_read_the_log_in_order_within_the_count_and_the_page_bounds() {
        // Messages of 1..=1000 bytes: about 500 KB, so the byte bound cuts pages.
        let (log, mut read) = fake_log(1000, |seq| seq as usize);
        let mut calls = Vec::new();
        let counting = |start, limit, max_bytes| {
            calls.push((start, limit, max_bytes));
            read(start, limit, max_bytes)
        };
        let pages: Vec<Vec<Entry>> = Pages::new(0, u64::MAX, counting).collect();
        assert!(pages.len() > 1, "the byte bound cut the log into pages");
        assert_eq!(pages.concat(), log, "every entry once, in order, from seq 1");
        assert_eq!(calls.len(), pages.len() + 1, "one more call finds the end");
        assert!(calls.iter().all(|&(_, limit, max)| limit <= PAGE_ENTRIES && max == PAGE_BYTES));
    }

    #[test]
    fn pages_stop_at_the_count_without_reading_past_it() {
        let (log, mut read) = fake_log(50, |_| 1);
        let mut calls = 0;
        let pages: Vec<Vec<Entry>> = Pages::new(10, 7, |start, limit, max| {
            calls += 1;
            read(start, limit, max)
        })
        .collect();
        assert_eq!(pages.concat(), log[9..16]);
        assert_eq!(calls, 1, "the count is asked for, and nothing after it");
        let (_, read) = fake_log(3, |_| 1);
        assert_eq!(Pages::new(5, 10, read).count(), 0, "past the end: nothing");
    }

    #[test]
    fn a_byte_budget_takes_the_item_that_reaches_it_and_asks_for_nothing_more() {
        // Messages of 100 KB: two make a page.
        let (log, mut read) = fake_log(10, |_| 100_000);
        let mut calls = 0;
        let pages = Pages::new(1, u64::MAX, |start, limit, max| {
            calls += 1;
            read(start, limit, max)
        });
        let taken: Vec<Entry> = within_bytes(pages.flatten(), 150_000, |e| e.msg.len()).collect();
        assert_eq!(taken, log[..2], "the second entry reaches the budget, and is taken");
        assert_eq!(calls, 1, "the next page is not read");
        let nothing: Vec<u8> = within_bytes([1u8, 2].into_iter(), 0, |_| 1).collect();
        assert!(nothing.is_empty(), "no budget, no item");
    }

    #[test]
    fn a_page_is_its_messages_as_json_strings_and_a_bad_cut_is_an_error() {
        let mut json = Vec::new();
        page_json(&mut json, "a\"b\u{e9}", &[1, 1, 5], false).unwrap();
        assert_eq!(String::from_utf8(json.clone()).unwrap(), "\"a\",\"\",\"\\\"b\u{e9}\"");
        json.clear();
        page_json(&mut json, "xy", &[2], true).unwrap();
        assert_eq!(json, br#","xy""#);
        // A cut inside a character, or past the end, is the host's mistake: not sent on.
        assert!(page_json(&mut Vec::new(), "\u{e9}", &[1], false).is_err());
        assert!(page_json(&mut Vec::new(), "ab", &[3], false).is_err());
    }
}
