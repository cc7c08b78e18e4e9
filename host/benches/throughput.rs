//! Throughput and latency of the embedded cluster at 32 concurrent connections, next to a
//! native hyper hello-world and a trivial component served by the same host, for scale.
//!
//! `cargo bench -p replog --bench throughput`. Everything runs in this one process on
//! 127.0.0.1: the nodes on one async runtime, the load generator on another, as wrk would
//! beside a server. Each scenario runs for BENCH_SECONDS (default 5) after a 1 s warm-up, and
//! at most BENCH_MAX_REQUESTS (default 2,000,000) requests, over BENCH_CONNECTIONS (default 32)
//! keep-alive connections.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use replog::cluster::{self, Running};
use replog::config::{NodeConfig, Role};
use replog::node::{CompiledComponent, Node};
use replog::runtime::{Runtime, RuntimeConfig};
use replog::secret::ClusterSecret;

// The same allocator as the `replog` binary, so that the host is measured as it ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Load {
    connections: u64,
    duration: Duration,
    max_requests: u64,
}

/// What one scenario measured.
struct Figures {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    method: hyper::Method,
    path: &'static str,
    body: &'static str,
    expect: u16,
}

impl Target {
    fn read(addr: SocketAddr, path: &'static str) -> Self {
        Target { addr, method: hyper::Method::GET, path, body: "", expect: 200 }
    }

    /// A `POST /messages` that leaves the log out of the answer, as a busy client would.
    fn write(addr: SocketAddr, body: &'static str) -> Self {
        Target { addr, method: hyper::Method::POST, path: "/messages?log=false", body, expect: 201 }
    }
}

