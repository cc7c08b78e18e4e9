//! Outbound HTTP for components: only to the node's configured peers, over pooled connections.
//!
//! This is the `send_request` hook of `wasmtime-wasi-http`. Every request a component makes
//! through `wasi:http/outgoing-handler` lands here; one whose `host:port` is not among the
//! node's peers is refused (`HTTP-request-denied` for the guest, a warning in the log). The
//! rest go out through one keep-alive connection pool per process, so a replication costs a
//! request on an open connection, not a TCP handshake.

use std::collections::HashMap;
use std::error::Error as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::normalize_authority;
use crate::metrics::ReplicationMetrics;

/// The header that names the client requests behind a request (see [`Trace`]).
pub(crate) const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Request ids a replication request names at most; more are summed up as `+N`.
const MAX_CARRIED: usize = 32;

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

/// Which client requests a call's outbound requests are made for, named in their
/// `X-Request-Id` so that the peers' logs name them too.
#[derive(Clone, Debug, Default)]
pub(crate) enum Trace {
    /// None (recovery, the questions asked at load).
    #[default]
    None,
    /// A client request's own call.
    Request(Arc<str>),
    /// A replication step: the requests that appended the entries it read (`carry`).
    Carried(Vec<Arc<str>>),
}

/// One node's outbound policy: who it may call, and how. Cheap to clone into each request.
#[derive(Clone)]
pub(crate) struct Outbound {
    node: Arc<str>,
    /// The peers' `host:port` (as `config::normalize_authority` writes them) to their URLs.
    peers: Arc<HashMap<String, String>>,
    client: Client,
    metrics: ReplicationMetrics,
    trace: Trace,
}

impl Outbound {
    /// `peers` are `(host:port, URL)` pairs, the authority as `config::normalize_authority`
    /// writes it; round trips to each are timed into `metrics`, labelled with its URL.
    pub(crate) fn new(
        node: &str,
        peers: impl IntoIterator<Item = (String, String)>,
        client: Client,
        metrics: ReplicationMetrics,
    ) -> Self {
        Self {
            node: node.into(),
            peers: Arc::new(peers.into_iter().collect()),
            client,
            metrics,
            trace: Trace::None,
        }
    }

    /// This policy for one call, whose requests name `trace`.
    pub(crate) fn for_call(&self, trace: Trace) -> Self {
        Self { trace, ..self.clone() }
    }

    /// Whether this call is a replication step, whose requests name the client requests that
    /// appended what they carry.
    pub(crate) fn carries(&self) -> bool {
        matches!(self.trace, Trace::Carried(_))
    }

    /// The entries read by a replication step were appended by `ids`.
    pub(crate) fn carry(&mut self, ids: Vec<Arc<str>>) {
        if let Trace::Carried(carried) = &mut self.trace {
            carried.extend(ids);
        }
    }

    /// The `X-Request-Id` of the next request, if there is one to name (what was carried is
    /// named once).
    fn request_id(&mut self) -> Option<http::HeaderValue> {
        let text = match &mut self.trace {
            Trace::None => return None,
            Trace::Request(id) => id.to_string(),
            Trace::Carried(ids) if ids.is_empty() => return None,
            Trace::Carried(ids) => {
                let ids = std::mem::take(ids);
                let mut text =
                    ids.iter().take(MAX_CARRIED).map(|id| &**id).collect::<Vec<_>>().join(",");
                if ids.len() > MAX_CARRIED {
                    text.push_str(&format!(",+{}", ids.len() - MAX_CARRIED));
                }
                text
            }
        };
        http::HeaderValue::try_from(text).ok()
    }

    /// The URL of the peer `uri` is addressed to, or the authority it is addressed to.
    fn permits(&self, uri: &http::Uri) -> Result<String, String> {
        let authority = uri.authority().ok_or("the request names no host")?;
        let authority = normalize_authority(authority);
        self.peers.get(&authority).cloned().ok_or(authority)
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
        mut request: http::Request<WasiBody>,
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
        let peer = match self.permits(request.uri()) {
            Ok(peer) => peer,
            Err(target) => {
                tracing::warn!(
                    node = %self.node,
                    %target,
                    uri = %request.uri(),
                    "refused an outbound request: not one of this node's peers"
                );
                return Box::new(async { Err(Error::HttpRequestDenied) });
            }
        };
        if let Some(id) = self.request_id() {
            request.headers_mut().insert(REQUEST_ID, id);
        }
        let pool = self.client.pool.clone();
        let metrics = self.metrics.clone();
        let options = options.unwrap_or_default();
        Box::new(async move {
            let wait = options.first_byte_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT);
            let sent = Instant::now();
            let response = match tokio::time::timeout(wait, pool.request(request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(e)) => return Err(classify(&e)),
                Err(_) => return Err(Error::ConnectionReadTimeout),
            };
            metrics.round_trip(&peer, sent.elapsed());
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

    fn outbound(trace: Trace) -> Outbound {
        let peers = [("secondary1:8001".to_owned(), "http://secondary1:8001".to_owned())];
        let metrics = crate::metrics::NodeMetrics::new(Default::default()).replication;
        Outbound::new("master", peers, Client::new(), metrics).for_call(trace)
    }

    #[test]
    fn only_configured_peers_are_permitted() {
        let outbound = outbound(Trace::None);
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        let url = Ok("http://secondary1:8001".to_owned());
        assert_eq!(outbound.permits(&uri("http://secondary1:8001/replicate")), url);
        assert_eq!(outbound.permits(&uri("http://SECONDARY1:8001/x")), url);
        assert_eq!(
            outbound.permits(&uri("http://secondary1:8002/")),
            Err("secondary1:8002".into())
        );
        assert_eq!(outbound.permits(&uri("http://example.com/")), Err("example.com:80".into()));
    }

    #[test]
    fn a_step_names_the_requests_behind_what_it_carries_once() {
        let mut step = outbound(Trace::Carried(Vec::new()));
        assert!(step.carries());
        assert_eq!(step.request_id(), None, "nothing carried, nothing named");
        step.carry((0..MAX_CARRIED + 3).map(|i| Arc::from(format!("r{i}"))).collect());
        let named = step.request_id().unwrap();
        let named = named.to_str().unwrap();
        assert!(named.starts_with("r0,r1,"), "{named}");
        assert!(named.ends_with(&format!("r{},+3", MAX_CARRIED - 1)), "{named}");
        assert_eq!(step.request_id(), None, "named once");
        let mut request = outbound(Trace::Request("abc".into()));
        assert!(!request.carries());
        request.carry(vec!["x".into()]);
        assert_eq!(request.request_id().unwrap(), "abc");
    }
}
