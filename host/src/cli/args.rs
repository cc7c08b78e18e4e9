//! The command line's arguments, and what they make: the nodes' configuration.
//!
//! Environment variable names are the original project's (`PORT`, `SECONDARIES`, `DELAY_MS`,
//! `MASTER_PORT`, `NUM_SECONDARIES`, `SECONDARY_DELAYS`); every one has a flag of the same
//! meaning, and a flag wins over the variable. The roles' own settings (`ComponentArgs`) are
//! passed through to the components untouched: their defaults and rules are the components'.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use super::node::{ComponentArgs, NodeArgs};
use crate::components::{self, ComponentFiles};
use crate::config::setting::{
    CLUSTER_NAME, DELAY_MS, ETCD_ENDPOINTS, MEMBERS, SECONDARIES, SECONDARY_DELAYS,
};
use crate::config::{self, NodeConfig, Role, Topology};
use crate::deploy::{self, compose, k8s, swarm};
use crate::elected::{Member, Members};
use crate::election::Timings;
use crate::secret::ClusterSecret;

#[derive(Debug, Parser)]
#[command(
    name = "replog",
    version,
    about = "A replicated log whose node logic runs as WebAssembly components on a wasmtime host.",
    long_about = "A replicated log whose node logic runs as WebAssembly components on a wasmtime \
        host.\n\nA master takes writes (POST /messages) and replicates them to its secondaries \
        before answering; every node serves GET /messages, GET /health, GET /ready and GET \
        /metrics. Logs go to stdout; RUST_LOG (e.g. RUST_LOG=replog=debug) sets how much, \
        LOG_FORMAT=json makes them JSON."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// How log lines are written: `text` for people, `json` for one JSON object per line
    /// (node, role, seq, epoch, peer, request id where they apply) for log collectors.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub(crate) log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a master and N secondaries in this one process (master on --master-port,
    /// secondaries on the ports after it).
    Cluster(Box<ClusterArgs>),
    /// Run one node: the entry point of a container, or of separate processes on one machine.
    Serve(Box<ServeArgs>),
    /// Run a WASI command component, such as the echo server and client of iteration 0:
    /// `replog run echo-server.wasm -- 9009`.
    Run(RunArgs),
    /// Write docker-compose.yml for a master and N secondaries, one container each
    /// (master on MASTER_PORT, secondaries on the ports after it); with --failover, an elected
    /// cluster; with --swarm, a Docker Swarm stack of one.
    Compose(ComposeArgs),
    /// Write Kubernetes manifests for an elected cluster: a StatefulSet of members with a
    /// volume claim each, its Services, a PodDisruptionBudget that keeps a majority, and etcd.
    K8s(K8sArgs),
    /// GET a URL and exit 0 if it answers 200: the containers' health check, since the image
    /// holds nothing but this binary.
    Probe(ProbeArgs),
    /// Make a random cluster secret at FILE (mode 0600), unless a file is there: an existing
    /// secret is never replaced. The Compose file's one-shot `cluster-secret` service.
    MakeSecret(MakeSecretArgs),
    /// Print the cluster as its master sees it, a line per node (role, count, lag, status,
    /// epoch, component version). Exits 0 when the cluster takes writes, 1 when it does not,
    /// 2 when the master cannot be reached.
    Status(StatusArgs),
    /// Write messages (the MSG arguments, or one per line of standard input) and print each
    /// one's seq. URL is the master, or in an elected cluster any member. Exits 1 at the first
    /// message not written, saying why on standard error.
    Append(AppendArgs),
    /// Print the log from a seq on (committed entries, from the first node of the list that
    /// answers); with --follow, keep printing as it grows, moving to the next node listed
    /// when one fails, without a gap or a line twice.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The node to write through, e.g. http://127.0.0.1:8000.
    pub(crate) url: String,
    /// The messages; none: one per line of standard input.
    #[arg(value_name = "MSG")]
    pub(crate) messages: Vec<String>,
    /// Write concern: how many nodes must hold each message before it is acknowledged
    /// [default: the master's, every node].
    #[arg(long)]
    pub(crate) w: Option<u64>,
    /// Idempotency key, so that sending again never writes twice; with several messages the
    /// nth gets KEY-n.
    #[arg(long, value_name = "KEY")]
    pub(crate) id: Option<String>,
    /// How long one write may take to be answered, in milliseconds.
    #[arg(long, default_value_t = 65_000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
    /// How long a write the cluster cannot take now (503: recovering, electing) is tried
    /// again, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub(crate) retry_for_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Nodes to read from, comma-separated (any node serves the log), e.g.
    /// http://127.0.0.1:8001,http://127.0.0.1:8002.
    #[arg(value_name = "URL[,URL...]", value_delimiter = ',', required = true)]
    pub(crate) urls: Vec<String>,
    /// The first seq to print [default: the first the node holds: retention may have removed
    /// older ones].
    #[arg(long)]
    pub(crate) from: Option<u64>,
    /// Keep printing as the log grows.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Print JSON lines, {"seq":N,"msg":"..."}, instead of messages alone.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print every entry a node holds, also those not yet committed (a later master may take
    /// them back).
    #[arg(long)]
    pub(crate) uncommitted: bool,
    /// How long each long-poll waits on the node, in milliseconds (at most 30000).
    #[arg(long, default_value_t = 25_000, value_name = "MS")]
    pub(crate) wait_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The master's base URL.
    #[arg(default_value = "http://127.0.0.1:8000")]
    pub(crate) master: String,
    /// How long to wait for each node's answer, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    #[command(flatten)]
    topology: TopologyArgs,
    /// Address every node listens on.
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Folders holding replog_master.wasm and replog_secondary.wasm, separated by ':'; the most
    /// recently built file of each is run, and a newer one in any of them is swapped in
    /// [default: the build outputs of `cargo build` and `cargo component build`,
    /// target/components/wasm32-wasip2/release:target/components/wasm32-wasip1/release].
    #[arg(long, env = "REPLOG_COMPONENTS", value_name = "DIR[:DIR...]", value_delimiter = ':')]
    components: Option<Vec<PathBuf>>,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    #[command(flatten)]
    settings: ComponentArgs,
}

