//! The `replog` command line: flags and environment variables into typed configuration.
//!
//! Environment variable names are the original project's (`PORT`, `SECONDARIES`, `DELAY_MS`,
//! `MASTER_PORT`, `NUM_SECONDARIES`, `SECONDARY_DELAYS`); every one has a flag of the same
//! meaning, and a flag wins over the variable.

use std::io::IsTerminal as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

use crate::cluster;
use crate::components;
use crate::compose;
use crate::config::{self, Edge, Limits, NodeConfig, PeerUrl, Replication, Role, Topology};
use crate::privileges::RunAs;
use crate::reload::Reloader;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::secret::ClusterSecret;

#[derive(Debug, Parser)]
#[command(
    name = "replog",
    version,
    about = "A replicated log whose node logic runs as WebAssembly components on a wasmtime host.",
    long_about = "A replicated log whose node logic runs as WebAssembly components on a wasmtime \
        host.\n\nA master takes writes (POST /messages) and replicates them to its secondaries \
        before answering; every node serves GET /messages and GET /health. Logs go to stdout; \
        RUST_LOG (e.g. RUST_LOG=debug) sets how much."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a master and N secondaries in this one process (master on --master-port,
    /// secondaries on the ports after it).
    Cluster(ClusterArgs),
    /// Run one node: the entry point of a container, or of separate processes on one machine.
    Serve(ServeArgs),
    /// Run a WASI command component, such as the echo server and client of iteration 0:
    /// `replog run echo-server.wasm -- 9009`.
    Run(RunArgs),
    /// Write docker-compose.yml for a master and N secondaries, one container each
    /// (master on MASTER_PORT, secondaries on the ports after it).
    Compose(ComposeArgs),
    /// GET a URL and exit 0 if it answers 200: the containers' health check, since the image
    /// holds nothing but this binary.
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
struct ClusterArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Address every node listens on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Directory holding replog_master.wasm and replog_secondary.wasm [default: the build
    /// output, target/components/wasm32-wasip2/release].
    #[arg(long, env = "REPLOG_COMPONENTS", value_name = "DIR")]
    components: Option<PathBuf>,
    /// Where the nodes keep their logs: one folder per node (master, secondary1, ...) in it.
    #[arg(long, env = "DATA_DIR", default_value = "data", value_name = "DIR")]
    data_dir: PathBuf,
    /// Keep the logs in memory only: they are lost when the cluster stops.
    #[arg(long, env = "IN_MEMORY", conflicts_with = "data_dir")]
    in_memory: bool,
    #[command(flatten)]
    secret: SecretArgs,
    #[command(flatten)]
    node: NodeArgs,
}

/// How nodes prove to each other that they belong to the cluster.
#[derive(Debug, Args)]
#[command(after_help = "The cluster secret can also be given as its value in the environment \
    variable CLUSTER_SECRET (never as a flag, so that it does not show in the process list). \
    Every node of a cluster needs the same one; at least 16 characters.")]
struct SecretArgs {
    /// File holding the cluster secret (the Docker and Kubernetes secret form); surrounding
    /// whitespace is ignored.
    #[arg(long, env = "CLUSTER_SECRET_FILE", value_name = "PATH")]
    cluster_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret from CLUSTER_SECRET or the file, if either is given.
    fn secret(&self) -> anyhow::Result<Option<ClusterSecret>> {
        let value = std::env::var_os("CLUSTER_SECRET");
        match (value, &self.cluster_secret_file) {
            (Some(_), Some(_)) => {
                bail!("both CLUSTER_SECRET and CLUSTER_SECRET_FILE are set: give one of them")
            }
            (Some(value), None) => {
                let value = value
                    .into_string()
                    .map_err(|_| anyhow::anyhow!("CLUSTER_SECRET is not valid UTF-8"))?;
                Ok(Some(ClusterSecret::new(&value).context("CLUSTER_SECRET")?))
            }
            (None, Some(path)) => Ok(Some(ClusterSecret::from_file(path)?)),
            (None, None) => Ok(None),
        }
    }
}

/// The cluster's shape, as `replog cluster` runs it and `replog compose` writes it.
#[derive(Debug, Args)]
struct TopologyArgs {
    /// Port of the master; secondary i listens on MASTER_PORT + i.
    #[arg(long, env = "MASTER_PORT", default_value_t = 8000)]
    master_port: u16,
    /// Number of secondaries.
    #[arg(long, env = "NUM_SECONDARIES", default_value_t = 2, allow_negative_numbers = true)]
    num_secondaries: i64,
    /// Comma-separated delay of each secondary in milliseconds, one per secondary
    /// [default: 0,1500, then 0 for any further secondary].
    #[arg(long, env = "SECONDARY_DELAYS", value_name = "MS,MS,...")]
    secondary_delays: Option<String>,
}

impl TopologyArgs {
    fn topology(&self) -> Result<Topology, config::ConfigError> {
        Topology::new(self.master_port, self.num_secondaries, self.secondary_delays.as_deref())
    }
}

#[derive(Debug, Args)]
struct ComposeArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Where to write the Compose file (`-` for standard output). The cluster secret it refers
    /// to is made once (--secret-file, mode 0600) and never replaced. Nothing is written when
    /// a setting is wrong.
    #[arg(long, short, default_value = "docker-compose.yml", value_name = "FILE")]
    output: PathBuf,
    /// Image the services run.
    #[arg(long, default_value = compose::DEFAULT_IMAGE)]
    image: String,
    /// Folder mounted read-only as /components in every container (relative to the Compose
    /// file, or absolute). A new .wasm in it is swapped in by the running containers.
    #[arg(long, default_value = compose::DEFAULT_COMPONENTS_DIR, value_name = "DIR")]
    components_dir: String,
    /// The cluster secret's file, made once if it is not there (relative to the Compose file,
    /// or absolute).
    #[arg(long, default_value = compose::DEFAULT_SECRET_FILE, value_name = "FILE")]
    secret_file: String,
    /// The master's REPLICATION_TIMEOUT_MS (how long a write waits for its write concern), if
    /// not the default of 60 s.
    #[arg(long, value_name = "MS")]
    replication_timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The URL to GET, e.g. http://127.0.0.1:8000/health.
    url: String,
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    timeout_ms: u64,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Which node this is.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// Port to listen on [default: 8000 for the master, 8001 for a secondary].
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The master's secondaries: comma-separated base URLs, e.g.
    /// http://secondary1:8001,http://secondary2:8001. Also the only places its component may
    /// send requests to.
    #[arg(long, env = "SECONDARIES", value_name = "URLS")]
    secondaries: Option<String>,
    /// A secondary's artificial delay before acknowledging a replication, in milliseconds.
    #[arg(long, env = "DELAY_MS", default_value_t = 0)]
    delay_ms: u64,
    /// The component to run [default: the role's file in --components DIR or the build output].
    #[arg(long, env = "REPLOG_COMPONENT", value_name = "PATH")]
    component: Option<PathBuf>,
    /// Directory holding the role's component (replog_master.wasm or replog_secondary.wasm).
    #[arg(long, env = "REPLOG_COMPONENTS", value_name = "DIR")]
    components: Option<PathBuf>,
    /// Name in logs [default: the role].
    #[arg(long)]
    name: Option<String>,
    /// Where the node keeps its log; one process per directory [default: data/NAME with
    /// --name, data/ROLE-PORT without].
    #[arg(long, env = "DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the log in memory only: it is lost when the node stops.
    #[arg(long, env = "IN_MEMORY", conflicts_with = "data_dir")]
    in_memory: bool,
    #[command(flatten)]
    secret: SecretArgs,
    /// Run without a cluster secret: the node signs nothing and a secondary takes
    /// replication from anyone who can reach it. Only on a network no one else reaches.
    #[arg(long)]
    insecure: bool,
    /// Started as root: read the cluster secret, then switch to this user and group
    /// (UID:GID) before doing anything else. The containers use it to read a Compose secret
    /// and serve unprivileged.
    #[arg(long, env = "RUN_AS", value_name = "UID:GID")]
    run_as: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The command component (.wasm).
    component: PathBuf,
    /// Arguments for the component (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
}

