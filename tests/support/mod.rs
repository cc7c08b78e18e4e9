//! Starting `replog` as a child process on free loopback ports, and talking to it over HTTP.

#![allow(dead_code)] // Each test binary uses its own share of these helpers.

use std::hash::{BuildHasher, Hasher};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{self, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub mod nodes;
pub mod variant;
pub mod wait;

pub const REPLOG: &str = env!("CARGO_BIN_EXE_replog");

/// The repository root: `replog` is run from there, as the README does.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The cluster secret every node a test starts shares (tests of the refusal remove it).
pub const SECRET: &str = "the cluster secret of the whole-system tests";

/// Settings a developer's shell might hold that would change what a test starts.
const INHERITED: [&str; 26] = [
    "PORT",
    "SECONDARIES",
    "DELAY_MS",
    "MASTER_PORT",
    "NUM_SECONDARIES",
    "SECONDARY_DELAYS",
    "BIND",
    "REPLOG_COMPONENTS",
    "REPLOG_COMPONENT",
    "REPLICATION_TIMEOUT_MS",
    "HEARTBEAT_MS",
    "SUSPECT_AFTER",
    "UNHEALTHY_AFTER",
    "PEER_TIMEOUT_MS",
    "FAULT_RATE",
    "MAX_BODY_BYTES",
    "CPU_BUDGET_MS",
    "MEMORY_LIMIT_MB",
    "DATA_DIR",
    "IN_MEMORY",
    "CLUSTER_SECRET",
    "CLUSTER_SECRET_FILE",
    "RUN_AS",
    "FORCE_RECOVERY",
    "MAX_INSTANCES",
    "RUST_LOG",
];

/// `replog` with a clean environment, run from the repository root, keeping its logs in
/// memory (tests of durability give it a data directory of their own) and holding the tests'
/// cluster secret.
pub fn replog() -> Command {
    let mut command = Command::new(REPLOG);
    command.current_dir(repo_root());
    for name in INHERITED {
        command.env_remove(name);
    }
    command.env("IN_MEMORY", "true").env("CLUSTER_SECRET", SECRET);
    command
}

/// `count` consecutive loopback ports that are free right now, below Linux's ephemeral range
/// (32768 and up by default) so that no outgoing connection takes one in the meantime.
pub fn free_ports(count: u16) -> u16 {
    for _ in 0..200 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let base = 10_000 + (random % 22_000) as u16;
        let listeners: Vec<_> =
            (0..count).map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if listeners.len() == usize::from(count) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

/// A `replog` process, killed when dropped (also when a test fails).
pub struct Process {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Process {
    /// Starts `command` with its output captured in a file (shown if the test fails).
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let log = std::env::temp_dir().join(format!(
            "replog-test-{}-{name}-{}.log",
            std::process::id(),
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REPLOG}: {e}"));
        Self { child, log, name: name.to_owned() }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `url` answers 200, failing with the process output if it does not.
    pub fn wait_healthy(&mut self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before serving:\n{}", self.name, self.output());
            }
            if blocking_get(url).is_some_and(|(status, _)| status == 200) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} did not answer {url} within 30 s:\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Process {
    /// Waits until the master at `base` takes writes (it has recovered and has a majority).
    pub fn wait_writable(&mut self, base: &str) {
        let url = format!("{base}/health");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before taking writes:\n{}", self.name, self.output());
            }
            let health = blocking_get(&url).filter(|(status, _)| *status == 200);
            let writable = health.and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
            if writable.is_some_and(|h| h["writable"] == true) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} did not take writes within 30 s:\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, at once.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits until something accepts TCP connections on `port`.
    pub fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before listening:\n{}", self.name, self.output());
            }
            assert!(Instant::now() < deadline, "{} never listened:\n{}", self.name, self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- output of {} ---\n{}", self.name, self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An embedded cluster (`replog cluster`) on free ports.
pub struct Cluster {
    pub process: Process,
    pub master: String,
    pub secondaries: Vec<String>,
}

impl Cluster {
    /// One secondary per delay, in milliseconds.
    pub fn start(delays: &[u64], extra: &[&str]) -> Self {
        let count = delays.len() as u16;
        let base = free_ports(count + 1);
        let delays: Vec<String> = delays.iter().map(u64::to_string).collect();
        let mut command = replog();
        command.args(["cluster", "--master-port", &base.to_string()]);
        command.args(["--num-secondaries", &count.to_string()]);
        command.args(["--secondary-delays", &delays.join(",")]);
        command.args(extra);
        let mut process = Process::spawn("cluster", command);
        let master = format!("http://127.0.0.1:{base}");
        let secondaries: Vec<String> =
            (1..=count).map(|i| format!("http://127.0.0.1:{}", base + i)).collect();
        for url in &secondaries {
            process.wait_healthy(&format!("{url}/health"));
        }
        process.wait_writable(&master);
        Self { process, master, secondaries }
    }

    pub fn all(&self) -> Vec<&str> {
        std::iter::once(self.master.as_str())
            .chain(self.secondaries.iter().map(String::as_str))
            .collect()
    }
}

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
fn blocking(method: &str, url: &str, body: &str) -> Option<(u16, String)> {
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
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
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

/// The embedded cluster in this process, through the library: what `replog cluster` runs,
/// with the means to stop a secondary and start it again (empty, as after a crash).
pub mod embedded {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::{LazyLock, Mutex};
    use std::time::Duration;

    use replog::cluster::{self, Running};
    use replog::config::{NodeConfig, Replication, Role};
    use replog::node::{CompiledComponent, Node};
    use replog::runtime::{Runtime, RuntimeConfig};
    use replog::secret::ClusterSecret;

    static RUNTIME: LazyLock<Runtime> =
        LazyLock::new(|| Runtime::new(RuntimeConfig::default()).expect("wasmtime runtime"));
    static COMPILED: LazyLock<Mutex<HashMap<&'static str, CompiledComponent>>> =
        LazyLock::new(Mutex::default);

    fn compiled(file: &'static str) -> CompiledComponent {
        let dir = Path::new(env!("REPLOG_BUILT_COMPONENTS"));
        COMPILED
            .lock()
            .unwrap()
            .entry(file)
            .or_insert_with(|| CompiledComponent::load(RUNTIME.engine(), &dir.join(file)).unwrap())
            .clone()
    }

    pub struct Secondary {
        pub delay: Duration,
        pub fault_rate: f64,
    }

    impl Secondary {
        pub fn new(delay_ms: u64) -> Self {
            Self { delay: Duration::from_millis(delay_ms), fault_rate: 0.0 }
        }
    }

    pub struct Cluster {
        pub master_url: String,
        pub urls: Vec<String>,
        master: Option<Running>,
        secondaries: Vec<Option<Running>>,
        configs: Vec<NodeConfig>,
    }

    fn config(name: String, role: Role, port: u16, file: &str) -> NodeConfig {
        NodeConfig {
            secret: Some(ClusterSecret::new(super::SECRET).unwrap()),
            ..NodeConfig::new(
                name,
                role,
                format!("127.0.0.1:{port}").parse().unwrap(),
                Path::new(env!("REPLOG_BUILT_COMPONENTS")).join(file),
            )
        }
    }

    impl Cluster {
        /// A master and `secondaries` on free ports; those listed in `down` are not started.
        pub async fn start(
            secondaries: Vec<Secondary>,
            replication: Replication,
            down: &[usize],
        ) -> Self {
            let base = super::free_ports(secondaries.len() as u16 + 1);
            let configs: Vec<NodeConfig> = secondaries
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut c = config(
                        format!("secondary{}", i + 1),
                        Role::Secondary,
                        base + 1 + i as u16,
                        "replog_secondary.wasm",
                    );
                    c.delay = s.delay;
                    c.fault_rate = s.fault_rate;
                    c
                })
                .collect();
            let urls: Vec<String> =
                configs.iter().map(|c| format!("http://{}", c.listen)).collect();
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
            let mut master = config("master".into(), Role::Master, base, "replog_master.wasm");
            master.secondaries = urls.iter().map(|u| u.parse().unwrap()).collect();
            master.replication = replication;
            let node = Node::new(&RUNTIME, master, compiled("replog_master.wasm")).await.unwrap();
            cluster.master = Some(cluster::serve_nodes(vec![node]).await.unwrap());
            cluster.settled().await;
            cluster
        }

        /// Waits until the master has recovered (it may still lack a majority to write).
        pub async fn settled(&self) {
            tokio::time::timeout(Duration::from_secs(20), self.master().settled())
                .await
                .unwrap_or_else(|_| panic!("recovery: {:?}", self.master().state().gate.mode()));
        }

        /// Starts secondary `i` (0-based), with an empty log.
        pub async fn start_secondary(&mut self, i: usize) {
            assert!(self.secondaries[i].is_none(), "secondary {i} is running");
            let node =
                Node::new(&RUNTIME, self.configs[i].clone(), compiled("replog_secondary.wasm"))
                    .await
                    .unwrap();
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
}
