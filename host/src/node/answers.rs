//! Answers kept: a component's answer that depends on the log alone is kept by the host and
//! served again, without a call into the component, to the same request for as long as the log
//! has not changed.
//!
//! A read of an unchanged log gets the same bytes every time; making them again costs a call
//! into the component (an instance, the `wasi:http` resources of a request and a response,
//! the crossings of the page), several times the cost of sending them. So the component, which
//! alone knows what its answer depends on, says so (`log.keep-answer`): its answer to this
//! method, path and query, and these values of these request headers, holds while the log's
//! `mark` stands where it read it. The host keeps the status, headers and body as they went
//! out, and hands them to a request that matches while the mark has not moved; any change a
//! reader could see moves the mark (`state::Log::mark`), and the next request is the
//! component's again. Only a request asked for before has its answer kept: one asked once (a
//! reader walking the log) costs no keeping. What an answer is, and which answers are kept,
//! stays the component's: the host never makes or changes one, and a new version keeps its own
//! (answers belong to the version that made them).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus::{IntCounter, IntGauge};

use super::failure::Response;
use crate::state::NodeState;

/// Bytes of answers one version keeps at most: a few pages of a busy log's readers. The oldest
/// go first when a new one needs room.
const KEPT_BYTES: usize = 16 << 20;
/// The largest answer kept: a page of 10,000 short messages, and then some.
const ANSWER_BYTES: usize = 4 << 20;
/// Requests remembered as asked (see `Kept::asked`); past this many, they are forgotten at once.
const ASKED: usize = 8192;

/// What a component asked of its call's answer (`log.keep-answer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeepRequest {
    /// The log's mark the answer was made at.
    pub(crate) mark: u64,
    /// The request headers it depends on, and the value it saw of each (none: absent).
    pub(crate) vary: Vec<(String, Option<String>)>,
}

/// Where a call's `keep-answer` is recorded, for the host to find when the response comes: one
/// per call, so that a call that ends late cannot take another's.
pub(crate) type KeepCell = Arc<Mutex<Option<KeepRequest>>>;

/// The answers one version keeps.
pub(crate) struct KeptAnswers {
    inner: Mutex<Kept>,
    /// Names requests (`Key`) by a number, with keys a client cannot aim at one another.
    hasher: RandomState,
    /// Answers served from here (`replog_http_kept_answers_served_total`).
    served: IntCounter,
    /// Bytes kept, by every version of the node (`replog_http_kept_answers_bytes`).
    bytes: IntGauge,
}

/// The answers, all made at one mark: a newer mark makes every one of them stale.
#[derive(Default)]
struct Kept {
    mark: u64,
    by_request: HashMap<u64, Answer>,
    /// Oldest first, for room.
    order: VecDeque<u64>,
    bytes: usize,
    /// Requests asked for and not answered from here: an answer is kept only for a request
    /// asked before, so that requests that come once (a reader walking the log page by page)
    /// cost no keeping, and push out no answer that is asked for again and again.
    asked: HashSet<u64>,
}

/// The request an answer answers: method, then path and query.
type Key = (http::Method, String);

/// What a request found among the answers kept.
pub(crate) enum Found {
    /// The answer, as the component made it.
    Kept(Response),
    /// None for it now; whether the same request was asked for before (its answer is then kept
    /// if the component says it may be).
    Missed { again: bool },
}

struct Answer {
    vary: Vec<(String, Option<String>)>,
    status: http::StatusCode,
    headers: http::HeaderMap,
    /// The request it answers (requests are found by a number made from it).
    key: Key,
    /// The body as it went out, in the pieces the component wrote: kept as they are (shared,
    /// not copied), and sent again as they are.
    body: Vec<Bytes>,
}

impl Answer {
    fn body_len(&self) -> usize {
        self.body.iter().map(Bytes::len).sum()
    }

    fn size(&self) -> usize {
        self.body_len()
            + self.headers.iter().map(|(n, v)| n.as_str().len() + v.len()).sum::<usize>()
    }

    /// Whether `headers` has the values this answer was made for.
    fn fits(&self, headers: &http::HeaderMap) -> bool {
        self.vary.iter().all(|(name, value)| {
            let given = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
            given == value.as_deref()
        })
    }
}

impl KeptAnswers {
    pub(crate) fn new(served: IntCounter, bytes: IntGauge) -> Self {
        Self { inner: Mutex::default(), hasher: RandomState::new(), served, bytes }
    }

