//! `GET /messages` on every node: a page of the log, a long-poll that waits for the next
//! entries, or a stream of server-sent events that follows the log as it grows.
//!
//! Positions are `seq`s, the same on every node and across a change of master, so a reader
//! resumes anywhere with the `seq` after the last it got. Tails (long-polls and streams) show
//! committed entries by default: those a majority holds, which no later master takes back. A
//! plain read shows everything the node holds, as it always did. A tail is served from the
//! log, a page at a time, never from a buffer of its own: a reader that falls behind costs the
//! node nothing but its place (`log.follow`), and it cannot slow writes or replication.

use std::io::{BufWriter, Write};
use std::time::Duration;

use wasip2::clocks::monotonic_clock;
use wasip2::io::poll;
use wasip2::io::streams::OutputStream;

use crate::host::log as host;
use crate::http::{Request, Response};
use crate::log::{PAGE_BYTES, Position, Run, common_prefix, entry_pages, text_pages};

/// The longest a long-poll waits (`wait` is cut to it): below the 60 s after which common
/// proxies and load balancers drop an idle connection.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long an event stream lives before the node ends it (with an `end` event); the client
/// resumes with `Last-Event-ID`, which `EventSource` does by itself. Streams that end keep a
/// node's tails turning over, so that one restarted or moved stays balanced.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(60);
/// A stream with nothing to send says so this often (`ping`): proxies see traffic, and the
/// client sees where the log and its commit point stand.
pub const PING_EVERY: Duration = Duration::from_secs(15);
/// Bytes a stream sends before the node ends it early, like its lifetime: a reader catching up
/// on a long log resumes in a fresh call, each within the node's CPU budget for a call.
const STREAM_BYTES: u64 = 64 << 20;
/// The longest one `GET /messages` keeps its call going: what each role's `longest_call` must
/// allow (a stream that ends its last round a little late still ends cleanly).
pub const LONGEST_TAIL: Duration = Duration::from_secs(STREAM_LIFETIME.as_secs() + 5);

/// What a `GET /messages` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadQuery {
    /// The first `seq` wanted (0: the log's start, whatever retention removed).
    pub from: u64,
    /// At most this many entries in a page (streams send all there is).
    pub limit: u64,
    /// Committed entries only.
    pub committed: bool,
    /// Whether and how to wait for entries not yet there.
    pub follow: Follow,
}

/// How a read waits for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// A page of what is there now.
    No,
    /// A long-poll: a page as soon as there is anything at or after `from`, else an empty
    /// page after this long.
    Wait(Duration),
    /// Server-sent events, for the stream's lifetime.
    Stream,
}

/// Reads the query (`from`, `limit`, `committed`, `wait`), the `Accept` header (an event
/// stream when it names `text/event-stream`) and `Last-Event-ID` (a stream resumes after it);
/// the error is the text of the `400`.
pub fn parse_query(
    param: impl Fn(&str) -> Option<String>,
    accept: Option<&str>,
    last_event_id: Option<&str>,
) -> Result<ReadQuery, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        param(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    format!("\"{name}\" must be a whole number (0 or more), got {v:?}")
                })
            })
            .transpose()
    };
    let mut from = number("from")?.unwrap_or(0);
    let limit = number("limit")?.unwrap_or(u64::MAX);
    let wait = number("wait")?;
    let stream = accept.is_some_and(|accept| accept.contains("text/event-stream"));
    let follow = match (stream, wait) {
        (true, _) => Follow::Stream,
        (false, Some(ms)) => Follow::Wait(Duration::from_millis(ms).min(MAX_WAIT)),
        (false, None) => Follow::No,
    };
    if let (Follow::Stream, Some(id)) = (follow, last_event_id.filter(|id| !id.trim().is_empty())) {
        let id = id.trim().parse::<u64>().map_err(|_| {
            format!("Last-Event-ID must be the seq of the last entry received, got {id:?}")
        })?;
        from = id.saturating_add(1);
    }
    let committed = match param("committed").as_deref() {
        None => follow != Follow::No,
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(other) => return Err(format!("\"committed\" must be true or false, got {other:?}")),
    };
    Ok(ReadQuery { from, limit, committed, follow })
}

