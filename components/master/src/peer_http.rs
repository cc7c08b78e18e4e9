//! Requests to secondaries, signed and bounded in time: what replication steps and recovery
//! rounds send. Several can be in flight at once: `start` sends, `finish` waits for the answer.

use std::time::Duration;

use replog_guest::auth;
use replog_guest::http::{method_name, read_all};
use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, RequestOptions,
};
use wasip2::io::poll::{self, Pollable};

use replog_guest::peer::PeerUrl;

/// Connecting is bounded on its own, so that a peer that swallows connection attempts is
/// retried rather than waited on for the whole `timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest answer read: a batch of entries during recovery is about a megabyte of JSON.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// A request on its way.
pub struct Exchange {
    pending: FutureIncomingResponse,
    deadline: Pollable,
    timeout: Duration,
    /// Whether the body went out; when the connection failed, the answer's error says why
    /// better than the write's, so this is reported only if there is no other error.
    sent: Result<(), String>,
}

/// Sends `method endpoint` (path and query) with `body` to `peer`, signed with the cluster
/// secret, to be answered within `timeout`.
pub fn start(
    peer: &PeerUrl,
    method: Method,
    endpoint: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Exchange, String> {
    let path = peer.path(endpoint);
    let mut headers = vec![("content-type".to_owned(), b"application/json".to_vec())];
    if let Some(body) = body {
        headers.push(("content-length".to_owned(), body.len().to_string().into_bytes()));
    }
    let proof = auth::authorization(method_name(&method), &path, body.unwrap_or_default());
    if let Some(proof) = proof {
        headers.push(("authorization".to_owned(), proof.into_bytes()));
    }
    let headers = Fields::from_list(&headers).map_err(|e| format!("bad headers: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    let invalid = |what: &str| format!("invalid {what} in {}", peer.url);
    request.set_method(&method).map_err(|()| invalid("method"))?;
    request.set_scheme(Some(&peer.scheme())).map_err(|()| invalid("scheme"))?;
    request.set_authority(Some(&peer.authority)).map_err(|()| invalid("authority"))?;
    request.set_path_with_query(Some(&path)).map_err(|()| invalid("path"))?;
    let outgoing = request.body().map_err(|()| "request body already taken".to_owned())?;

    let nanos = nanos(timeout);
    let options = RequestOptions::new();
    // A host may not support some timeouts; the deadline bounds the wait regardless.
    let _ = options.set_connect_timeout(Some(nanos.min(self::nanos(CONNECT_TIMEOUT))));
    let _ = options.set_first_byte_timeout(Some(nanos));
    let _ = options.set_between_bytes_timeout(Some(nanos));
    let deadline = monotonic_clock::subscribe_duration(nanos);

    let pending = outgoing_handler::handle(request, Some(options)).map_err(|e| describe(&e))?;
    let sent = send_body(outgoing, body);
    Ok(Exchange { pending, deadline, timeout, sent })
}

impl Exchange {
    /// The status and body of the answer, or why there is none.
    pub fn finish(self) -> Result<(u16, Vec<u8>), String> {
        let answered = self.pending.subscribe();
        let ready = poll::poll(&[&answered, &self.deadline]);
        drop(answered);
        if !ready.contains(&0) {
            self.sent?;
            return Err(format!("no answer within {} ms", self.timeout.as_millis()));
        }
        match self.pending.get() {
            Some(Ok(Ok(answer))) => {
                self.sent?;
                let status = answer.status();
                read_answer(answer).map(|body| (status, body))
            }
            Some(Ok(Err(code))) => Err(describe(&code)),
            Some(Err(())) | None => Err("the answer was lost".to_owned()),
        }
    }
}

/// One request, start to finish.
pub fn request(
    peer: &PeerUrl,
    method: Method,
    endpoint: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    start(peer, method, endpoint, body, timeout)?.finish()
}

fn send_body(outgoing: OutgoingBody, body: Option<&[u8]>) -> Result<(), String> {
    if let Some(body) = body {
        let mut stream =
            outgoing.write().map_err(|()| "request stream already taken".to_owned())?;
        let written = std::io::Write::write_all(&mut stream, body);
        drop(stream);
        written.map_err(|e| format!("could not send: {e}"))?;
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| describe(&e))
}

fn read_answer(answer: IncomingResponse) -> Result<Vec<u8>, String> {
    let body = answer.consume().map_err(|()| "body already taken".to_owned())?;
    let stream = body.stream().map_err(|()| "body stream already taken".to_owned())?;
    let read = read_all(&stream, MAX_ANSWER_BYTES);
    drop(stream);
    drop(body);
    read.map_err(|e| format!("the answer broke off: {e}"))
}

/// Words for an HTTP error, for the peer's `last_error` and the client's `502`.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "timed out connecting".into(),
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
            "timed out waiting for the answer".into()
        }
        ErrorCode::ConnectionTerminated => "connection closed before the answer".into(),
        ErrorCode::DnsError(_) | ErrorCode::DestinationNotFound => "host name not found".into(),
        ErrorCode::HttpRequestDenied => "refused by the host: not one of this node's peers".into(),
        ErrorCode::InternalError(Some(why)) => format!("internal error: {why}"),
        other => format!("{other:?}"),
    }
}

/// `d` in nanoseconds, as WASI's clocks and timeouts take it (saturating, not wrapping).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
