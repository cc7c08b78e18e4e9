//! Requests in, JSON responses out: whole, or written as they are produced (a log of any
//! length goes out in pages, so a component's memory stays small).

use std::io::{BufWriter, Write};

use serde::Serialize;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

/// An incoming request, split into what the handlers route on.
pub struct Request {
    inner: IncomingRequest,
    /// What the handlers route on, with the path.
    pub method: Method,
    /// The path without its query: what the handlers route on.
    pub path: String,
    query: String,
}

/// The name of a method as it goes on the wire (and into a signature).
pub fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

impl Request {
    /// Splits `inner`'s path from its query once, so that routing compares plain strings.
    pub fn new(inner: IncomingRequest) -> Self {
        let method = inner.method();
        let path_with_query = inner.path_with_query().unwrap_or_else(|| "/".to_owned());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_owned(), query.to_owned()),
            None => (path_with_query, String::new()),
        };
        Self { inner, method, path, query }
    }

    /// The path and query as the client sent them, as a signature covers them.
    pub fn path_with_query(&self) -> String {
        match self.query.is_empty() {
            true => self.path.clone(),
            false => format!("{}?{}", self.path, self.query),
        }
    }

    /// The first value of header `name`, if it is there and is text.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.inner.headers().get(name);
        values.first().and_then(|v| String::from_utf8(v.clone()).ok())
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a space), if present
    /// (`?name` alone gives `""`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
    }

    /// The whole body, or the `400` to answer when it cannot be read. The host received it,
    /// within its `MAX_BODY_BYTES`, before this component was called: bounding it is the
    /// host's.
    pub fn body(&self) -> Result<Vec<u8>, Response> {
        let broke = |why: &str| Response::error(400, &format!("could not read the body: {why}"));
        // Room for a large body's announced length at once: grown by doubling, it would need
        // half as much again of the instance's memory. A body within one read needs none.
        let announced: Option<usize> =
            self.header("content-length").and_then(|n| n.trim().parse().ok());
        let room = announced.filter(|&n| n as u64 > READ_CHUNK).unwrap_or(0);
        let body = self.inner.consume().map_err(|()| broke("it was already taken"))?;
        let stream = body.stream().map_err(|()| broke("it has no stream"))?;
        let read = read_all_into(Vec::with_capacity(room), &stream, u64::MAX);
        drop(stream);
        read.map_err(|e| broke(&e))
    }
}

/// The most asked of the host in one read: a body it holds whole comes in one piece.
const READ_CHUNK: u64 = 1024 * 1024;

/// Reads `stream` to its end: at most `limit` bytes, more is an error. Each read takes what the
/// host has, so a body comes in one read and the one that finds the end (`read_to_end` would
/// start with small reads and grow them: half a dozen host calls for a short answer).
pub fn read_all(stream: &InputStream, limit: u64) -> Result<Vec<u8>, String> {
    read_all_into(Vec::new(), stream, limit)
}

