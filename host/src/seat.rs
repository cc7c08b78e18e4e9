//! The node a port serves. A node by configuration sits there for good; a node of an elected
//! cluster changes role by handing its log to a successor (`Node::succeed`) that takes its
//! seat, while calls that started on the one before finish on it. An elected node's seat also
//! forwards writes to whichever node is master (`Forward`), so that clients need not know it.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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

/// The master a node that is not one knows: where an elected node sends the writes it cannot
/// take (the master the election names) and what it shows of the election; for a secondary by
/// configuration, the master it was told of (`MASTER_URL`), which only the console writes
/// through (such a secondary answers writes to `/messages` itself, `405`, as ever).
struct Forward {
    master: RwLock<Option<Master>>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// `None` for a secondary by configuration.
    election: Option<ElectionAbout>,
}

/// The master an elected node follows (or is), or the one a secondary by configuration was
/// told of (its epoch then 0: that master's own `/health` has it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Master {
    /// Its member name.
    pub name: String,
    /// Its base URL.
    pub url: String,
    /// Its epoch: its leader key's create revision.
    pub epoch: u64,
}

/// What an elected node's `GET /health` says of its cluster besides the master: its name in
/// etcd, this member's name, and every member.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ElectionAbout {
    /// The cluster's prefix in etcd.
    pub cluster: String,
    /// This member's name.
    pub member: String,
    /// Every member: name and URL.
    pub members: Vec<(String, String)>,
}

impl Seat {
    /// A seat with `node` in it, for good; a secondary with a `master_url` knows its master.
    pub fn new(node: Arc<Node>) -> Self {
        let forward = node.config().master_url.clone().map(|url| {
            let master = Master { name: "master".to_owned(), url, epoch: 0 };
            Forward { master: RwLock::new(Some(master)), client: http_client(), election: None }
        });
        Self { node: RwLock::new(node), forward }
    }

    /// A seat of an elected cluster: while its node is not master, writes (`POST /messages`)
    /// go to the master (`follow_master`), or get `503` while there is none.
    pub fn elected(node: Arc<Node>, about: ElectionAbout) -> Self {
        let forward =
            Forward { master: RwLock::new(None), client: http_client(), election: Some(about) };
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

    /// The master writes go to (none: no master now).
    pub fn follow_master(&self, master: Option<Master>) {
        if let Some(forward) = &self.forward {
            *forward.master.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = master;
        }
    }

    /// The master this node follows, when it is not master and knows one: the election's, or
    /// the one it was configured with.
    pub(crate) fn master(&self) -> Option<Master> {
        let forward = self.forward.as_ref()?;
        forward.master.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// What this node knows of its election, if it is elected.
    pub(crate) fn election(&self) -> Option<&ElectionAbout> {
        self.forward.as_ref()?.election.as_ref()
    }

    /// Whether `request` to `node` is a write this seat forwards instead of serving.
    pub(crate) fn forwards(&self, node: &Node, request: &http::request::Parts) -> bool {
        self.election().is_some()
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
        let Some(Master { name, url, .. }) = master else {
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
        hyper::Response::from_parts(parts, whole_body(body))
    }
}

impl Seat {
    /// Whether `request` asks for the node's health, which an elected seat adds to.
    pub(crate) fn annotates(&self, request: &http::request::Parts) -> bool {
        self.election().is_some()
            && request.method == http::Method::GET
            && request.uri.path() == "/health"
    }

    /// `response`, the node's `GET /health`, with an `election` object: the cluster, this
    /// member, the members, the master it follows (or is) with its epoch, and, on the master,
    /// how long its lease lets it act. Any other answer passes as it is.
    pub(crate) async fn annotate(&self, node: &Node, response: Response) -> Response {
        let Some(forward) = &self.forward else { return response };
        let Some(about) = &forward.election else { return response };
        let (parts, body) = response.into_parts();
        let json = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
        let Ok(bytes) = body.collect().await.map(|b| b.to_bytes()) else {
            return json_error(500, "the node's health could not be read");
        };
        let mut health: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(health @ serde_json::Value::Object(_)) if json => health,
            _ => return hyper::Response::from_parts(parts, whole_body(bytes)),
        };
        let master = forward.master.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let lease_ms_left = node.state().sequencer().and_then(|s| s.lease_left(Instant::now()));
        health["election"] = serde_json::json!({
            "cluster": about.cluster,
            "member": about.member,
            "master": master,
            "lease_ms_left": lease_ms_left.map(|left| left.as_millis() as u64),
            "members": about.members.iter()
                .map(|(name, url)| serde_json::json!({ "name": name, "url": url }))
                .collect::<Vec<_>>(),
        });
        let mut parts = parts;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        hyper::Response::from_parts(parts, whole_body(health.to_string().into()))
    }
}

/// The client writes are forwarded with.
fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `bytes` as a response body in one piece.
fn whole_body(bytes: Bytes) -> crate::node::ResponseBody {
    Full::new(bytes).map_err(|never| match never {}).boxed_unsync()
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