/// How nodes prove to each other that they belong to the cluster.
#[derive(Debug, Args)]
#[command(after_help = "The cluster secret can also be given as its value in the environment \
    variable CLUSTER_SECRET (never as a flag, so that it does not show in the process list). \
    Every node of a cluster needs the same one; at least 16 characters.")]
pub(crate) struct SecretArgs {
    /// File holding the cluster secret (the Docker and Kubernetes secret form); surrounding
    /// whitespace is ignored.
    #[arg(long, env = "CLUSTER_SECRET_FILE", value_name = "PATH")]
    pub(crate) cluster_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    /// The secret from CLUSTER_SECRET or the file, if either is given.
    pub(crate) fn secret(&self) -> anyhow::Result<Option<ClusterSecret>> {
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
pub(crate) struct TopologyArgs {
    /// Port of the master; secondary i listens on MASTER_PORT + i.
    #[arg(long, env = "MASTER_PORT", default_value_t = 8000)]
    master_port: u16,
    /// Number of secondaries.
    #[arg(long, env = "NUM_SECONDARIES", default_value_t = 2, allow_negative_numbers = true)]
    num_secondaries: i64,
    /// Comma-separated delay of each secondary in milliseconds, one per secondary
    /// [default: 0,1500, then 0 for any further secondary].
    #[arg(long, env = SECONDARY_DELAYS, value_name = "MS,MS,...")]
    secondary_delays: Option<String>,
}

impl TopologyArgs {
    pub(crate) fn topology(&self) -> Result<Topology, config::ConfigError> {
        Topology::new(self.master_port, self.num_secondaries, self.secondary_delays.as_deref())
    }
}

#[derive(Debug, Args)]
pub(crate) struct ComposeArgs {
    #[command(flatten)]
    pub(crate) topology: TopologyArgs,
    /// Where to write the file (`-` for standard output) [default: docker-compose.yml;
    /// replog-stack.yml with --swarm]. Nothing is written when a setting is wrong. (A Compose
    /// file's cluster secret is made by its one-shot `cluster-secret` service, into a volume
    /// only the nodes mount: nothing to make beforehand.)
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Image the services run: the static host with its components (the Dockerfile's).
    #[arg(long, env = "REPLOG_IMAGE", default_value = deploy::DEFAULT_IMAGE)]
    pub(crate) image: String,
    /// Folder mounted read-only as /components in every container (relative to the Compose
    /// file, or absolute): the .wasm files in it, or in its wasm32-wasip2/release or
    /// wasm32-wasip1/release (the default, target/components, holds both builds' outputs). The
    /// newest is run, and a newer one is swapped in by the running containers. Not with
    /// --swarm, whose machines run the components their image carries.
    #[arg(long, default_value = compose::DEFAULT_COMPONENTS_DIR, value_name = "DIR")]
    pub(crate) components_dir: String,
    /// The master's REPLICATION_TIMEOUT_MS (how long a write waits for its write concern), if
    /// not its component's default.
    #[arg(long, value_name = "MS")]
    pub(crate) replication_timeout_ms: Option<u64>,
    /// An elected cluster instead: etcd and NUM_SECONDARIES + 1 members that elect their master
    /// through it (`serve --role auto`), on MASTER_PORT and the ports after it.
    #[arg(long)]
    pub(crate) failover: bool,
    /// A Docker Swarm stack of an elected cluster instead, for `docker stack deploy` over one
    /// machine or many: etcd beside each member, members placed by node labels
    /// (replog-n1=true, ...), published on MASTER_PORT and the ports after it, the cluster
    /// secret a swarm secret made beforehand.
    #[arg(long, conflicts_with = "failover")]
    pub(crate) swarm: bool,
    /// With --failover or --swarm: the etcd image (its binary at /usr/local/bin/etcd, as in
    /// etcd's own).
    #[arg(long, env = "ETCD_IMAGE", default_value = deploy::DEFAULT_ETCD_IMAGE)]
    pub(crate) etcd_image: String,
    /// With --swarm: the swarm secret holding the cluster secret (`docker secret create NAME`).
    #[arg(long, default_value = swarm::DEFAULT_SECRET_NAME, value_name = "NAME")]
    pub(crate) secret_name: String,
}

#[derive(Debug, Args)]
pub(crate) struct K8sArgs {
    /// Where to write the manifests (`-` for standard output). Nothing is written when a
    /// setting is wrong.
    #[arg(long, short, default_value = "replog-k8s.yaml", value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// The prefix of every object's name (the StatefulSet, its pods NAME-0, NAME-1, ..., the
    /// Services NAME and NAME-client), and the cluster's name in etcd.
    #[arg(long, default_value = crate::election::DEFAULT_CLUSTER_NAME)]
    pub(crate) name: String,
    /// How many members (pods of the StatefulSet): at least 3, an odd number preferably.
    #[arg(long, default_value_t = 3)]
    pub(crate) replicas: usize,
    /// Image the members run, by a name the cluster's machines can pull.
    #[arg(long, env = "REPLOG_IMAGE", default_value = deploy::DEFAULT_IMAGE)]
    pub(crate) image: String,
    /// The etcd image, when etcd runs as a StatefulSet here.
    #[arg(long, env = "ETCD_IMAGE", default_value = deploy::DEFAULT_ETCD_IMAGE)]
    pub(crate) etcd_image: String,
    /// An etcd that runs elsewhere: its client URLs, separated by commas. Without it, etcd
    /// runs as a StatefulSet NAME-etcd beside the members.
    #[arg(long, value_name = "URLS")]
    pub(crate) etcd_endpoints: Option<String>,
    /// The Secret holding the cluster secret under the key `cluster-secret`, made beforehand.
    #[arg(long, default_value = k8s::DEFAULT_SECRET_NAME, value_name = "NAME")]
    pub(crate) secret_name: String,
    /// Each member's and etcd member's volume claim.
    #[arg(long, default_value = k8s::DEFAULT_STORAGE, value_name = "QUANTITY")]
    pub(crate) storage: String,
    /// The volume claims' storage class [default: the cluster's default class].
    #[arg(long, value_name = "CLASS")]
    pub(crate) storage_class: Option<String>,
    /// The members' REPLICATION_TIMEOUT_MS, if not the component's default.
    #[arg(long, value_name = "MS")]
    pub(crate) replication_timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct MakeSecretArgs {
    /// Where the secret goes, e.g. /secrets/cluster-secret.
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The URL to GET, e.g. http://127.0.0.1:8000/health.
    pub(crate) url: String,
    /// How long to wait for the answer, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_name = "MS")]
    pub(crate) timeout_ms: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Which node this is: master or secondary by configuration, or auto: elected through
    /// etcd (needs --members, --etcd-endpoints and --name).
    #[arg(long, env = "ROLE", value_enum)]
    role: RoleArg,
    /// auto: every member of the cluster, NAME=URL separated by commas, the same on every
    /// node (a majority is counted over them), e.g. n1=http://n1:8000,n2=http://n2:8000,...
    #[arg(long, env = MEMBERS, value_name = "NAME=URL,...")]
    members: Option<String>,
    /// auto: etcd's client URLs, separated by commas (etcd 3.4 or later).
    #[arg(long, env = ETCD_ENDPOINTS, value_name = "URLS")]
    etcd_endpoints: Option<String>,
    /// auto: the cluster's prefix in etcd; clusters sharing an etcd need different names.
    #[arg(long, env = CLUSTER_NAME, default_value = crate::election::DEFAULT_CLUSTER_NAME)]
    cluster_name: String,
    /// auto: how long the leader key outlives its master's last renewal, in whole seconds.
    #[arg(long, env = "LEASE_TTL_S", value_name = "S",
        default_value_t = Timings::default().ttl.as_secs())]
    lease_ttl_s: u64,
    /// auto: how often the master renews its lease.
    #[arg(long, env = "RENEW_EVERY_MS", value_name = "MS",
        default_value_t = Timings::default().renew_every.as_millis() as u64)]
    renew_every_ms: u64,
    /// auto: how long after its last confirmed renewal a master stops acknowledging writes;
    /// below the TTL, so that it has stopped before another can be elected.
    #[arg(long, env = "RENEW_DEADLINE_MS", value_name = "MS",
        default_value_t = Timings::default().renew_deadline.as_millis() as u64)]
    renew_deadline_ms: u64,
    /// Port to listen on [default: 8000 for the master, 8001 for a secondary, the port of its
    /// own URL in --members for auto].
    #[arg(long, env = "PORT")]
    port: Option<u16>,
    /// Address to listen on.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// The master's secondaries: comma-separated base URLs, e.g.
    /// http://secondary1:8001,http://secondary2:8001. Also the only places its component may
    /// send requests to.
    #[arg(long, env = SECONDARIES, value_name = "URLS")]
    secondaries: Option<String>,
    /// A secondary's artificial delay before acknowledging a replication, in milliseconds.
    #[arg(long, env = DELAY_MS, value_name = "MS")]
    delay_ms: Option<String>,
    /// A secondary's master, e.g. http://master:8000: the console (GET /) served by this
    /// secondary shows the whole cluster from that master's /health and appends through it.
    /// Optional; without it the console shows this node alone. Elected nodes know their master.
    #[arg(long, env = "MASTER_URL", value_name = "URL")]
    master_url: Option<String>,
    /// The component to run [default: the role's file in --components DIR or the build output].
    #[arg(long, env = "REPLOG_COMPONENT", value_name = "PATH")]
    component: Option<PathBuf>,
    /// Folders holding the role's component (replog_master.wasm or replog_secondary.wasm),
    /// separated by ':'; the most recently built one is run, and a newer one in any of them is
    /// swapped in [default: the build outputs, as for `cluster`].
    #[arg(long, env = "REPLOG_COMPONENTS", value_name = "DIR[:DIR...]", value_delimiter = ':')]
    components: Option<Vec<PathBuf>>,
    /// Name in logs [default: the role].
    #[arg(long)]
    name: Option<String>,
    /// Serve GET /metrics on this address (e.g. 127.0.0.1:9000) instead of on the client
    /// port, for deployments that keep metrics off the port clients reach.
    #[arg(long, env = "METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    storage: StorageArgs,
    #[command(flatten)]
    pub(crate) secret: SecretArgs,
    /// Run without a cluster secret: the node signs nothing and a secondary takes
    /// replication from anyone who can reach it. Only on a network no one else reaches.
    #[arg(long)]
    insecure: bool,
    /// Started as root: read the cluster secret, then switch to this user and group
    /// (UID:GID) before doing anything else. The containers use it to read a Compose secret
    /// and serve unprivileged.
    #[arg(long, env = "RUN_AS", value_name = "UID:GID")]
    pub(crate) run_as: Option<String>,
    #[command(flatten)]
    pub(crate) node: NodeArgs,
    #[command(flatten)]
    settings: ComponentArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The command component (.wasm).
    pub(crate) component: PathBuf,
    /// Arguments for the component (after `--`).
    #[arg(last = true)]
    pub(crate) args: Vec<String>,
}