    fn number(&self, method: &http::Method, path: &str) -> u64 {
        self.hasher.hash_one((method.as_str(), path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Every update is complete before the lock is released.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The answer kept for a request of `method` to `uri` with `headers`, made at `mark` (the
    /// log's mark now), if there is one.
    pub(crate) fn answer(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        mark: u64,
    ) -> Found {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let number = self.number(method, path);
        let response = {
            let mut kept = self.lock();
            let found = match kept.by_request.get(&number) {
                Some(answer)
                    if kept.mark == mark
                        && answer.key.0 == method
                        && answer.key.1 == path
                        && answer.fits(headers) =>
                {
                    answer
                }
                _ => {
                    if kept.asked.len() >= ASKED {
                        kept.asked.clear();
                    }
                    return Found::Missed { again: !kept.asked.insert(number) };
                }
            };
            let left = found.body_len() as u64;
            let pieces = Pieces { left, pieces: found.body.clone().into() };
            let mut response = hyper::Response::new(pieces.boxed_unsync());
            *response.status_mut() = found.status;
            *response.headers_mut() = found.headers.clone();
            response
        };
        self.served.inc();
        Found::Kept(response)
    }

    /// Keeps `response`'s body as it goes out, and the answer once it has gone out whole, if
    /// the log's mark still stands at `request.mark` then.
    pub(crate) fn keeping(
        self: &Arc<Self>,
        response: Response,
        method: http::Method,
        uri: &http::Uri,
        request: KeepRequest,
        state: Arc<NodeState>,
    ) -> Response {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let (parts, body) = response.into_parts();
        let answer = Answer {
            vary: request.vary,
            status: parts.status,
            headers: parts.headers.clone(),
            key: (method, path),
            body: Vec::new(),
        };
        let tee = Keeping {
            body,
            taken: 0,
            pending: Some(Pending { answer, mark: request.mark }),
            answers: self.clone(),
            state,
        };
        hyper::Response::from_parts(parts, tee.boxed_unsync())
    }

    /// Keeps `answer`, made at `mark`, if that is the log's mark `now`.
    fn keep(&self, answer: Answer, mark: u64, now: u64) {
        let size = answer.size();
        let key = self.number(&answer.key.0, &answer.key.1);
        if mark != now || size > ANSWER_BYTES {
            return;
        }
        let mut kept = self.lock();
        let before = kept.bytes;
        if kept.mark != mark {
            // Made at an older mark: stale, every one.
            kept.by_request.clear();
            kept.order.clear();
            kept.bytes = 0;
            kept.mark = mark;
        }
        if let Some(old) = kept.by_request.remove(&key) {
            kept.bytes -= old.size();
            kept.order.retain(|k| *k != key);
        }
        while kept.bytes + size > KEPT_BYTES {
            let Some(oldest) = kept.order.pop_front() else { break };
            if let Some(old) = kept.by_request.remove(&oldest) {
                kept.bytes -= old.size();
            }
        }
        kept.bytes += size;
        kept.order.push_back(key);
        kept.by_request.insert(key, answer);
        let after = kept.bytes;
        drop(kept);
        self.bytes.add(after as i64 - before as i64);
    }
}

impl Drop for KeptAnswers {
    fn drop(&mut self) {
        self.bytes.sub(self.lock().bytes as i64);
    }
}

/// An answer waiting for its body to go out whole.
struct Pending {
    answer: Answer,
    mark: u64,
}

/// A response body passed on as it comes, and taken whole for `KeptAnswers` at its end (an
/// answer too large to keep, or one that fails, is passed on and not kept).
struct Keeping {
    body: super::ResponseBody,
    /// Bytes of the body taken so far (the pieces are in `pending`'s answer).
    taken: usize,
    pending: Option<Pending>,
    answers: Arc<KeptAnswers>,
    state: Arc<NodeState>,
}

impl Body for Keeping {
    type Data = Bytes;
    type Error = <super::ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    this.taken += data.len();
                    match &mut this.pending {
                        Some(_) if this.taken > ANSWER_BYTES => this.pending = None,
                        // A clone of a piece shares its bytes.
                        Some(pending) => pending.answer.body.push(data.clone()),
                        None => {}
                    }
                }
                // Trailers: not an answer kept bytes alone can repeat.
                None => this.pending = None,
            },
            Poll::Ready(Some(Err(_))) => this.pending = None,
            Poll::Ready(None) => {
                if let Some(Pending { answer, mark }) = this.pending.take() {
                    this.answers.keep(answer, mark, this.state.log().mark());
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        // Polled to its end, always: the end is where the answer is kept.
        false
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A kept answer's body: its pieces, one frame each.
struct Pieces {
    pieces: VecDeque<Bytes>,
    left: u64,
}

impl Body for Pieces {
    type Data = Bytes;
    type Error = <super::ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let piece = this.pieces.pop_front();
        if let Some(piece) = &piece {
            this.left -= piece.len() as u64;
        }
        Poll::Ready(piece.map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Arc<KeptAnswers> {
        Arc::new(KeptAnswers::new(
            IntCounter::new("served", "served").unwrap(),
            IntGauge::new("bytes", "bytes").unwrap(),
        ))
    }

    /// An answer to `GET path`.
    fn answer(path: &str, body: &str, vary: &[(&str, Option<&str>)]) -> Answer {
        let mut headers = http::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        Answer {
            vary: vary.iter().map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned))).collect(),
            status: http::StatusCode::OK,
            headers,
            key: (http::Method::GET, path.to_owned()),
            // In two pieces, as a component writing in pieces sends it.
            body: {
                let (a, b) = body.as_bytes().split_at(body.len() / 2);
                vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]
            },
        }
    }

    async fn body_of(response: Response) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn get(
        kept: &KeptAnswers,
        path: &str,
        headers: &[(&str, &str)],
        mark: u64,
    ) -> Option<Response> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        match kept.answer(&http::Method::GET, &path.parse().unwrap(), &map, mark) {
            Found::Kept(response) => Some(response),
            Found::Missed { .. } => None,
        }
    }

    #[tokio::test]
    async fn an_answer_is_served_for_the_same_request_while_the_mark_stands() {
        let kept = answers();
        kept.keep(answer("/messages?from=2", "[2]", &[("accept", None)]), 7, 7);
        let served = get(&kept, "/messages?from=2", &[], 7).expect("kept");
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["content-type"], "application/json");
        assert_eq!(body_of(served).await, "[2]");
        assert!(get(&kept, "/messages?from=2", &[], 8).is_none(), "the mark moved");
        assert!(get(&kept, "/messages?from=3", &[], 7).is_none(), "another query");
        assert!(get(&kept, "/messages", &[], 7).is_none(), "another path");
        let head = kept.answer(
            &http::Method::HEAD,
            &"/messages?from=2".parse().unwrap(),
            &http::HeaderMap::new(),
            7,
        );
        assert!(matches!(head, Found::Missed { .. }), "another method");
        assert!(
            get(&kept, "/messages?from=2", &[("accept", "text/event-stream")], 7).is_none(),
            "a header the answer depends on, with another value"
        );
        assert!(
            get(&kept, "/messages?from=2", &[("x-request-id", "a")], 7).is_some(),
            "headers it does not depend on do not matter"
        );
        assert_eq!(kept.served.get(), 2);
    }

