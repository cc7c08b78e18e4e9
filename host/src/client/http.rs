//! The little HTTP the client commands need: one keep-alive connection to one node at a time,
//! plain `http://`, each exchange within a timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Why an exchange with a node failed: the command moves to another node, or says so.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("{0}: not an http:// URL with a host")]
    BadUrl(String),
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
}

/// A node's base URL, split once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// As given, without a trailing `/`: what messages name.
    pub(crate) url: String,
    host: String,
    port: u16,
}

impl Node {
    pub(crate) fn parse(url: &str) -> Result<Self, HttpError> {
        let url = url.trim().trim_end_matches('/');
        let bad = || HttpError::BadUrl(url.to_owned());
        let uri: http::Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let host = uri.host().ok_or_else(bad)?.to_owned();
        Ok(Self { url: url.to_owned(), host, port: uri.port_u16().unwrap_or(80) })
    }
}

/// An answer: status, the headers the commands read, and the body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Bytes,
}

/// A connection to `node`, made on first use and again after a failure.
pub(crate) struct Connection {
    pub(crate) node: Node,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub(crate) fn new(node: Node) -> Self {
        Self { node, sender: None }
    }

    /// `method path_and_query` with `body` (JSON) on this node, answered within `timeout`.
    pub(crate) async fn exchange(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Answer, HttpError> {
        let attempt = self.try_exchange(method, path_and_query, body);
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(HttpError::Timeout(timeout))
            }
        }
    }

    async fn try_exchange(
        &mut self,
        method: http::Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, HttpError> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(self.connect().await?),
        };
        sender.ready().await?;
        let mut request = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::HOST, format!("{}:{}", self.node.host, self.node.port));
        if body.is_some() {
            request = request.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| HttpError::BadUrl(format!("{}{path_and_query}", self.node.url)))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer { status, retry_after, body })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let stream = tokio::net::TcpStream::connect((self.node.host.as_str(), self.node.port))
            .await
            .map_err(HttpError::Connect)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}

/// The `error` of a node's JSON answer, or the body as text.
pub(crate) fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}