/// Settings every node takes.
#[derive(Debug, Args)]
struct NodeArgs {
    /// How long a write waits for its write concern before the master answers 502 (the
    /// message stays in the log and is still delivered).
    #[arg(long, env = "REPLICATION_TIMEOUT_MS", default_value_t = 60_000, value_name = "MS")]
    replication_timeout_ms: u64,
    /// How often the master checks on an idle secondary.
    #[arg(long, env = "HEARTBEAT_MS", default_value_t = 500, value_name = "MS")]
    heartbeat_ms: u64,
    /// Failed contacts in a row after which the master suspects a secondary.
    #[arg(long, env = "SUSPECT_AFTER", default_value_t = 1, value_name = "N")]
    suspect_after: u32,
    /// Failed contacts in a row after which a secondary is unhealthy: no longer counted
    /// towards the majority the master needs to take writes.
    #[arg(long, env = "UNHEALTHY_AFTER", default_value_t = 3, value_name = "N")]
    unhealthy_after: u32,
    /// Bound on one contact with a secondary; must exceed the slowest secondary's delay.
    #[arg(long, env = "PEER_TIMEOUT_MS", default_value_t = 5_000, value_name = "MS")]
    peer_timeout_ms: u64,
    /// Share (0 to 1) of replications a secondary answers 500 after storing them: fault
    /// injection for tests.
    #[arg(long, env = "FAULT_RATE", default_value_t = 0.0, value_name = "RATE")]
    fault_rate: f64,
    /// Largest request body a node accepts [default: 1 MiB on the master, 16 MiB on a
    /// secondary, whose batches carry many messages].
    #[arg(long, env = "MAX_BODY_BYTES", value_name = "BYTES")]
    max_body_bytes: Option<u64>,
    /// CPU time the component may use for one request before the request is stopped.
    #[arg(long, env = "CPU_BUDGET_MS", default_value_t = 2_000, value_name = "MS")]
    cpu_budget_ms: u64,
    /// Memory the component may use for one request before the request is stopped.
    #[arg(long, env = "MEMORY_LIMIT_MB", default_value_t = 128, value_name = "MB")]
    memory_limit_mb: u64,
    /// Component instances that may run at once in this process; beyond that, requests are
    /// answered 503.
    #[arg(long, env = "MAX_INSTANCES", default_value_t = 1000)]
    max_instances: u32,
    /// Of those, how many client requests may never take: kept for replication, recovery and
    /// health checks [default: 16, or half of MAX_INSTANCES when that is fewer].
    #[arg(long, env = "RESERVED_INSTANCES", value_name = "N")]
    reserved_instances: Option<u32>,
    /// How long a connection may wait for its next request before it is closed.
    #[arg(long, env = "IDLE_TIMEOUT_MS", value_name = "MS",
        default_value_t = Edge::default().idle_timeout.as_millis() as u64)]
    idle_timeout_ms: u64,
    /// How long a request may take from its first byte to the end of its headers; past it the
    /// client gets 408.
    #[arg(long, env = "HEADER_TIMEOUT_MS", value_name = "MS",
        default_value_t = Edge::default().header_timeout.as_millis() as u64)]
    header_timeout_ms: u64,
    /// How long a request's whole body may take to arrive; past it the client gets 408. Bodies
    /// are received before a component instance is taken.
    #[arg(long, env = "BODY_TIMEOUT_MS", value_name = "MS",
        default_value_t = Edge::default().body_timeout.as_millis() as u64)]
    body_timeout_ms: u64,
    /// Connections a node keeps open at once; one more is answered 503 and closed.
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "N",
        default_value_t = Edge::default().max_connections)]
    max_connections: usize,
    /// How many idempotency keys (a write's "id" or Idempotency-Key) a node remembers; a retry
    /// older than that is taken as a new write.
    #[arg(long, env = "IDEMPOTENCY_KEYS", value_name = "N",
        default_value_t = crate::state::DEFAULT_KEY_WINDOW)]
    idempotency_keys: usize,
    /// A master that lost its log takes writes once the secondaries that answer have given it
    /// theirs, without waiting for every secondary: writes acknowledged only by the missing
    /// ones may be dropped when they come back. For one start, after a disk loss, when a
    /// secondary is gone for good.
    #[arg(long, env = "FORCE_RECOVERY")]
    force_recovery: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Master,
    Secondary,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Master => Role::Master,
            RoleArg::Secondary => Role::Secondary,
        }
    }
}