    #[test]
    fn answers_made_at_a_mark_that_moved_meanwhile_are_not_kept_and_a_new_mark_drops_the_old() {
        let kept = answers();
        kept.keep(answer("/a", "a", &[]), 3, 4);
        assert!(get(&kept, "/a", &[], 3).is_none() && get(&kept, "/a", &[], 4).is_none());
        kept.keep(answer("/a", "a", &[]), 4, 4);
        kept.keep(answer("/b", "b", &[]), 5, 5);
        assert!(get(&kept, "/a", &[], 5).is_none(), "stale with its mark");
        assert!(get(&kept, "/b", &[], 5).is_some());
        assert_eq!(kept.lock().by_request.len(), 1);
        assert_eq!(kept.bytes.get() as usize, kept.lock().bytes);
    }

    #[test]
    fn only_a_request_asked_for_before_is_told_to_keep_its_answer() {
        let kept = answers();
        let ask = |path: &str| match kept.answer(
            &http::Method::GET,
            &path.parse().unwrap(),
            &http::HeaderMap::new(),
            1,
        ) {
            Found::Missed { again } => again,
            Found::Kept(_) => panic!("nothing is kept"),
        };
        assert!(!ask("/messages?from=1"), "the first time");
        assert!(ask("/messages?from=1"), "asked again");
        assert!(!ask("/messages?from=2"), "another request, the first time");
        for i in 0..ASKED {
            ask(&format!("/messages?from={}", i + 10));
        }
        assert!(kept.lock().asked.len() <= ASKED, "the requests remembered are bounded");
    }

    #[test]
    fn the_bytes_kept_are_bounded_and_the_oldest_go_first() {
        let kept = answers();
        let big = "x".repeat(ANSWER_BYTES / 2);
        for i in 0..(2 * KEPT_BYTES / big.len()) {
            kept.keep(answer(&format!("/{i}"), &big, &[]), 1, 1);
        }
        let bytes = kept.lock().bytes;
        assert!(bytes <= KEPT_BYTES, "{bytes} bytes kept");
        assert!(get(&kept, "/0", &[], 1).is_none(), "the oldest went");
        let last = 2 * KEPT_BYTES / big.len() - 1;
        assert!(get(&kept, &format!("/{last}"), &[], 1).is_some(), "the newest stays");
        kept.keep(answer("/huge", &"x".repeat(ANSWER_BYTES + 1), &[]), 1, 1);
        assert!(get(&kept, "/huge", &[], 1).is_none(), "too large to keep");
        assert_eq!(kept.bytes.get() as usize, kept.lock().bytes);
    }
}
