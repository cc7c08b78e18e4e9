//! Nodes in this process, through the library: the real components on the real host, called
//! directly (no socket) or served on loopback ports, alone or as the embedded cluster that
//! `replog cluster` runs.
//!
//! Components come from the host's build script (the same checkout's `components/`). One
//! engine, one async runtime and one compiled copy of each component serve every test in a
//! test binary, as they would serve every node of a process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use replog::cluster::{self, Running};
use replog::config::{NodeConfig, Role};
use replog::node::{CompiledComponent, Node};
use replog::runtime::{Runtime, RuntimeConfig};
use replog::secret::ClusterSecret;
use serde_json::Value;

use super::SECRET;

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

pub fn secret() -> ClusterSecret {
    ClusterSecret::new(SECRET).unwrap()
}

/// A node configuration with the defaults and the test cluster's secret, on an ephemeral
/// loopback port; adjust it as a test needs (`.with(SETTING, value)` for the component's).
pub fn config(name: &str, role: Role) -> NodeConfig {
    config_at(name, role, "127.0.0.1:0".parse().unwrap())
}

fn config_at(name: &str, role: Role, listen: SocketAddr) -> NodeConfig {
    NodeConfig { secret: Some(secret()), ..NodeConfig::new(name, role, listen, PathBuf::new()) }
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
            master.state().sequencer().unwrap().mode()
        )
    });
}

/// A secondary that waits `delay` before it applies what the master sends.
pub async fn secondary_node(name: &str, delay: Duration) -> Node {
    let config = config(name, Role::Secondary).with("DELAY_MS", delay.as_millis());
    node(config, SECONDARY).await
}

/// A master whose secondaries are `urls`, recovered and taking writes.
pub async fn master_node(urls: &[String], replication_timeout: Duration) -> Node {
    let config = config("master", Role::Master)
        .with("SECONDARIES", urls.join(","))
        .with("REPLICATION_TIMEOUT_MS", replication_timeout.as_millis());
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
        .body(body.into())
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
        .body(Bytes::from(body.to_owned()))
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

pub async fn call_with(node: &Node, request: http::Request<Bytes>) -> Answer {
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
    node.state().log().read(1, u32::MAX).into_iter().map(|e| e.msg).collect()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A loopback port nothing listens on: free now, below the ephemeral range that servers bound
/// to port 0 are given, and never handed out again in this test binary (`free_ports`). A port
/// bound to 0 and released could be given to another test's server the next moment (a test
/// once found its "closed" port answering).
pub fn closed_port() -> u16 {
    super::free_ports(1)
}

/// A secondary of an embedded cluster: how long it waits before it applies what it is sent,
/// and the share of requests it fails on purpose.
pub struct Secondary {
    pub delay: Duration,
    pub fault_rate: f64,
}

impl Secondary {
    pub fn new(delay_ms: u64) -> Self {
        Self { delay: Duration::from_millis(delay_ms), fault_rate: 0.0 }
    }
}

/// The embedded cluster, with the means to stop a secondary and start it again (empty, as
/// after a crash).
pub struct Cluster {
    pub master_url: String,
    pub urls: Vec<String>,
    master: Option<Running>,
    secondaries: Vec<Option<Running>>,
    configs: Vec<NodeConfig>,
}

impl Cluster {
    /// A master and `secondaries` on free ports; those listed in `down` are not started. The
    /// master's settings (`REPLICATION_TIMEOUT_MS`, ...) are `master_settings`; this sets its
    /// `SECONDARIES`.
    pub async fn start(
        secondaries: Vec<Secondary>,
        master_settings: &[(&str, &str)],
        down: &[usize],
    ) -> Self {
        let base = super::free_ports(secondaries.len() as u16 + 1);
        let configs: Vec<NodeConfig> = secondaries
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let listen = SocketAddr::from(([127, 0, 0, 1], base + 1 + i as u16));
                NodeConfig {
                    component: component_path(SECONDARY),
                    ..config_at(&format!("secondary{}", i + 1), Role::Secondary, listen)
                }
                .with("DELAY_MS", s.delay.as_millis())
                .with("FAULT_RATE", s.fault_rate)
            })
            .collect();
        let urls: Vec<String> = configs.iter().map(|c| format!("http://{}", c.listen)).collect();
        let mut cluster = Self {
            master_url: format!("http://127.0.0.1:{base}"),
            urls: urls.clone(),
            master: None,
            secondaries: configs.iter().map(|_| None).collect(),
            configs,
        };
        for i in 0..cluster.configs.len() {
            if !down.contains(&i) {
                cluster.start_secondary(i).await;
            }
        }
        let listen = SocketAddr::from(([127, 0, 0, 1], base));
        let mut master = NodeConfig {
            component: component_path(MASTER),
            ..config_at("master", Role::Master, listen)
        }
        .with("SECONDARIES", urls.join(","));
        for (name, value) in master_settings {
            master = master.with(name, value);
        }
        let node = Node::new(&RUNTIME, master, compiled(MASTER)).await.unwrap();
        cluster.master = Some(cluster::serve_nodes(vec![node]).await.unwrap());
        cluster.settled().await;
        cluster
    }

    /// Waits until the master has recovered (it may still lack a majority to write).
    pub async fn settled(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.master().settled())
            .await
            .unwrap_or_else(|_| {
                panic!("recovery: {:?}", self.master().state().sequencer().unwrap().mode())
            });
    }

    /// Starts secondary `i` (0-based), with an empty log.
    pub async fn start_secondary(&mut self, i: usize) {
        assert!(self.secondaries[i].is_none(), "secondary {i} is running");
        let node = Node::new(&RUNTIME, self.configs[i].clone(), compiled(SECONDARY)).await.unwrap();
        self.secondaries[i] = Some(cluster::serve_nodes(vec![node]).await.unwrap());
    }

    /// Stops secondary `i`: it no longer listens, and its log is gone.
    pub async fn stop_secondary(&mut self, i: usize) {
        let running = self.secondaries[i].take().expect("secondary is running");
        running.shutdown().await;
    }

    pub fn master(&self) -> &Node {
        self.master.as_ref().unwrap().nodes()[0].0.as_ref()
    }

    /// Secondary `i`'s node, if it runs.
    pub fn secondary(&self, i: usize) -> Option<&Node> {
        self.secondaries[i].as_ref().map(|r| r.nodes()[0].0.as_ref())
    }

    pub async fn shutdown(mut self) {
        if let Some(master) = self.master.take() {
            master.shutdown().await;
        }
        for running in self.secondaries.iter_mut().filter_map(Option::take) {
            running.shutdown().await;
        }
    }
}

/// Writes a log of `count` messages (`message(seq)`, epoch 1) into the data directory `dir`,
/// through the library, in batches as a secondary stores them: a node started on `dir` holds
/// it. For tests and benchmarks of long logs, which would take minutes to write over HTTP.
pub async fn write_log(dir: &Path, count: u64, message: impl Fn(u64) -> String) {
    let (log, _) =
        replog::state::Log::open(&dir.join("log"), "written", replog::state::DEFAULT_KEY_WINDOW)
            .unwrap();
    let mut seq = 1;
    while seq <= count {
        let entries: Vec<_> = (seq..(seq + 10_000).min(count + 1))
            .map(|s| replog::state::Entry { seq: s, epoch: 1, key: None, msg: message(s) })
            .collect();
        seq += entries.len() as u64;
        let change = replog::state::Change {
            version: log.version(),
            epoch: 1,
            entries,
            ..Default::default()
        };
        log.write(change).await.unwrap();
    }
}
