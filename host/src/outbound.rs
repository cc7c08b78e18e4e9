//! Outbound HTTP for components: only to the node's configured peers, over pooled connections.
//!
//! This is the `send_request` hook of `wasmtime-wasi-http`. Every request a component makes
//! through `wasi:http/outgoing-handler` lands here; one whose `host:port` is not among the
//! node's peers is refused (`HTTP-request-denied` for the guest, a warning in the log). The
//! rest go out through one keep-alive connection pool per process, so a replication costs a
//! request on an open connection, not a TCP handshake.

use std::collections::HashSet;
use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::normalize_authority;

/// Bound on establishing a connection to a peer.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on waiting for an answer when the component sets none.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

type Pool = hyper_util::client::legacy::Client<HttpConnector, WasiBody>;

/// The process-wide connection pool. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Client {
    pool: Pool,
}

impl Client {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let pool = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self { pool }
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

/// One node's outbound policy: who it may call, and how. Cheap to clone into each request.
#[derive(Clone)]
pub(crate) struct Outbound {
    node: Arc<str>,
    allowed: Arc<HashSet<String>>,
    client: Client,
}

impl Outbound {
    /// `allowed` holds `host:port` strings as `config::normalize_authority` writes them.
    pub(crate) fn new(
        node: &str,
        allowed: impl IntoIterator<Item = String>,
        client: Client,
    ) -> Self {
        Self { node: node.into(), allowed: Arc::new(allowed.into_iter().collect()), client }
    }

    fn permits(&self, uri: &http::Uri) -> Result<(), String> {
        let host = uri.host().ok_or("the request names no host")?;
        let authority = normalize_authority(host, uri.port_u16().unwrap_or(80));
        if self.allowed.contains(&authority) { Ok(()) } else { Err(authority) }
    }
}

impl WasiHttpHooks for Outbound {
    fn is_supported_scheme(&mut self, scheme: &http::uri::Scheme) -> bool {
        *scheme == http::uri::Scheme::HTTP
    }

    fn default_scheme(&mut self) -> Option<http::uri::Scheme> {
        Some(http::uri::Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_done: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                )>,
            > + Send,
    > {
        if let Err(target) = self.permits(request.uri()) {
            tracing::warn!(
                node = %self.node,
                %target,
                uri = %request.uri(),
                "refused an outbound request: not one of this node's peers"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let pool = self.client.pool.clone();
        let options = options.unwrap_or_default();
        Box::new(async move {
            let wait = options.first_byte_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
            let response = match tokio::time::timeout(wait, pool.request(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(classify(&e)),
                Err(_) => return Err(Error::ConnectionReadTimeout),
            };
            let between_bytes = options.between_bytes_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
            let response = response.map(|body| TimedBody::new(body, between_bytes).boxed_unsync());
            let done: Box<dyn Future<Output = Result<(), Error>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Turns a pool error into the `wasi:http` error code the guest will see.
fn classify(e: &hyper_util::client::legacy::Error) -> Error {
    let chain = error_chain(e);
    if e.is_connect() {
        let io_kind = std::iter::successors(e.source(), |s| (*s).source())
            .find_map(|s| s.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        return match io_kind {
            Some(std::io::ErrorKind::ConnectionRefused) => Error::ConnectionRefused,
            Some(std::io::ErrorKind::TimedOut) => Error::ConnectionTimeout,
            // hyper-util reports a failed name lookup only in its message.
            _ if chain.contains("dns error") => {
                Error::DnsError { rcode: Some(chain), info_code: None }
            }
            _ => Error::Connect(std::io::Error::other(chain)),
        };
    }
    Error::InternalError(Some(chain))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A response body that fails when no data arrives for `timeout`.
struct TimedBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl TimedBody {
    fn new(inner: hyper::body::Incoming, timeout: Duration) -> Self {
        Self { inner, timeout, idle: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.idle.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_peers_are_permitted() {
        let outbound = Outbound::new("master", ["secondary1:8001".to_owned()], Client::new());
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(outbound.permits(&uri("http://secondary1:8001/replicate")).is_ok());
        assert!(outbound.permits(&uri("http://SECONDARY1:8001/x")).is_ok());
        assert_eq!(
            outbound.permits(&uri("http://secondary1:8002/")),
            Err("secondary1:8002".into())
        );
        assert_eq!(outbound.permits(&uri("http://example.com/")), Err("example.com:80".into()));
    }
}