impl NodeArgs {
    fn limits(&self) -> anyhow::Result<Limits> {
        if self.cpu_budget_ms == 0 {
            bail!("CPU_BUDGET_MS must be at least 1");
        }
        let memory_bytes = usize::try_from(self.memory_limit_mb)
            .ok()
            .and_then(|mb| mb.checked_mul(1 << 20))
            .filter(|&bytes| bytes > 0)
            .with_context(|| format!("MEMORY_LIMIT_MB={} is out of range", self.memory_limit_mb))?;
        Ok(Limits { cpu_budget: Duration::from_millis(self.cpu_budget_ms), memory_bytes })
    }

    fn replication(&self) -> anyhow::Result<Replication> {
        let replication = Replication {
            timeout: Duration::from_millis(self.replication_timeout_ms),
            heartbeat: Duration::from_millis(self.heartbeat_ms),
            suspect_after: self.suspect_after,
            unhealthy_after: self.unhealthy_after,
            peer_timeout: Duration::from_millis(self.peer_timeout_ms),
        };
        replication.check()?;
        Ok(replication)
    }

    fn fault_rate(&self) -> anyhow::Result<f64> {
        if !(0.0..=1.0).contains(&self.fault_rate) {
            bail!("FAULT_RATE must be from 0 to 1, got {}", self.fault_rate);
        }
        Ok(self.fault_rate)
    }

