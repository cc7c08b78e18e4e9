//! Requests in, JSON responses out.

use std::io::{Read, Write};

use serde::Serialize;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// An incoming request, split into what the handlers route on.
pub struct Request {
    inner: IncomingRequest,
    pub method: Method,
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

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over the configured limit (the payload is the limit in bytes).
    TooLarge(u64),
    /// The connection broke while reading.
    Io(String),
}

impl Request {
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

    /// The first value of query parameter `name`, if present (`?name` alone gives `""`).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// Reads the whole body, refusing more than `limit` bytes. A `Content-Length` over the
    /// limit is refused before anything is read.
    pub fn read_body(&self, limit: u64) -> Result<Vec<u8>, BodyError> {
        let declared = self
            .inner
            .headers()
            .get("content-length")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(BodyError::TooLarge(limit));
        }
        let body = self
            .inner
            .consume()
            .map_err(|()| BodyError::Io("request body was already taken".into()))?;
        let mut stream =
            body.stream().map_err(|()| BodyError::Io("request body has no stream".into()))?;
        let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
        // Read one byte past the limit so that "exactly at the limit" and "over it" differ.
        let read = (&mut stream)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| BodyError::Io(e.to_string()));
        drop(stream);
        read?;
        if buf.len() as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(buf)
    }
}

/// A complete response: status and JSON body.
pub struct Response {
    pub status: u16,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Response {
    /// `status` with `value` serialized as the JSON body.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self { status, body, headers: Vec::new() },
            Err(e) => Self::error(500, &format!("could not encode the response: {e}")),
        }
    }

    /// The answer to a body that could not be read: `413` over the limit, `400` otherwise.
    pub fn body_error(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge(limit) => Self::error(
                413,
                &format!("body is larger than {limit} bytes (the MAX_BODY_BYTES setting)"),
            ),
            BodyError::Io(e) => Self::error(400, &format!("could not read the body: {e}")),
        }
    }

    /// `401` for a node-to-node request without a valid proof.
    pub fn unauthorized(why: &impl std::fmt::Display) -> Self {
        Self::error(401, &why.to_string()).with_header("www-authenticate", crate::auth::SCHEME)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `status` with `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        #[derive(Serialize)]
        struct Error<'a> {
            error: &'a str,
        }
        Self {
            status,
            body: serde_json::to_vec(&Error { error: message }).unwrap_or_default(),
            headers: Vec::new(),
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
        if let Err(e) = self.try_send(out) {
            eprintln!("could not send the {} response: {e}", self.status);
        }
    }

    fn try_send(&self, out: ResponseOutparam) -> Result<(), String> {
        let mut headers = vec![
            ("content-type".to_owned(), b"application/json".to_vec()),
            ("content-length".to_owned(), self.body.len().to_string().into_bytes()),
        ];
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
        let mut stream = body.write().map_err(|()| "response stream already taken")?;
        let written = stream.write_all(&self.body).and_then(|()| Write::flush(&mut stream));
        drop(stream);
        written.map_err(|e| e.to_string())?;
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))
    }
}
