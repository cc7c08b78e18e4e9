//! Serving a node over HTTP/1.1 until told to stop, with the edge's limits: a cap on open
//! connections, deadlines on idle connections, headers and bodies (`deadline`), a bound on the
//! memory all of a node's request bodies hold (`budget`), and requests admitted whole, proven
//! where their route needs it, and within the instances clients may use, before a component
//! sees them (`admit`).

mod admit;
mod budget;
mod deadline;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use self::admit::{Admitted, Bounds};
use self::budget::{BodyBudget, READ_BUFFER_BYTES, Room};
use self::deadline::{Activity, Serving, Watched};
use crate::console::{self, Views};
use crate::node::{Node, Response, json_error};
use crate::seat::Seat;

/// How long requests in flight may take to finish once shutdown starts.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a node cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another socket is bound to the address.
    #[error("{node} cannot listen on {addr}: the port is in use (pick another port)")]
    InUse {
        /// The node's name.
        node: String,
        /// The address it was to listen on.
        addr: SocketAddr,
    },
    /// Binding failed for any other reason.
    #[error("{node} cannot listen on {addr}: {error}")]
    Other {
        /// The node's name.
        node: String,
        /// The address it was to listen on.
        addr: SocketAddr,
        /// What binding failed with.
        error: std::io::Error,
    },
}

/// Binds `addr` for `node`, with an error that names both.
pub(crate) async fn bind(node: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|error| match error.kind() {
        std::io::ErrorKind::AddrInUse => BindError::InUse { node: node.to_owned(), addr },
        _ => BindError::Other { node: node.to_owned(), addr, error },
    })
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The node's API, and `GET /metrics` unless the node has a metrics address.
    Clients,
    /// `GET /metrics` only (`METRICS_ADDR`).
    Metrics,
}

/// Accepts connections for the node in `seat` until `shutdown` resolves, then lets requests in
/// flight finish for up to `DRAIN_TIMEOUT`. Each request is served by the node seated when it
/// arrives; the edge (its limits, its body budget) is the first node's, which every successor
/// keeps.
pub(crate) async fn serve(
    seat: Arc<Seat>,
    listener: TcpListener,
    port: Port,
    shutdown: impl Future<Output = ()>,
) {
    let node = seat.node();
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let edge = node.config().edge;
    let connections = Arc::new(Semaphore::new(edge.max_connections));
    let http = &node.state().metrics.http;
    let (budget, limit) = node.body_budget();
    http.body_budget_bytes.set(i64::try_from(budget).unwrap_or(i64::MAX));
    let budget = Arc::new(BodyBudget::new(budget, limit, http.body_bytes_held.clone()));
    let views = Arc::new(Views::default());
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(node = node.name(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(open) = connections.clone().try_acquire_owned() else {
            tokio::spawn(turn_away(stream, edge.max_connections));
            continue;
        };
        let activity = Arc::new(Activity::default());
        let service = service_fn({
            let (seat, activity, budget) = (seat.clone(), activity.clone(), budget.clone());
            let views = views.clone();
            move |request| {
                let serving = activity.begin();
                let (seat, node, budget) = (seat.clone(), seat.node(), budget.clone());
                let views = views.clone();
                async move {
                    let shared = Shared { seat: &seat, port, budget: &budget, views: &views };
                    let answer = answer(&shared, &node, request).await;
                    Ok::<_, Infallible>(answer.into_response(serving))
                }
            }
        });
        let io = TokioIo::new(Watched::new(stream, activity, edge));
        // A connection's buffers are bounded too: reading a large body, hyper would otherwise
        // grow its read buffer to about 400 KiB.
        let connection =
            http1::Builder::new().max_buf_size(READ_BUFFER_BYTES).serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            node = node.name(),
            "requests still running after {DRAIN_TIMEOUT:?}; leaving them"
        );
    }
}

/// What a listener's requests share.
struct Shared<'a> {
    seat: &'a Arc<Seat>,
    port: Port,
    budget: &'a BodyBudget,
    views: &'a Views,
}

