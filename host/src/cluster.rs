//! Several nodes in one process: the embedded cluster (`replog cluster`) and a single node
//! (`replog serve`) are both a set of nodes, each on its own port, sharing one runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::NodeConfig;
use crate::node::{CompiledComponent, LoadError, Node};
use crate::runtime::Runtime;
use crate::seat::Seat;
use crate::server::{self, BindError, Port};

/// Why nodes could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A component file could not be read, compiled or linked.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A node could not be set up: its component, its state or its settings.
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    /// A node's port could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// Nodes that are up and serving.
pub struct Running {
    nodes: Vec<(Arc<Node>, SocketAddr)>,
    stop: watch::Sender<bool>,
    servers: JoinSet<()>,
}

/// Compiles each distinct component once, binds every port (so that a busy port fails the
/// start before anything serves), then serves.
pub async fn start(runtime: &Runtime, configs: Vec<NodeConfig>) -> Result<Running, StartError> {
    let mut compiled: HashMap<PathBuf, CompiledComponent> = HashMap::new();
    let mut nodes = Vec::new();
    for config in configs {
        let component = match compiled.get(&config.component) {
            Some(component) => component.clone(),
            None => {
                let component = CompiledComponent::load(runtime.engine(), &config.component)?;
                compiled.insert(config.component.clone(), component.clone());
                component
            }
        };
        nodes.push(Node::new(runtime, config, component).await?);
    }
    serve_nodes(nodes).await
}

/// Binds every node's port, then serves them all until `Running::shutdown`.
pub async fn serve_nodes(nodes: Vec<Node>) -> Result<Running, StartError> {
    let mut listeners = Vec::new();
    for node in &nodes {
        let metrics = match node.config().metrics_listen {
            Some(addr) => Some(server::bind(node.name(), addr).await?),
            None => None,
        };
        listeners.push((server::bind(node.name(), node.config().listen).await?, metrics));
    }
    let (stop, stopped) = watch::channel(false);
    let mut servers = JoinSet::new();
    let mut running = Vec::new();
    for (node, (listener, metrics)) in nodes.into_iter().zip(listeners) {
        let node = Arc::new(node);
        let addr = listener.local_addr().map_err(|error| BindError::Other {
            node: node.name().to_owned(),
            addr: node.config().listen,
            error,
        })?;
        let current = node.current();
        let (info, compile_time) = (&current.info, current.component().compile_time);
        tracing::info!(
            node = node.name(),
            role = %node.role(),
            component = %info.path.display(),
            sha256 = %info.sha256,
            version = %info.version,
            compile_ms = compile_time.as_millis() as u64,
            "listening on http://{addr}"
        );
        let seat = Arc::new(Seat::new(node.clone()));
        let stop_with = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Some(metrics) = metrics {
            if let Ok(addr) = metrics.local_addr() {
                tracing::info!(node = node.name(), "metrics on http://{addr}/metrics");
            }
            let stop = stop_with(stopped.clone());
            servers.spawn(server::serve(seat.clone(), metrics, Port::Metrics, stop));
        }
        let stop = stop_with(stopped.clone());
        servers.spawn(server::serve(seat, listener, Port::Clients, stop));
        running.push((node, addr));
    }
    // Every node listens by now, so the masters' first contacts find their secondaries up.
    for (node, _) in &running {
        node.start_replication();
    }
    if let Some((_, addr)) = running.first() {
        tracing::info!("console: {} (every node serves one at /)", console_url(*addr));
    }
    Ok(Running { nodes: running, stop, servers })
}

impl Running {
    /// The nodes and the addresses they actually listen on (a port of 0 is resolved).
    pub fn nodes(&self) -> &[(Arc<Node>, SocketAddr)] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes.iter().map(|(node, _)| node).find(|node| node.name() == name)
    }

    /// Stops accepting, lets requests in flight finish (within `server::DRAIN_TIMEOUT`), and
    /// stops the masters' replication.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.servers.join_next().await.is_some() {}
        for (node, _) in &self.nodes {
            node.stop_replication().await;
        }
    }
}

/// Where a browser on this machine opens the console of the node listening on `addr`.
pub(crate) fn console_url(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("http://localhost:{}/", addr.port())
    } else {
        format!("http://{addr}/")
    }
}