    fn runtime(&self, limits: Limits) -> anyhow::Result<RuntimeConfig> {
        if self.max_instances == 0 {
            bail!("MAX_INSTANCES must be at least 1");
        }
        let reserved =
            self.reserved_instances.unwrap_or(RuntimeConfig::default_reserve(self.max_instances));
        if reserved >= self.max_instances {
            bail!(
                "RESERVED_INSTANCES={reserved} leaves clients nothing of MAX_INSTANCES={}",
                self.max_instances
            );
        }
        Ok(RuntimeConfig {
            max_instances: self.max_instances,
            reserved_instances: reserved,
            memory_bytes: limits.memory_bytes,
        })
    }

    fn edge(&self) -> anyhow::Result<Edge> {
        let ms = |name: &str, ms: u64| {
            if ms == 0 {
                bail!("{name} must be at least 1");
            }
            Ok(Duration::from_millis(ms))
        };
        if self.max_connections == 0 {
            bail!("MAX_CONNECTIONS must be at least 1");
        }
        Ok(Edge {
            idle_timeout: ms("IDLE_TIMEOUT_MS", self.idle_timeout_ms)?,
            header_timeout: ms("HEADER_TIMEOUT_MS", self.header_timeout_ms)?,
            body_timeout: ms("BODY_TIMEOUT_MS", self.body_timeout_ms)?,
            max_connections: self.max_connections,
        })
    }
}