/// `read_all` into `bytes`, which may have room for what is expected already.
fn read_all_into(mut bytes: Vec<u8>, stream: &InputStream, limit: u64) -> Result<Vec<u8>, String> {
    loop {
        // Past the limit, one byte more is enough to tell that there is more.
        let room = limit.saturating_sub(bytes.len() as u64).clamp(1, READ_CHUNK);
        match stream.blocking_read(room) {
            Ok(chunk) if bytes.len() as u64 + chunk.len() as u64 > limit => {
                return Err(format!("longer than {limit} bytes"));
            }
            Ok(chunk) if bytes.capacity() == 0 => bytes = chunk,
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(bytes),
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
}

/// `%XX` escapes and `+` in a query component, decoded; a `%` not followed by two hex digits
/// stays as it is, and bytes that do not make UTF-8 are replaced.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match bytes[i] {
            b'%' if hex(i + 1).is_some() && hex(i + 2).is_some() => {
                out.push(
                    (hex(i + 1).unwrap_or_default() * 16 + hex(i + 2).unwrap_or_default()) as u8,
                );
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes a body as it is produced, into a buffered stream.
pub type Writer = Box<dyn FnOnce(&mut dyn Write) -> std::io::Result<()>>;

/// Writes a body as it is produced, with the stream under the buffer at hand: for a body of
/// which the host writes parts itself (`log.tail.pipe`), after the buffer is flushed.
pub type StreamWriter = Box<dyn FnOnce(&mut BufWriter<OutputStream>) -> std::io::Result<()>>;

enum ResponseBody {
    Whole(Vec<u8>),
    Streamed(Writer),
    OnStream(StreamWriter),
}

/// A response: status, headers and a JSON body, whole or streamed.
pub struct Response {
    /// Its status: public so that a handler can tell a success it may still replace (the
    /// secondary's injected faults do).
    pub status: u16,
    body: ResponseBody,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Response {
    /// `status` with `value` serialized as the JSON body.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self { status, body: ResponseBody::Whole(body), ..Self::empty(status) },
            Err(e) => Self::error(500, &format!("could not encode the response: {e}")),
        }
    }

    /// `status` with a JSON body that `write` produces as it goes, sent with chunked encoding.
    pub fn streamed(status: u16, write: Writer) -> Self {
        Self { body: ResponseBody::Streamed(write), ..Self::empty(status) }
    }

    /// `status` with a body that `write` produces as it goes, on the stream itself.
    pub fn on_stream(status: u16, write: StreamWriter) -> Self {
        Self { body: ResponseBody::OnStream(write), ..Self::empty(status) }
    }

    fn empty(status: u16) -> Self {
        Self {
            status,
            body: ResponseBody::Whole(Vec::new()),
            content_type: "application/json",
            headers: Vec::new(),
        }
    }

    /// Another body type than JSON (an event stream).
    pub fn with_content_type(mut self, content_type: &'static str) -> Self {
        self.content_type = content_type;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `status` with `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            error: &'a str,
        }
        Self {
            body: ResponseBody::Whole(
                serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default(),
            ),
            ..Self::empty(status)
        }
    }

    /// `405` naming the methods `path` takes.
    pub fn method_not_allowed(path: &str, allow: &'static str) -> Self {
        Self::error(405, &format!("{path} accepts {allow} only")).with_header("allow", allow)
    }

    /// `404` for a path this role does not serve.
    pub fn not_found(path: &str) -> Self {
        Self::error(404, &format!("no such endpoint: {path}"))
    }

    /// Sends the response. Failures here mean the client went away: there is no one left to
    /// tell, so they are reported on stderr (which the host logs) and otherwise ignored.
    pub fn send(self, out: ResponseOutparam) {
        let status = self.status;
        if let Err(e) = self.try_send(out) {
            eprintln!("could not send the {status} response: {e}");
        }
    }

    fn try_send(self, out: ResponseOutparam) -> Result<(), String> {
        let mut headers = vec![("content-type".to_owned(), self.content_type.as_bytes().to_vec())];
        if let ResponseBody::Whole(body) = &self.body {
            headers.push(("content-length".to_owned(), body.len().to_string().into_bytes()));
        }
        for (name, value) in &self.headers {
            headers.push(((*name).to_owned(), value.as_bytes().to_vec()));
        }
        let headers = Fields::from_list(&headers).map_err(|e| format!("bad header: {e:?}"))?;
        let response = OutgoingResponse::new(headers);
        response
            .set_status_code(self.status)
            .map_err(|()| format!("invalid status {}", self.status))?;
        let body = response.body().map_err(|()| "response body already taken")?;
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().map_err(|()| "response stream already taken")?;
        // Writes go out in pieces the host takes at a time; a buffer makes them few.
        let mut buffered = BufWriter::with_capacity(64 * 1024, stream);
        match self.body {
            ResponseBody::Whole(bytes) => buffered.write_all(&bytes),
            ResponseBody::Streamed(write) => write(&mut buffered),
            ResponseBody::OnStream(write) => write(&mut buffered),
        }
        .map_err(|e| e.to_string())?;
        // The rest of the buffer goes to the host, and the body ends, without waiting for the
        // client to take it (`blocking-flush` would): an answer that fits the host's buffer is
        // then done in this call, and the host answers without a task of its own for it.
        let stream = buffered.into_inner().map_err(|e| e.error().to_string())?;
        stream.flush().map_err(|e| format!("{e:?}"))?;
        drop(stream);
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(decode("%31"), "1");
        assert_eq!(decode("a+b%2Bc%20d"), "a b+c d");
        assert_eq!(decode("100%"), "100%", "a stray percent stays");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%C3%A9"), "é");
    }
}