/// Where a read from `from` starts on a log that starts at `start`: there (0: at the start),
/// or, below the start, the error of the `410` (retention removed what was asked for).
pub fn resolve_from(from: u64, start: u64) -> Result<u64, String> {
    match from {
        0 => Ok(start),
        from if from < start => Err(format!(
            "seq {from} is no longer held: retention removed the entries before seq {start}; \
             read from {start} (or without \"from\") to go on"
        )),
        from => Ok(from),
    }
}

/// The `410` for a read from below the log's start: the error, and the first `seq` held.
fn gone(why: &str, start: u64) -> Response {
    #[derive(serde::Serialize)]
    struct Gone<'a> {
        error: &'a str,
        first_seq: u64,
    }
    Response::json(410, &Gone { error: why, first_seq: start })
        .with_header("x-replog-first-seq", start.to_string())
}

/// How many entries a page from `from` holds, at most `limit`, on a log readable through
/// `end`.
pub fn page_len(from: u64, limit: u64, end: u64) -> u64 {
    if from > end { 0 } else { (end - from + 1).min(limit) }
}

/// Where the log is readable to: its commit point, or all it holds.
fn readable_end(committed: bool) -> u64 {
    if committed { host::committed() } else { host::len() }
}

/// `GET /messages`: see the module's documentation and the README's.
pub fn get_messages(request: &Request) -> Response {
    // Before anything of the log is read: a page made after it holds while it stands.
    let mark = host::mark();
    let accept = request.header("accept");
    let last_event_id = request.header("last-event-id");
    let query =
        parse_query(|name| request.query_param(name), accept.as_deref(), last_event_id.as_deref());
    let mut query = match query {
        Err(why) => return Response::error(400, &why),
        Ok(query) => query,
    };
    let start = host::start();
    query.from = match resolve_from(query.from, start) {
        Ok(from) => from,
        Err(why) => return gone(&why, start),
    };
    match query.follow {
        Follow::Stream => stream(query),
        Follow::Wait(wait) => long_poll(query, wait),
        Follow::No => {
            // A page is the query's, these headers' and the log's alone: the node may send it
            // again, without this call, to the same request until the log changes.
            host::keep_answer(
                mark,
                &[("accept".into(), accept), ("last-event-id".into(), last_event_id)],
            );
            page(query)
        }
    }
}

