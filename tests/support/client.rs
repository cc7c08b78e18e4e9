//! HTTP to the nodes a test started: an async client on the host's own hyper stack, and
//! one-shot blocking requests for code without an async runtime.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{self, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// GET without an async runtime, for readiness checks.
pub fn blocking_get(url: &str) -> Option<(u16, String)> {
    blocking("GET", url, "")
}

/// POST without an async runtime; panics without an answer.
pub fn blocking_post(url: &str, body: &str) -> (u16, String) {
    blocking("POST", url, body).unwrap_or_else(|| panic!("no answer to POST {url}"))
}

/// The messages `base` holds, without an async runtime.
pub fn messages_blocking(base: &str) -> Vec<String> {
    let (status, body) = blocking_get(&format!("{base}/messages")).expect("an answer");
    assert_eq!(status, 200, "{body}");
    let json: Value = serde_json::from_str(&body).unwrap();
    json["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

/// One request on a connection of its own, answered with a length or in chunks.
/// `method` without an async runtime; none when nothing answers.
pub fn blocking(method: &str, url: &str, body: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}")))?;
    let addr: SocketAddr = authority.parse().ok()?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Some((status, if chunked { unchunk(body) } else { body.to_owned() }))
}

/// The data of a chunked body.
fn unchunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            break;
        }
        data.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    data
}

/// An HTTP/1 client on the hyper stack the host is built on. A second HTTP library for the
/// tests alone would switch on features in crates wasmtime shares with it, and `cargo test`
/// and `cargo run` would each build their own copy of wasmtime.
#[derive(Clone)]
pub struct Client(legacy::Client<HttpConnector, Full<Bytes>>);

/// A whole answer: its status and its body.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {}", self.status, self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub type ClientError = Box<dyn std::error::Error + Send + Sync>;

impl Client {
    pub async fn get(&self, url: &str) -> Result<Reply, ClientError> {
        self.send(http::Method::GET, url, Bytes::new(), &[]).await
    }

    /// A GET with headers of its own.
    pub async fn get_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        self.send(http::Method::GET, url, Bytes::new(), headers).await
    }

    pub async fn post(&self, url: &str, body: impl Into<Bytes>) -> Result<Reply, ClientError> {
        self.send(http::Method::POST, url, body.into(), &[]).await
    }

    /// A POST with headers of its own.
    pub async fn post_with(
        &self,
        url: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        self.send(http::Method::POST, url, body.into(), headers).await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<Reply, ClientError> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let response = self.0.request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, headers, body })
    }
}

pub fn client() -> Client {
    Client(
        legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(128)
            .build(HttpConnector::new()),
    )
}

pub async fn get_json(client: &Client, url: &str) -> (u16, Value) {
    let reply = client.get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (reply.status, reply.json())
}

pub async fn post_json(client: &Client, url: &str, body: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let reply =
        client.post(url, body.to_owned()).await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    (reply.status, reply.json(), started.elapsed())
}

pub async fn messages(client: &Client, node: &str) -> Vec<String> {
    let (status, json) = get_json(client, &format!("{node}/messages")).await;
    assert_eq!(status, 200, "{json}");
    json["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}