impl ClusterArgs {
    /// The nodes of the cluster: `master`, then `secondary1`... on the following ports.
    fn nodes(&self) -> anyhow::Result<Vec<NodeConfig>> {
        let topology = self.topology.topology()?;
        let master = components::locate(Role::Master, self.components.as_deref())?;
        let secondary = components::locate(Role::Secondary, self.components.as_deref())?;
        let limits = self.node.limits()?;
        let replication = self.node.replication()?;
        let fault_rate = self.node.fault_rate()?;
        let edge = self.node.edge()?;
        // Secondaries are reached over loopback when listening on every address.
        let peer_host =
            if self.bind.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { self.bind };
        // Every node of the cluster shares one secret: the one given, or one made for this run.
        let secret = match self.secret.secret()? {
            Some(secret) => secret,
            None => ClusterSecret::random(),
        };
        let node = |name: String, role, port: u16, component: &PathBuf| NodeConfig {
            data_dir: (!self.in_memory).then(|| self.data_dir.join(&name)),
            replication,
            fault_rate,
            max_body_bytes: self.node.max_body_bytes,
            edge,
            key_window: self.node.idempotency_keys,
            limits,
            secret: Some(secret.clone()),
            force_recovery: self.node.force_recovery,
            ..NodeConfig::new(name, role, SocketAddr::new(self.bind, port), component.clone())
        };
        let mut nodes = vec![node("master".into(), Role::Master, topology.master_port, &master)];
        for (i, delay) in topology.delays.iter().enumerate() {
            let port = topology.secondary_port(i + 1);
            let url = format!("http://{}", SocketAddr::new(peer_host, port));
            nodes[0].secondaries.push(url.parse()?);
            let name = format!("secondary{}", i + 1);
            replication.check_delay(&name, *delay)?;
            let mut secondary = node(name, Role::Secondary, port, &secondary);
            secondary.delay = *delay;
            nodes.push(secondary);
        }
        Ok(nodes)
    }
}

impl ServeArgs {
    fn node(&self) -> anyhow::Result<NodeConfig> {
        let role = Role::from(self.role);
        let component = match &self.component {
            Some(path) => path.clone(),
            None => components::locate(role, self.components.as_deref())?,
        };
        let secondaries: Vec<PeerUrl> = match (role, &self.secondaries) {
            (Role::Master, Some(list)) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?,
            (Role::Master, None) => Vec::new(),
            (Role::Secondary, _) => Vec::new(),
        };
        if role == Role::Master && secondaries.is_empty() {
            tracing::warn!(
                "the master has no secondaries (SECONDARIES is empty): writes are held by the master alone"
            );
        }
        let port = self.port.unwrap_or(match role {
            Role::Master => 8000,
            Role::Secondary => 8001,
        });
        let (replication, fault_rate) = (self.node.replication()?, self.node.fault_rate()?);
        let name = self.name.clone().unwrap_or_else(|| role.to_string());
        // Each node a directory of its own, also when several run from one folder.
        let data_dir = match (&self.data_dir, self.in_memory, &self.name) {
            (_, true, _) => None,
            (Some(dir), false, _) => Some(dir.clone()),
            (None, false, Some(name)) => Some(PathBuf::from("data").join(name)),
            (None, false, None) => Some(PathBuf::from("data").join(format!("{role}-{port}"))),
        };
        let secret = self.secret.secret()?;
        let in_a_cluster = role == Role::Secondary || !secondaries.is_empty();
        if secret.is_none() && in_a_cluster {
            if !self.insecure {
                bail!(
                    "no cluster secret: set CLUSTER_SECRET or CLUSTER_SECRET_FILE (the same on \
                     every node), so that secondaries take replication from their master only. \
                     --insecure runs without one, for a network no one else can reach"
                );
            }
            tracing::warn!(
                "running INSECURE (--insecure): node-to-node requests are not authenticated, and \
                 anyone who reaches a secondary can change its log"
            );
        }
        Ok(NodeConfig {
            data_dir,
            secondaries,
            delay: Duration::from_millis(self.delay_ms),
            replication,
            fault_rate,
            max_body_bytes: self.node.max_body_bytes,
            edge: self.node.edge()?,
            key_window: self.node.idempotency_keys,
            limits: self.node.limits()?,
            secret,
            force_recovery: self.node.force_recovery,
            ..NodeConfig::new(name, role, SocketAddr::new(self.bind, port), component)
        })
    }
}