/// One request, counted: `GET /metrics` and the console's page and view answered by the host,
/// the rest admitted whole, then served by the node's component (or, a write to an elected
/// node that is not master, forwarded to the master: see `Seat`; a console's append, sent to
/// the master's write path).
async fn answer(
    shared: &Shared<'_>,
    node: &Node,
    request: hyper::Request<hyper::body::Incoming>,
) -> Guarded {
    let Shared { seat, port, budget, views } = *shared;
    let started = Instant::now();
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let metrics_here = match port {
        Port::Metrics => true,
        Port::Clients => node.config().metrics_listen.is_none(),
    };
    let guarded = if metrics_here && uri.path() == "/metrics" {
        Guarded::answer(metrics(node, &method))
    } else if port == Port::Metrics {
        let error =
            format!("{} is not served here: this address serves GET /metrics only", uri.path());
        Guarded::answer(json_error(404, &error))
    } else if let Some(route) = console::route(uri.path()).filter(|r| console::answers_at_once(*r))
    {
        Guarded::answer(console::answer(route, &method, seat, views).await)
    } else {
        let bounds = Bounds {
            max_body_bytes: node.body_limit(),
            body_timeout: node.config().edge.body_timeout,
        };
        match admit::admit(request, node, bounds, budget, node.client_places()).await {
            Ok(Admitted { request, place, room }) => {
                let (parts, body) = request.into_parts();
                let response = if console::route(parts.uri.path()) == Some(console::Route::Append) {
                    console::append(seat, node, http::Request::from_parts(parts, body)).await
                } else if seat.forwards(node, &parts) {
                    seat.forward(http::Request::from_parts(parts, body)).await
                } else if seat.annotates(&parts) {
                    let response = node.handle(http::Request::from_parts(parts, body)).await;
                    seat.annotate(node, response).await
                } else {
                    node.handle(http::Request::from_parts(parts, body)).await
                };
                Guarded { response, place, room }
            }
            Err(refused) => {
                let status = refused.status().as_u16();
                tracing::debug!(node = node.name(), %method, %uri, status, "refused at the edge");
                Guarded::answer(refused)
            }
        }
    };
    let status = guarded.response.status().as_u16();
    node.state().metrics.http.observe(uri.path(), method.as_str(), status, started.elapsed());
    guarded
}

/// `GET /metrics`: the node's metrics in Prometheus' text format. Answered by the host, never
/// queued behind the component's requests, so that a node at capacity still shows why.
fn metrics(node: &Node, method: &http::Method) -> Response {
    match *method {
        http::Method::GET | http::Method::HEAD => {
            crate::node::whole(200, crate::metrics::CONTENT_TYPE, node.metrics().into())
        }
        _ => {
            let mut refused = json_error(405, "/metrics answers GET only");
            refused
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static("GET"));
            refused
        }
    }
}

/// A response and what its request took: its place among the instances, its body's room in
/// the budget, then its connection's mark that a request is being served. All are held by the
/// body until it is sent whole.
struct Guarded {
    response: Response,
    place: Option<OwnedSemaphorePermit>,
    room: Room,
}

impl Guarded {
    /// An answer that took nothing.
    fn answer(response: Response) -> Self {
        Self { response, place: None, room: Room::default() }
    }

    fn into_response(self, serving: Serving) -> hyper::Response<GuardedBody> {
        let Self { response, place, room } = self;
        response.map(|body| GuardedBody { body, _place: place, _room: room, _serving: serving })
    }
}

struct GuardedBody {
    body: HyperOutgoingBody,
    _place: Option<OwnedSemaphorePermit>,
    _room: Room,
    _serving: Serving,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = <HyperOutgoingBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Answers a connection past the cap with `503`, and closes it.
async fn turn_away(mut stream: TcpStream, max: usize) {
    let body = format!(
        r#"{{"error":"this node has {max} connections open, its limit (the MAX_CONNECTIONS setting); try again shortly"}}"#
    );
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}
