//! Driving the real components through the real host, in process.
//!
//! Components come from the host's build script (the same checkout's `components/`). One
//! engine, one async runtime and one compiled copy of each component serve every test in a
//! test binary, as they would serve every node of a process.

#![allow(dead_code)] // Each test binary uses its own share of these helpers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use replog::cluster::{self, Running};
use replog::config::{NodeConfig, PeerUrl, Role};
use replog::node::{CompiledComponent, Node};
use replog::runtime::{Runtime, RuntimeConfig};
use replog::secret::ClusterSecret;
use serde_json::Value;

#[path = "../../../tests/support/variant.rs"]
pub mod variant;
#[path = "../../../tests/support/wait.rs"]
pub mod wait;

pub const MASTER: &str = "replog_master.wasm";
pub const SECONDARY: &str = "replog_secondary.wasm";
pub const RUNAWAY: &str = "replog_runaway.wasm";

static ASYNC: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
});

static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(RuntimeConfig::default()).expect("wasmtime runtime"));

static COMPILED: LazyLock<Mutex<HashMap<&'static str, CompiledComponent>>> =
    LazyLock::new(Mutex::default);

/// The engine every node of this test binary runs on.
pub fn runtime() -> &'static Runtime {
    &RUNTIME
}

/// Runs a test body on the shared async runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    ASYNC.block_on(future)
}

pub fn component_path(file: &str) -> PathBuf {
    Path::new(env!("REPLOG_BUILT_COMPONENTS")).join(file)
}

/// `file`, compiled once per test binary.
pub fn compiled(file: &'static str) -> CompiledComponent {
    let mut compiled = COMPILED.lock().unwrap();
    compiled
        .entry(file)
        .or_insert_with(|| {
            CompiledComponent::load(RUNTIME.engine(), &component_path(file))
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .clone()
}

/// The cluster secret every test node shares.
pub const SECRET: &str = "a cluster secret for the host tests";

pub fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET).unwrap()
}

/// A node configuration with test-friendly defaults and the test cluster's secret; adjust
/// fields as a test needs.
pub fn config(name: &str, role: Role) -> NodeConfig {
    NodeConfig {
        secret: Some(secret()),
        ..NodeConfig::new(name, role, "127.0.0.1:0".parse().unwrap(), PathBuf::new())
    }
}

/// A node running `file`, its replication started (a master recovers, then streams).
pub async fn node(config: NodeConfig, file: &'static str) -> Node {
    let mut config = config;
    config.component = component_path(file);
    let node = Node::new(&RUNTIME, config, compiled(file)).await.unwrap_or_else(|e| panic!("{e}"));
    node.start_replication();
    node
}

/// Waits until a master has finished recovering (open, or fenced).
pub async fn settled(master: &Node) {
    tokio::time::timeout(Duration::from_secs(20), master.settled()).await.unwrap_or_else(|_| {
        panic!(
            "{} did not finish recovering within 20 s: {:?}",
            master.name(),
            master.state().gate.mode()
        )
    });
}

pub async fn secondary_node(name: &str, delay: Duration) -> Node {
    let mut config = config(name, Role::Secondary);
    config.delay = delay;
    node(config, SECONDARY).await
}

/// A master whose secondaries are `urls`, recovered and taking writes.
pub async fn master_node(urls: &[String], replication_timeout: Duration) -> Node {
    let mut config = config("master", Role::Master);
    config.secondaries = urls.iter().map(|u| u.parse::<PeerUrl>().unwrap()).collect();
    config.replication.timeout = replication_timeout;
    let master = node(config, MASTER).await;
    settled(&master).await;
    master
}

/// Serves `nodes` on ephemeral loopback ports; returns them with their base URLs.
pub async fn serve(nodes: Vec<Node>) -> (Running, Vec<String>) {
    let running = cluster::serve_nodes(nodes).await.expect("serving test nodes");
    let urls = running
        .nodes()
        .iter()
        .map(|(_, addr): &(_, SocketAddr)| format!("http://{addr}"))
        .collect();
    (running, urls)
}

/// What a component answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub elapsed: Duration,
    pub headers: http::HeaderMap,
}

/// Calls `node`'s handler directly (no socket) with `body` and collects the whole answer.
pub async fn call(node: &Node, method: &str, path: &str, body: impl Into<Bytes>) -> Answer {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://node.test{path}"))
        .header("host", "node.test")
        .body(Full::new(body.into()))
        .unwrap();
    call_with(node, request).await
}

/// Calls `node`'s handler with a request signed as the master signs it, at `t` (Unix ms).
pub async fn call_signed_at(node: &Node, method: &str, path: &str, body: &str, t: u64) -> Answer {
    let head = format!("replog-v1\n{method}\n{path}\n{t}\n");
    let signature = secret().sign(head.as_bytes(), body.as_bytes());
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://node.test{path}"))
        .header("host", "node.test")
        .header("authorization", format!("Replog-HMAC-SHA256 t={t},sig={signature}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    call_with(node, request).await
}

/// Calls `node`'s handler with a request signed now, as its master would.
pub async fn call_signed(node: &Node, method: &str, path: &str, body: &str) -> Answer {
    call_signed_at(node, method, path, body, now_ms()).await
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

pub async fn call_with(node: &Node, request: http::Request<Full<Bytes>>) -> Answer {
    let started = Instant::now();
    let response = node.handle(request).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("response body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!("answer {status} is not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes))
    });
    Answer { status, json, elapsed: started.elapsed(), headers }
}

/// The messages of a node's log, read from the host state (not through the component).
pub fn log_of(node: &Node) -> Vec<String> {
    node.state().log.read(1, u32::MAX).into_iter().map(|e| e.msg).collect()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