/// Parses the command line, runs the command, and turns errors into a message and exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` leaves standard output to the component it runs.
    let logs_to_stdout = !matches!(cli.command, Command::Run(_));
    init_tracing(logs_to_stdout);
    // Reading the configuration reads the cluster secret, which may need privileges that
    // `--run-as` gives up: all of it happens first, on this one thread.
    let task = match Task::prepare(cli.command) {
        Ok(task) => task,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command with its configuration read and checked, ready to run.
enum Task {
    Serve { nodes: Vec<NodeConfig>, runtime: RuntimeConfig },
    Run(RunArgs),
    Compose(ComposeArgs),
    Probe(ProbeArgs),
}

impl Task {
    fn prepare(command: Command) -> anyhow::Result<Self> {
        match command {
            Command::Cluster(args) => {
                let nodes = args.nodes()?;
                let runtime = args.node.runtime(nodes[0].limits)?;
                tracing::info!(
                    "cluster secret: {}",
                    if args.secret.cluster_secret_file.is_some() {
                        "from CLUSTER_SECRET_FILE"
                    } else if std::env::var_os("CLUSTER_SECRET").is_some() {
                        "from CLUSTER_SECRET"
                    } else {
                        "made for this run (every node of it has it)"
                    }
                );
                Ok(Task::Serve { nodes, runtime })
            }
            Command::Serve(args) => {
                let node = args.node()?;
                let runtime = args.node.runtime(node.limits)?;
                if let Some(spec) = &args.run_as {
                    let run_as: RunAs = spec.parse()?;
                    run_as.switch()?;
                    tracing::info!(%run_as, "switched user");
                }
                Ok(Task::Serve { nodes: vec![node], runtime })
            }
            Command::Run(args) => Ok(Task::Run(args)),
            Command::Compose(args) => Ok(Task::Compose(args)),
            Command::Probe(args) => Ok(Task::Probe(args)),
        }
    }

    async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Task::Serve { nodes, runtime } => {
                serve_until_stopped(Runtime::new(runtime)?, nodes).await
            }
            Task::Run(args) => {
                let code = crate::command::run(&args.component, &args.args).await?;
                Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
            }
            Task::Compose(args) => {
                let options = compose::Options {
                    image: &args.image,
                    components_dir: &args.components_dir,
                    secret_file: &args.secret_file,
                    replication_timeout_ms: args.replication_timeout_ms,
                };
                let text = compose::render(&args.topology.topology()?, &options);
                if args.output.as_os_str() == "-" {
                    print!("{text}");
                    return Ok(ExitCode::SUCCESS);
                }
                compose::write(&args.output, &text)?;
                eprintln!("wrote {}", args.output.display());
                let secret = compose::secret_path(&args.output, &args.secret_file);
                if compose::ensure_secret(&secret)? {
                    eprintln!("wrote a new cluster secret to {} (mode 0600)", secret.display());
                }
                Ok(ExitCode::SUCCESS)
            }
            Task::Probe(args) => {
                let timeout = Duration::from_millis(args.timeout_ms);
                match crate::probe::get(&args.url, timeout).await {
                    Ok(200) => Ok(ExitCode::SUCCESS),
                    Ok(status) => {
                        eprintln!("{} answered {status}", args.url);
                        Ok(ExitCode::FAILURE)
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", args.url);
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
        }
    }
}

async fn serve_until_stopped(runtime: Runtime, nodes: Vec<NodeConfig>) -> anyhow::Result<ExitCode> {
    let running = cluster::start(&runtime, nodes).await?;
    let nodes: Vec<_> = running.nodes().iter().map(|(node, _)| node.clone()).collect();
    let reloader = Reloader::start(&runtime, &nodes)?;
    let mut hangup = signal(SignalKind::hangup()).context("installing a SIGHUP handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: looking at every component file again");
                reloader.reload_all();
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    tracing::info!("shutting down: finishing requests in flight");
    drop(reloader);
    running.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(to_stdout: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    if to_stdout {
        builder.with_ansi(std::io::stdout().is_terminal()).with_writer(std::io::stdout).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init();
    }
}