fn main() {
    let load = Load {
        connections: setting("BENCH_CONNECTIONS", 32),
        duration: Duration::from_secs(setting("BENCH_SECONDS", 5)),
        max_requests: setting("BENCH_MAX_REQUESTS", 2_000_000),
    };
    let servers = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .enable_all()
        .build()
        .unwrap();

    println!(
        "replog throughput: {} connections, {:?} per scenario, {} cores\n",
        load.connections,
        load.duration,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<48} {:>10} {:>9} {:>9} {:>7}", "scenario", "req/s", "p50 ms", "p99 ms", "errors");

    let hello = servers.block_on(native_hello_world());
    let get = Target::read;
    report("native hyper hello-world GET", &clients.block_on(measure(&load, get(hello, "/"))));

    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let trivial =
        servers.block_on(serve_one(&runtime, Role::Secondary, "replog_runaway.wasm", vec![]));
    let trivial_addr = trivial.nodes()[0].1;
    report(
        "host + trivial component GET /ok",
        &clients.block_on(measure(&load, get(trivial_addr, "/ok"))),
    );

    let mut cluster = servers.block_on(Cluster::start(&runtime, None));
    let master = cluster.master_addr;
    let post = |body| Target::write(master, body);
    const WRITES: [(u64, &str); 3] = [
        (1, r#"{"msg": "a message of about forty bytes, like a log line", "w": 1}"#),
        (2, r#"{"msg": "a message of about forty bytes, like a log line", "w": 2}"#),
        (3, r#"{"msg": "a message of about forty bytes, like a log line", "w": 3}"#),
    ];
    clients.block_on(async {
        for _ in 0..100 {
            one_request(&post(WRITES[2].1)).await;
        }
    });
    report(
        "replog GET /messages (100 messages, master)",
        &clients.block_on(measure(&load, get(master, "/messages"))),
    );
    let mut in_memory = Vec::new();
    for (w, body) in WRITES {
        let name = format!("replog POST /messages?log=false w={w}, in memory");
        let figures = clients.block_on(measure(&load, post(body)));
        report(&name, &figures);
        in_memory.push(figures.rate());
    }

    // The figures are only worth something if every acknowledged write is really everywhere:
    // once the streams have delivered what w=1 and w=2 did not wait for, all logs are equal.
    let master_log = servers.block_on(cluster.settled(Duration::from_secs(60)));
    println!(
        "\nchecked: both secondaries hold the master's {} messages, in order",
        master_log.len()
    );

    // Catch-up: secondary2 restarts empty while the log holds at least 100,000 messages.
    let messages = servers.block_on(cluster.catch_up(100_000));
    println!(
        "catch-up: secondary2 restarted empty and held all {} messages {:.2} s later \
         (detection at the heartbeat pace included)",
        messages.0,
        messages.1.as_secs_f64()
    );
    servers.block_on(cluster.shutdown());

    // The same writes with every node's log on disk (fsynced before each acknowledgement).
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    let _ = std::fs::remove_dir_all(&data);
    let cluster = servers.block_on(Cluster::start(&runtime, Some(data.join("cluster"))));
    let master = cluster.master_addr;
    let post = |body| Target::write(master, body);
    println!();
    for (i, (w, body)) in WRITES.into_iter().enumerate().filter(|(_, (w, _))| *w != 2) {
        let name = format!("replog POST /messages?log=false w={w}, durable");
        let figures = clients.block_on(measure(&load, post(body)));
        report(&name, &figures);
        println!(
            "{:<48} {:>9.0} %",
            "  durable / in memory",
            100.0 * figures.rate() / in_memory[i]
        );
    }
    let durable_log = servers.block_on(cluster.settled(Duration::from_secs(60)));
    println!("checked: both durable secondaries hold the master's {} messages", durable_log.len());
    servers.block_on(cluster.shutdown());

    // Restart: a node whose log holds 1,000,000 messages, from process start to answering.
    let (messages, took) = servers.block_on(restart_with(&data.join("restart"), 1_000_000));
    println!(
        "restart: a node holding {messages} messages answered /health {:.2} s after it was started",
        took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&data);

    println!(
        "\ntargets on this machine: GET /messages >= 15,000 req/s, POST w=3 >= 5,000 req/s, \
         catch-up on 100,000 messages < 2 s, durable w=3 >= 50 % of in memory, \
         restart with 1,000,000 messages < 2 s"
    );
    servers.block_on(trivial.shutdown());
}

/// Writes a log of `messages` into `dir` (in batches, as a secondary stores them), then starts
/// the `replog` binary on it and times how long it takes to answer.
async fn restart_with(dir: &Path, messages: u64) -> (u64, Duration) {
    support::inproc::write_log(dir, messages, |s| {
        format!("message number {s:07} of the restart test")
    })
    .await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let started = Instant::now();
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_replog"))
        .args(["serve", "--role", "secondary", "--bind", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .arg("--components")
        .arg(env!("REPLOG_BUILT_COMPONENTS"))
        .env("CLUSTER_SECRET", ClusterSecret::random_text())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let target = Target {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        method: hyper::Method::GET,
        path: "/health",
        body: "",
        expect: 200,
    };
    let count = loop {
        if let Ok(Ok(body)) =
            tokio::time::timeout(Duration::from_secs(1), try_request(&target)).await
        {
            let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
            break health["count"].as_u64().unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the node never answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = started.elapsed();
    let _ = node.kill();
    let _ = node.wait();
    (count, took)
}

fn report(name: &str, f: &Figures) {
    println!(
        "{name:<48} {:>10.0} {:>9.2} {:>9.2} {:>7}",
        f.rate(),
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.errors
    );
}

async fn native_hello_world() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"hello",
                    ))))
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

/// The cluster secret of this run's nodes.
static SECRET: std::sync::LazyLock<ClusterSecret> = std::sync::LazyLock::new(ClusterSecret::random);

fn node_config(name: &str, role: Role, file: &str, secondaries: Vec<String>) -> NodeConfig {
    let config = NodeConfig {
        secret: Some(SECRET.clone()),
        ..NodeConfig::new(
            name,
            role,
            "127.0.0.1:0".parse().unwrap(),
            Path::new(env!("REPLOG_BUILT_COMPONENTS")).join(file),
        )
    };
    if secondaries.is_empty() { config } else { config.with("SECONDARIES", secondaries.join(",")) }
}

async fn serve_one(runtime: &Runtime, role: Role, file: &str, secondaries: Vec<String>) -> Running {
    let config = node_config(file, role, file, secondaries);
    cluster::start(runtime, vec![config]).await.expect("start")
}

/// Master and two secondaries at 0 ms, each on its own port, as `replog cluster` runs them.
struct Cluster {
    runtime: Runtime,
    secondary: CompiledComponent,
    master: Running,
    master_addr: SocketAddr,
    secondaries: Vec<(Running, SocketAddr)>,
}

impl Cluster {
    /// With `data`, each node keeps its log in a folder of its own under it.
    async fn start(runtime: &Runtime, data: Option<PathBuf>) -> Self {
        let secondary = CompiledComponent::load(
            runtime.engine(),
            &Path::new(env!("REPLOG_BUILT_COMPONENTS")).join("replog_secondary.wasm"),
        )
        .unwrap();
        let mut secondaries = Vec::new();
        for i in 1..=2 {
            let dir = data.as_ref().map(|d| d.join(format!("secondary{i}")));
            let running =
                Self::serve_secondary(runtime, &secondary, i, "127.0.0.1:0".parse().unwrap(), dir)
                    .await;
            let addr = running.nodes()[0].1;
            secondaries.push((running, addr));
        }
        let urls = secondaries.iter().map(|(_, addr)| format!("http://{addr}")).collect();
        let mut master = node_config("master", Role::Master, "replog_master.wasm", urls);
        master.data_dir = data.map(|d| d.join("master"));
        let master = cluster::start(runtime, vec![master]).await.unwrap();
        master.nodes()[0].0.settled().await;
        let master_addr = master.nodes()[0].1;
        Self { runtime: runtime.clone(), secondary, master, master_addr, secondaries }
    }

    async fn serve_secondary(
        runtime: &Runtime,
        component: &CompiledComponent,
        i: usize,
        listen: SocketAddr,
        data_dir: Option<PathBuf>,
    ) -> Running {
        let name = format!("secondary{i}");
        let mut config = node_config(&name, Role::Secondary, "replog_secondary.wasm", vec![]);
        config.listen = listen;
        config.data_dir = data_dir;
        let node = Node::new(runtime, config, component.clone()).await.unwrap();
        cluster::serve_nodes(vec![node]).await.unwrap()
    }

    fn master(&self) -> &Node {
        &self.master.nodes()[0].0
    }

    fn secondary(&self, i: usize) -> &Node {
        &self.secondaries[i].0.nodes()[0].0
    }

    /// Waits until both secondaries hold exactly the master's log, and returns it.
    async fn settled(&self, within: Duration) -> Vec<replog::state::Entry> {
        let deadline = Instant::now() + within;
        loop {
            let master = self.master().state().log().read(1, u32::MAX);
            let equal = (0..2).all(|i| self.secondary(i).state().log().read(1, u32::MAX) == master);
            if equal {
                return master;
            }
            assert!(Instant::now() < deadline, "the secondaries did not settle within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fills the log to at least `messages`, restarts secondary2 empty, and times its catch-up.
    async fn catch_up(&mut self, messages: u64) -> (u64, Duration) {
        let log = self.master().state().log();
        let epoch = log.epoch();
        for i in log.len()..messages {
            log.append(format!("catch-up filler message number {i:06}"), epoch, None)
                .await
                .unwrap();
        }
        self.settled(Duration::from_secs(60)).await;
        let (running, addr) = self.secondaries.pop().unwrap();
        running.shutdown().await;
        let restarted = Self::serve_secondary(&self.runtime, &self.secondary, 2, addr, None).await;
        let started = Instant::now();
        self.secondaries.push((restarted, addr));
        let held = self.settled(Duration::from_secs(60)).await.len() as u64;
        (held, started.elapsed())
    }

    async fn shutdown(self) {
        self.master.shutdown().await;
        for (running, _) in self.secondaries {
            running.shutdown().await;
        }
    }
}

async fn try_request(target: &Target) -> Result<Bytes, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request(target)).await?;
    Ok(response.into_body().collect().await?.to_bytes())
}

async fn one_request(target: &Target) {
    let stream = tokio::net::TcpStream::connect(target.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request(target)).await.unwrap();
    assert_eq!(response.status().as_u16(), target.expect);
    response.into_body().collect().await.unwrap();
}

fn request(target: &Target) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method(target.method.clone())
        .uri(target.path)
        .header("host", target.addr.to_string())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(target.body.as_bytes())))
        .unwrap()
}

/// Drives `target` from `load.connections` keep-alive connections: a 1 s warm-up, then the
/// measured run.
async fn measure(load: &Load, target: Target) -> Figures {
    run(load.connections, Duration::from_secs(1), u64::MAX, &target).await;
    let started = Instant::now();
    let per_connection = load.max_requests.div_ceil(load.connections);
    let (mut latencies, errors) =
        run(load.connections, load.duration, per_connection, &target).await;
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures { requests: latencies.len() as u64, errors, elapsed, p50: at(0.50), p99: at(0.99) }
}

/// Returns the latency of every successful request and the number of failed ones.
async fn run(
    connections: u64,
    duration: Duration,
    per_connection: u64,
    target: &Target,
) -> (Vec<Duration>, u64) {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let stream = tokio::net::TcpStream::connect(target.addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
                tokio::spawn(conn);
                while Instant::now() < deadline && (latencies.len() as u64) < per_connection {
                    let sent = Instant::now();
                    let ok = match sender.send_request(request(&target)).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            response.into_body().collect().await.is_ok() && status == target.expect
                        }
                        Err(_) => false,
                    };
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                        if sender.ready().await.is_err() {
                            break;
                        }
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, failed) = task.await.unwrap();
        all.extend(latencies);
        errors += failed;
    }
    (all, errors)
}
