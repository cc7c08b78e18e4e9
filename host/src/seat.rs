//! The node a port serves. A node by configuration sits there for good; a node of an elected
//! cluster changes role by handing its log to a successor (`Node::succeed`) that takes its
//! seat, while calls that started on the one before finish on it. An elected node's seat also
//! forwards writes to whichever node is master (`Forward`), so that clients need not know it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Role;
use crate::node::{Node, Response, json_error};

/// The header naming the master that served a forwarded write: `NAME URL`.
pub const MASTER_HEADER: &str = "x-replog-master";

/// The header a forwarded write carries, so that a node that is not master after all (its
/// view of the election behind) answers it instead of forwarding it again.
const FORWARDED_HEADER: &str = "x-replog-forwarded";

/// Bound on a forwarded write: the master's own bound on a write (its replication timeout) is
/// its business; this only keeps a lost master from holding the client for good.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(120);

/// The node a port serves now.
pub struct Seat {
    node: RwLock<Arc<Node>>,
    forward: Option<Forward>,
}

/// Where an elected node sends the writes it cannot take: the master the election names.
struct Forward {
    master: RwLock<Option<(String, String)>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Seat {
    /// A seat with `node` in it, for good.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node: RwLock::new(node), forward: None }
    }

    /// A seat of an elected cluster: while its node is not master, writes (`POST /messages`)
    /// go to the master (`follow_master`), or get `503` while there is none.
    pub fn elected(node: Arc<Node>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let forward = Forward { master: RwLock::new(None), client };
        Self { node: RwLock::new(node), forward: Some(forward) }
    }

    /// The node that serves new requests.
    pub fn node(&self) -> Arc<Node> {
        self.node.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Puts `node` in the seat; returns the one it replaces.
    pub fn replace(&self, node: Arc<Node>) -> Arc<Node> {
        let mut seated = self.node.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::replace(&mut *seated, node)
    }

    /// The master writes go to: its name and base URL (none: no master now).
    pub fn follow_master(&self, master: Option<(String, String)>) {
        if let Some(forward) = &self.forward {
            *forward.master.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = master;
        }
    }

    /// Whether `request` to `node` is a write this seat forwards instead of serving.
    pub(crate) fn forwards(&self, node: &Node, request: &http::request::Parts) -> bool {
        self.forward.is_some()
            && node.role() != Role::Master
            && request.method == http::Method::POST
            && request.uri.path() == "/messages"
            && !request.headers.contains_key(FORWARDED_HEADER)
    }

    /// Sends a write to the master and returns its answer, with `MASTER_HEADER` naming it;
    /// `503` with `Retry-After` when there is no master, or it cannot be reached.
    pub(crate) async fn forward(&self, request: http::Request<Bytes>) -> Response {
        let Some(forward) = &self.forward else {
            return json_error(500, "this node forwards nothing");
        };
        let master = forward.master.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let Some((name, url)) = master else {
            return retry_later("not written: no master now, one is being elected".to_owned());
        };
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/messages", |p| p.as_str());
        let Ok(uri) = format!("{url}{path}").parse::<http::Uri>() else {
            return retry_later(format!("not written: the master's URL {url} is not usable"));
        };
        parts.uri = uri;
        parts.headers.remove(http::header::HOST);
        parts.headers.insert(FORWARDED_HEADER, http::HeaderValue::from_static("1"));
        let sent = forward.client.request(http::Request::from_parts(parts, Full::new(body)));
        let answer = match tokio::time::timeout(FORWARD_TIMEOUT, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) if error.is_connect() => {
                return retry_later(format!("not written: the master {name} ({url}): {error}"));
            }
            Ok(Err(error)) => {
                return retry_later(format!("the master {name} ({url}): {error}{MAYBE}"));
            }
            Err(_) => {
                return retry_later(format!("the master {name} ({url}) did not answer{MAYBE}"));
            }
        };
        let (mut parts, body) = answer.into_parts();
        for hop in [http::header::CONNECTION, http::header::TRANSFER_ENCODING] {
            parts.headers.remove(hop);
        }
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return retry_later(format!("the master {name} ({url}) broke off its answer{MAYBE}"));
        };
        if let Ok(value) = http::HeaderValue::try_from(format!("{name} {url}")) {
            parts.headers.insert(MASTER_HEADER, value);
        }
        let body = Full::new(body).map_err(|never| match never {}).boxed_unsync();
        hyper::Response::from_parts(parts, body)
    }
}

/// Said of a write the master may have taken before its answer was lost.
const MAYBE: &str =
    ": the write may have been taken; retry with the same id, which is answered once for it";

/// `503` with `Retry-After`, saying why.
fn retry_later(why: String) -> Response {
    let mut response = json_error(503, &format!("{why}; retry shortly"));
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
}