/// Where logs go when no `DATA_DIR` is given, relative to where `replog` runs.
const DATA: &str = "data";

/// Where logs are kept.
#[derive(Debug, Args)]
pub(crate) struct StorageArgs {
    /// Where logs are kept, one process per directory. `cluster`: a folder per node (master,
    /// secondary1, ...) in it [default: data]. `serve`: the node's own [default: data/NAME
    /// with --name, data/ROLE-PORT without].
    #[arg(long, env = "DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep logs in memory only: they are lost when the process stops.
    #[arg(long, env = "IN_MEMORY", action = ArgAction::Set,
        num_args = 0..=1, default_missing_value = "true", default_value = "false",
        value_parser = BoolishValueParser::new())]
    in_memory: bool,
}

impl StorageArgs {
    /// The data directory, `default` when none is given; `None` for logs in memory.
    fn data_dir(&self, default: impl FnOnce() -> PathBuf) -> anyhow::Result<Option<PathBuf>> {
        match (self.in_memory, &self.data_dir) {
            (true, Some(dir)) => bail!(
                "IN_MEMORY is on and DATA_DIR is {}: a log is either in memory or on disk, give one",
                dir.display()
            ),
            (true, None) => Ok(None),
            (false, dir) => Ok(Some(dir.clone().unwrap_or_else(default))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    Master,
    Secondary,
    Auto,
}

/// What an elected node (`--role auto`) is set up with, before its components are compiled.
pub(crate) struct ElectedPlan {
    pub(crate) me: Member,
    pub(crate) members: Members,
    pub(crate) etcd_endpoints: Vec<String>,
    pub(crate) cluster_name: String,
    pub(crate) timings: Timings,
    /// The node as master: its secondaries are the other members.
    pub(crate) master: NodeConfig,
    /// The node as secondary, as it starts.
    pub(crate) secondary: NodeConfig,
}

impl ClusterArgs {
    /// The nodes of the cluster: `master`, then `secondary1`... on the following ports.
    pub(crate) fn nodes(&self) -> anyhow::Result<Vec<NodeConfig>> {
        let topology = self.topology.topology()?;
        let master = components::locate(Role::Master, self.components.as_deref())?;
        let secondary = components::locate(Role::Secondary, self.components.as_deref())?;
        // Secondaries are reached over loopback when listening on every address.
        let peer_host =
            if self.bind.is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { self.bind };
        // Every node of the cluster shares one secret: the one given, or one made for this run.
        let secret = match self.secret.secret()? {
            Some(secret) => secret,
            None => ClusterSecret::random(),
        };
        let data_dir = self.storage.data_dir(|| PathBuf::from(DATA))?;
        let node =
            |name: String, role, port: u16, component: &ComponentFiles| -> anyhow::Result<_> {
                let config = NodeConfig {
                    data_dir: data_dir.as_ref().map(|dir| dir.join(&name)),
                    secret: Some(secret.clone()),
                    ..self.node.node(name, role, SocketAddr::new(self.bind, port), component)?
                };
                Ok(self.settings.apply(config))
            };
        let urls: Vec<String> = (1..=topology.delays.len())
            .map(|i| format!("http://{}", SocketAddr::new(peer_host, topology.secondary_port(i))))
            .collect();
        let delays: Vec<String> =
            topology.delays.iter().map(|d| d.as_millis().to_string()).collect();
        // The master knows its secondaries' delays here, and checks they fit its timeouts.
        let master = node("master".into(), Role::Master, topology.master_port, &master)?
            .with(SECONDARIES, urls.join(","))
            .with(SECONDARY_DELAYS, delays.join(","));
        let master_url = format!("http://{}", SocketAddr::new(peer_host, topology.master_port));
        let mut nodes = vec![master];
        for (i, delay) in delays.iter().enumerate() {
            let name = format!("secondary{}", i + 1);
            let port = topology.secondary_port(i + 1);
            let config = NodeConfig {
                master_url: Some(master_url.clone()),
                ..node(name, Role::Secondary, port, &secondary)?
            };
            nodes.push(config.with(DELAY_MS, delay));
        }
        Ok(nodes)
    }
}

impl ServeArgs {
    /// Whether the node is elected (`--role auto`).
    pub(crate) fn elected(&self) -> bool {
        self.role == RoleArg::Auto
    }

    /// An elected node's plan: both roles' configurations over one data directory.
    pub(crate) fn elected_plan(&self) -> anyhow::Result<ElectedPlan> {
        let Some(members) = &self.members else {
            bail!("--role auto needs {MEMBERS}: every member, NAME=URL separated by commas")
        };
        let members = Members::parse(members)?;
        let Some(name) = &self.name else {
            bail!("--role auto needs --name: which of {MEMBERS} this node is")
        };
        let Some(me) = members.get(name).cloned() else {
            bail!("--name {name} is not one of {MEMBERS}")
        };
        let Some(endpoints) = &self.etcd_endpoints else {
            bail!(
                "--role auto needs {ETCD_ENDPOINTS}: where etcd answers, e.g. http://127.0.0.1:2379"
            )
        };
        let etcd_endpoints: Vec<String> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect();
        if etcd_endpoints.is_empty() || etcd_endpoints.iter().any(|e| !e.starts_with("http://")) {
            bail!("{ETCD_ENDPOINTS}={endpoints}: give http:// URLs separated by commas");
        }
        if self.cluster_name.is_empty() || self.cluster_name.contains('/') {
            bail!("{CLUSTER_NAME} must be a non-empty name without '/'");
        }
        let timings = Timings {
            ttl: Duration::from_secs(self.lease_ttl_s),
            renew_every: Duration::from_millis(self.renew_every_ms),
            renew_deadline: Duration::from_millis(self.renew_deadline_ms),
        };
        timings.check().map_err(|why| anyhow::anyhow!("the election's timings: {why}"))?;
        let own_port = me.url.rsplit(':').next().and_then(|port| port.parse().ok());
        let port = self.port.or(own_port).context("no port in this node's member URL")?;
        let data_dir = self.storage.data_dir(|| PathBuf::from(DATA).join(name))?;
        let listen = SocketAddr::new(self.bind, port);
        let secret = self.secret.secret()?;
        if secret.is_none() && !self.insecure {
            bail!(
                "no cluster secret: set CLUSTER_SECRET or CLUSTER_SECRET_FILE (the same on every \
                 node). --insecure runs without one, for a network no one else can reach"
            );
        }
        let config = |role: Role| -> anyhow::Result<NodeConfig> {
            let component = match (&self.component, role) {
                (Some(_), _) => {
                    bail!("--role auto runs both roles' components: give --components DIR")
                }
                (None, role) => components::locate(role, self.components.as_deref())?,
            };
            let config = NodeConfig {
                data_dir: data_dir.clone(),
                metrics_listen: self.metrics_addr,
                secret: secret.clone(),
                ..self.node.node(name.clone(), role, listen, &component)?
            };
            Ok(self.settings.apply(config))
        };
        let others: Vec<&str> = members.others(name).map(|m| m.url.as_str()).collect();
        let master = config(Role::Master)?.with(SECONDARIES, others.join(","));
        let mut secondary = config(Role::Secondary)?;
        if let Some(delay) = &self.delay_ms {
            secondary = secondary.with(DELAY_MS, delay);
        }
        let cluster_name = self.cluster_name.clone();
        Ok(ElectedPlan { me, members, etcd_endpoints, cluster_name, timings, master, secondary })
    }

    pub(crate) fn node(&self) -> anyhow::Result<NodeConfig> {
        let role = match self.role {
            RoleArg::Master => Role::Master,
            RoleArg::Secondary => Role::Secondary,
            RoleArg::Auto => bail!("an elected node has no fixed role (see elected_plan)"),
        };
        let component = match &self.component {
            Some(path) => ComponentFiles { path: path.clone(), candidates: Vec::new() },
            None => components::locate(role, self.components.as_deref())?,
        };
        let port = self.port.unwrap_or(match role {
            Role::Master => 8000,
            Role::Secondary => 8001,
        });
        let name = self.name.clone().unwrap_or_else(|| role.to_string());
        // Each node a directory of its own, also when several run from one folder.
        let data_dir = self.storage.data_dir(|| match &self.name {
            Some(name) => PathBuf::from(DATA).join(name),
            None => PathBuf::from(DATA).join(format!("{role}-{port}")),
        })?;
        let listen = SocketAddr::new(self.bind, port);
        let master_url = match (&self.master_url, role) {
            (None, _) => None,
            // A master is its own (one shell's MASTER_URL may start every node).
            (Some(_), Role::Master) => None,
            (Some(url), Role::Secondary) => Some(master_url(url)?),
        };
        let mut config = NodeConfig {
            data_dir,
            master_url,
            metrics_listen: self.metrics_addr,
            secret: self.secret.secret()?,
            ..self.node.node(name, role, listen, &component)?
        };
        config = self.settings.apply(config);
        for (name, value) in [(SECONDARIES, &self.secondaries), (DELAY_MS, &self.delay_ms)] {
            if let Some(value) = value {
                config = config.with(name, value);
            }
        }
        if role == Role::Master && !config.in_a_cluster() {
            tracing::warn!(
                "the master has no secondaries (SECONDARIES is empty): writes are held by the master alone"
            );
        }
        if config.secret.is_none() && config.in_a_cluster() {
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
        Ok(config)
    }
}

/// `MASTER_URL` checked: an `http://` base URL with a host, given without its trailing `/`.
fn master_url(url: &str) -> anyhow::Result<String> {
    let base = url.trim().trim_end_matches('/');
    let usable = base.parse::<http::Uri>().is_ok_and(|uri| {
        uri.scheme_str() == Some("http")
            && uri.host().is_some_and(|host| !host.is_empty())
            && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
    });
    if !usable {
        bail!("MASTER_URL={url}: give the master's base URL, e.g. http://master:8000");
    }
    Ok(base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::master_url;

    #[test]
    fn a_master_url_is_an_http_base_url() {
        assert_eq!(master_url("http://master:8000/").unwrap(), "http://master:8000");
        assert_eq!(master_url(" http://127.0.0.1:8000 ").unwrap(), "http://127.0.0.1:8000");
        for bad in
            ["", "master:8000", "https://master:8000", "http://master:8000/messages", "http://"]
        {
            let error = master_url(bad).unwrap_err().to_string();
            assert!(error.contains("MASTER_URL"), "{bad}: {error}");
        }
    }
}