/// A page of what the log holds now from `from`: `{"messages": [...], "next": N,
/// "committed": C}`, with `next` and the commit point in headers too, so that a reader of the
/// body alone and one of the headers alone both know where to go on.
fn page(query: ReadQuery) -> Response {
    let end = readable_end(query.committed);
    let count = page_len(query.from, query.limit, end);
    let committed = host::committed();
    let from = query.from;
    Response::streamed(
        200,
        Box::new(move |out| {
            out.write_all(br#"{"messages":["#)?;
            let mut written = 0;
            let mut json = Vec::new();
            for (i, page) in text_pages(from, count).enumerate() {
                json.clear();
                crate::log::page_json(&mut json, &page.text, &page.ends, i > 0)?;
                out.write_all(&json)?;
                written += page.ends.len() as u64;
            }
            // A log cut short meanwhile (a repair) gives fewer: `next` says what was sent.
            write!(out, r#"],"next":{},"committed":{committed}}}"#, from + written)
        }),
    )
    .with_header("x-replog-next", (from + count).to_string())
    .with_header("x-replog-committed", committed.to_string())
}

/// A long-poll: the page at once when there is anything to read from `from`, else once there
/// is, or an empty page (`200`, the same `next`) after `wait`.
fn long_poll(query: ReadQuery, wait: Duration) -> Response {
    if wait.is_zero() || page_len(query.from, query.limit, readable_end(query.committed)) > 0 {
        return page(query);
    }
    let tail = match host::follow() {
        Ok(tail) => tail,
        Err(why) => return Response::error(503, &why).with_header("retry-after", "1"),
    };
    let deadline = monotonic_clock::now() + nanos(wait);
    // A change that brings nothing to read (a commit point short of `from`, a repair) wakes
    // the wait too: it goes on until there is something, or the deadline.
    loop {
        // Subscribed before looking, so that no change after the look is missed.
        let grown = tail.grown(query.from - 1, query.committed);
        if page_len(query.from, query.limit, readable_end(query.committed)) > 0
            || monotonic_clock::now() >= deadline
        {
            break;
        }
        let timer = monotonic_clock::subscribe_instant(deadline);
        poll::poll(&[&grown, &timer]);
    }
    let answer = page(query);
    drop(tail);
    answer
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// An event stream from `from`: see [`Follower`].
fn stream(query: ReadQuery) -> Response {
    let tail = match host::follow() {
        Ok(tail) => tail,
        Err(why) => return Response::error(503, &why).with_header("retry-after", "1"),
    };
    let started = monotonic_clock::now();
    Response::on_stream(
        200,
        Box::new(move |out| {
            let mut follower = Follower::new(query.from, query.committed);
            // A reader that went away is the normal end of a stream: nothing to report.
            let _ = follower.run(out, &tail, started);
            Ok(())
        }),
    )
    .with_content_type("text/event-stream")
    .with_header("cache-control", "no-cache")
    .with_header("x-accel-buffering", "no")
}

/// One stream's progress: where it goes on, and the runs of what it sent, to tell when the log
/// dropped some of it.
struct Follower {
    next: u64,
    committed: bool,
    /// The epochs of what was sent, as runs from the stream's first `seq`.
    sent: Vec<Run>,
    bytes: u64,
}

impl Follower {
    fn new(from: u64, committed: bool) -> Self {
        Self { next: from, committed, sent: Vec::new(), bytes: 0 }
    }

    /// Sends what is readable, waits for more, pings when idle, until the stream's lifetime
    /// or byte budget is spent (then `end`) or the reader goes away (an error). The host
    /// pipes the log into the stream (`tail.pipe`) as far as it keeps the entries' events
    /// (`log.rendered`); this writes the rest: events it renders (and hands to the node to
    /// keep), pings, `dropped` and `end`.
    fn run(
        &mut self,
        out: &mut BufWriter<OutputStream>,
        tail: &host::Tail,
        started: monotonic_clock::Instant,
    ) -> std::io::Result<()> {
        let deadline = started + nanos(STREAM_LIFETIME);
        out.write_all(format!("retry: 1000\n: following from seq {}\n\n", self.next).as_bytes())?;
        let mut last_sent = monotonic_clock::now();
        loop {
            let start = host::start();
            if self.next < start {
                // Retention removed what comes next: the reader is told where the log starts
                // now, and the stream ends (it cannot go on without skipping entries).
                out.write_all(sse::gone(self.next, start).as_bytes())?;
                return out.flush();
            }
            if let Some(first) = self.dropped() {
                out.write_all(sse::dropped(first).as_bytes())?;
                self.next = first;
            }
            // What this wrote goes out before what the host pipes.
            out.flush()?;
            let now = monotonic_clock::now();
            if now >= deadline || self.bytes >= STREAM_BYTES {
                break;
            }
            let ping_at = last_sent + nanos(PING_EVERY);
            if now >= ping_at {
                out.write_all(sse::ping(self.next, host::committed(), host::len()).as_bytes())?;
                last_sent = now;
                continue;
            }
            let sent_epoch = self.last_sent().map(|last| last.epoch);
            let piped = tail.pipe(
                out.get_ref(),
                sse::FORM,
                self.next,
                sent_epoch,
                self.committed,
                ping_at.min(deadline) - now,
            );
            if piped.next > self.next {
                self.took(&piped.runs, piped.next, piped.bytes);
                last_sent = monotonic_clock::now();
            }
            match piped.stop {
                // The loop pings, ends the stream, or says what was dropped.
                host::PipeStop::Deadline | host::PipeStop::Dropped => {}
                host::PipeStop::Unrendered => {
                    let end = readable_end(self.committed);
                    if self.next <= end {
                        self.send(out, end)?;
                        last_sent = monotonic_clock::now();
                    }
                }
                host::PipeStop::Closed => return Err(std::io::ErrorKind::BrokenPipe.into()),
            }
        }
        out.write_all(sse::end(self.next).as_bytes())?;
        out.flush()
    }

    /// Counts entries sent, up to `next`, of the epochs `runs`, in `bytes`.
    fn took(&mut self, runs: &[Run], next: u64, bytes: u64) {
        for run in runs {
            if self.sent.last().is_none_or(|last| last.epoch != run.epoch) {
                self.sent.push(*run);
            }
        }
        self.next = next;
        self.bytes += bytes;
    }

    /// Sends the entries from `next` through `end`, an event each, a page at a time. Each page
    /// is checked, once read, to continue what was sent: if the log dropped what was sent
    /// before the page was read, the page is not sent, and the next round says so. The events
    /// are those the node keeps (`log.rendered`) as far as it keeps them, else rendered here
    /// and handed to the node to keep: the many followers of a busy log render each entry
    /// once between them.
    fn send(&mut self, out: &mut dyn Write, end: u64) -> std::io::Result<()> {
        while self.next <= end {
            if let Some(last) = self.last_sent()
                && host::epoch_at(last.seq) != Some(last.epoch)
            {
                return Ok(());
            }
            let mut events = host::rendered(sse::FORM, self.next, end, PAGE_BYTES);
            if events.count == 0 {
                match render(self.next, end) {
                    Some(rendered) => events = rendered,
                    None => return Ok(()), // the log was cut short meanwhile
                }
            }
            out.write_all(&events.bytes)?;
            self.took(&events.runs, self.next + u64::from(events.count), events.bytes.len() as u64);
        }
        Ok(())
    }

    /// The first `seq` sent that the log no longer holds as it was sent (a repair replaced it),
    /// if any; what was sent is then known only up to before it.
    fn dropped(&mut self) -> Option<u64> {
        let last = self.last_sent()?;
        if host::epoch_at(last.seq) == Some(last.epoch) {
            return None;
        }
        let first = self.sent.first()?.first;
        let agreed = common_prefix(&self.sent, last.seq, &host::runs(), host::len());
        let dropped = (agreed + 1).max(first);
        self.sent.retain(|run| run.first < dropped);
        Some(dropped)
    }

    fn last_sent(&self) -> Option<Position> {
        let run = self.sent.last()?;
        Some(Position { seq: self.next - 1, epoch: run.epoch })
    }
}

/// The events of the entries from `from` through `end` (a page of them, at least one), rendered
/// here and handed to the node to keep for the other followers; none when the log holds no
/// entry at `from` any more.
fn render(from: u64, end: u64) -> Option<host::Rendition> {
    let page = entry_pages(from, end - from + 1).next()?;
    let mut rendition = host::Rendition { bytes: Vec::new(), count: 0, runs: Vec::new() };
    let mut ends = Vec::with_capacity(page.len());
    for entry in &page {
        sse::entry(&mut rendition.bytes, entry.seq, entry.epoch, &entry.msg);
        ends.push(u32::try_from(rendition.bytes.len()).unwrap_or(u32::MAX));
        if rendition.runs.last().is_none_or(|run| run.epoch != entry.epoch) {
            rendition.runs.push(Run { epoch: entry.epoch, first: entry.seq });
        }
    }
    rendition.count = u32::try_from(page.len()).unwrap_or(u32::MAX);
    host::keep_rendered(sse::FORM, from, &rendition.runs, &ends, &rendition.bytes);
    Some(rendition)
}

/// The events of a stream, as text (`text/event-stream`).
pub mod sse {
    use std::io::Write as _;

    /// The name of the form in which this version renders entries for the node to keep
    /// (`log.keep-rendered`): another rendering of an entry takes another name.
    pub const FORM: &str = "sse-entry/1";

    /// An entry: `id` its `seq` (what `Last-Event-ID` resumes after), data its `seq`, `epoch`
    /// and `msg` as one line of JSON.
    pub fn entry(out: &mut Vec<u8>, seq: u64, epoch: u64, msg: &str) {
        out.reserve(msg.len() + 64);
        // Writing to a `Vec` cannot fail.
        let _ = write!(out, "id: {seq}\ndata: {{\"seq\":{seq},\"epoch\":{epoch},\"msg\":");
        crate::json::push_string(out, msg);
        out.extend_from_slice(b"}\n\n");
    }

    /// Nothing new: where the stream goes on, the commit point and the log's length.
    pub fn ping(next: u64, committed: u64, len: u64) -> String {
        format!(
            "event: ping\ndata: {{\"next\":{next},\"committed\":{committed},\"len\":{len}}}\n\n"
        )
    }

    /// Retention removed the entries from `next` on, up to `start`: the stream ends; the reader
    /// decides whether to go on from `start`.
    pub fn gone(next: u64, start: u64) -> String {
        format!("event: gone\ndata: {{\"next\":{next},\"first_seq\":{start}}}\n\n")
    }

    /// The log no longer holds what was sent from `from` on: the stream goes on from there
    /// with what the log holds now.
    pub fn dropped(from: u64) -> String {
        format!("event: dropped\ndata: {{\"from\":{from}}}\n\n")
    }

    /// The stream ends (its lifetime): resume at `next`.
    pub fn end(next: u64) -> String {
        format!("event: end\ndata: {{\"next\":{next}}}\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(
        params: &[(&str, &str)],
        accept: Option<&str>,
        id: Option<&str>,
    ) -> Result<ReadQuery, String> {
        let params: Vec<(String, String)> =
            params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        parse_query(
            |name| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            accept,
            id,
        )
    }

    #[test]
    fn a_plain_read_shows_everything_held_and_a_tail_what_is_committed() {
        let plain = query(&[], None, None).unwrap();
        assert_eq!(
            plain,
            ReadQuery { from: 0, limit: u64::MAX, committed: false, follow: Follow::No }
        );
        let poll = query(&[("from", "5"), ("wait", "2000")], None, None).unwrap();
        assert_eq!((poll.committed, poll.follow), (true, Follow::Wait(Duration::from_secs(2))));
        let events = query(&[], Some("text/event-stream"), None).unwrap();
        assert_eq!((events.committed, events.follow), (true, Follow::Stream));
        let all = query(&[("wait", "10"), ("committed", "false")], None, None).unwrap();
        assert!(!all.committed);
        let committed = query(&[("committed", "true")], None, None).unwrap();
        assert_eq!((committed.committed, committed.follow), (true, Follow::No));
    }

    #[test]
    fn a_wait_is_capped_and_a_stream_resumes_after_its_last_event() {
        let long = query(&[("wait", "600000")], None, None).unwrap();
        assert_eq!(long.follow, Follow::Wait(MAX_WAIT));
        let resumed = query(&[("from", "3")], Some("text/event-stream"), Some("41")).unwrap();
        assert_eq!(resumed.from, 42, "Last-Event-ID wins over the URL's from");
        let plain = query(&[("from", "3")], None, Some("41")).unwrap();
        assert_eq!(plain.from, 3, "only a stream resumes by its id");
        assert_eq!(query(&[("from", "0")], None, None).unwrap().from, 0, "the start");
    }

    #[test]
    fn a_read_starts_at_the_logs_start_and_below_it_is_told_where_that_is() {
        assert_eq!(resolve_from(0, 1), Ok(1));
        assert_eq!(resolve_from(0, 500), Ok(500), "no from: the start");
        assert_eq!(resolve_from(500, 500), Ok(500));
        assert_eq!(resolve_from(9_000, 500), Ok(9_000), "past the end waits or reads nothing");
        let gone = resolve_from(499, 500).unwrap_err();
        assert!(gone.contains("seq 499 is no longer held") && gone.contains("before seq 500"));
        assert_eq!(sse::gone(7, 500), "event: gone\ndata: {\"next\":7,\"first_seq\":500}\n\n");
    }

    #[test]
    fn bad_numbers_are_refused_with_what_was_wrong() {
        for (params, says) in [
            (vec![("from", "-1")], "\"from\" must be a whole number"),
            (vec![("limit", "ten")], "\"limit\" must be a whole number"),
            (vec![("wait", "1.5")], "\"wait\" must be a whole number"),
            (vec![("committed", "yes")], "\"committed\" must be true or false"),
        ] {
            let error = query(&params, None, None).unwrap_err();
            assert!(error.contains(says), "{error:?} should say {says:?}");
        }
        let error = query(&[], Some("text/event-stream"), Some("x")).unwrap_err();
        assert!(error.contains("Last-Event-ID"), "{error}");
    }

    #[test]
    fn a_page_holds_what_is_readable_from_its_start() {
        assert_eq!(page_len(1, u64::MAX, 10), 10);
        assert_eq!(page_len(4, 3, 10), 3);
        assert_eq!(page_len(9, 5, 10), 2);
        assert_eq!(page_len(11, 5, 10), 0, "past the end: nothing, yet");
        assert_eq!(page_len(1, 5, 0), 0);
    }

    #[test]
    fn events_carry_their_seq_as_id_and_json_on_one_line() {
        let mut out = Vec::new();
        sse::entry(&mut out, 7, 3, "two\nlines \"q\"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "id: 7\ndata: {\"seq\":7,\"epoch\":3,\"msg\":\"two\\nlines \\\"q\\\"\"}\n\n"
        );
        assert_eq!(sse::dropped(5), "event: dropped\ndata: {\"from\":5}\n\n");
        assert_eq!(sse::end(9), "event: end\ndata: {\"next\":9}\n\n");
        assert!(sse::ping(9, 8, 9).starts_with("event: ping\ndata: {\"next\":9,"));
    }
}
