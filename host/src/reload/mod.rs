//! Hot swap: a new component version goes live in the running process.
//!
//! Each node's component file is watched through its directory, so that both copying over the
//! file (`cp`) and renaming a new one into place (`mv`) are seen; so are the other files a new
//! version may appear in (another build's output), of which the most recently built wins.
//! SIGHUP asks for every file to be looked at again (also in a folder that did not exist when
//! the node started). A changed file is compiled off the request path, linked for each node's
//! role and asked to describe itself; only then is it swapped in, atomically, for new requests.
//! Requests already running finish on the version they started with. A file that does not
//! compile, does not fit the role, or is still being written never replaces the running
//! version: the log says why, and the next change to the file is tried again. The log state
//! belongs to the node, not to the component, so it carries on untouched.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::Watcher;
use tokio::sync::{broadcast, mpsc};

pub use self::watch::WatchError;
use self::watch::{sources, watch};

use crate::components;
use crate::node::{self, CompiledComponent, ComponentInfo, LoadError, Node};
use crate::runtime::Runtime;

mod watch;

/// How long a file must stay untouched after a change before it is loaded: a copy is many
/// writes, and loading it halfway through would only be refused.
pub(crate) const QUIET: Duration = Duration::from_millis(25);
/// Compiled versions kept for swapping back without compiling again.
const KEEP_COMPILED: usize = 8;

/// What became of one look at a component file, for one node.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The node now serves `to` to new requests.
    Swapped {
        /// The version it served before.
        from: Arc<ComponentInfo>,
        /// The version it serves now.
        to: Arc<ComponentInfo>,
        /// How long compiling the file took (zero for a version kept compiled).
        compile_time: Duration,
    },
    /// The file was not taken; the node serves on with `serving`.
    Rejected {
        /// Why the file was not taken.
        reason: String,
        /// The version the node serves on.
        serving: Arc<ComponentInfo>,
    },
    /// The file holds the version the node already serves.
    Unchanged,
}

/// One reload, as reported to subscribers (and the log).
#[derive(Debug, Clone)]
pub struct Report {
    /// The node whose component it was.
    pub node: String,
    /// The component file looked at.
    pub path: PathBuf,
    /// What became of it.
    pub outcome: Outcome,
    /// When the file was last seen changing (or the reload was asked for).
    pub changed_at: Instant,
}

/// Watches the component files of a set of nodes and swaps changes in. Dropping it stops.
pub struct Reloader {
    requests: mpsc::UnboundedSender<ReloadAsk>,
    reports: broadcast::Sender<Report>,
    _watcher: Box<dyn Watcher + Send>,
    task: tokio::task::JoinHandle<()>,
}

/// What the reload task is asked to look at again: one file (changed at that instant), or all.
enum ReloadAsk {
    File(PathBuf, Instant),
    All(Instant),
}

impl Reloader {
    /// Starts watching every node's component file. Nodes that share a file (a cluster's
    /// secondaries) share one compile per change.
    pub fn start(runtime: &Runtime, nodes: &[Arc<Node>]) -> Result<Self, WatchError> {
        let mut files: HashMap<PathBuf, Vec<Arc<Node>>> = HashMap::new();
        for node in nodes {
            for path in sources(node) {
                files.entry(path).or_default().push(node.clone());
            }
        }
        let (requests, incoming) = mpsc::unbounded_channel();
        let watched: HashSet<PathBuf> = files.keys().cloned().collect();
        let watcher = watch(&watched, requests.clone())?;
        let (reports, _) = broadcast::channel(256);
        let task = tokio::spawn(run(runtime.clone(), files, incoming, reports.clone()));
        Ok(Self { requests, reports, _watcher: watcher, task })
    }

    /// Looks at every file again (what SIGHUP does): changed ones are swapped in.
    pub fn reload_all(&self) {
        let _ = self.requests.send(ReloadAsk::All(Instant::now()));
    }

    /// Reports of what each reload did, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Report> {
        self.reports.subscribe()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Gathers requests until the files have been quiet for `QUIET`, then reloads them.
async fn run(
    runtime: Runtime,
    files: HashMap<PathBuf, Vec<Arc<Node>>>,
    mut incoming: mpsc::UnboundedReceiver<ReloadAsk>,
    reports: broadcast::Sender<Report>,
) {
    // The versions running now are the first ones a swap may come back to.
    let mut compiled = Compiled::default();
    for node in files.values().flatten() {
        compiled.insert(node.current().component());
    }
    while let Some(first) = incoming.recv().await {
        let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
        let mut add = |request: ReloadAsk| match request {
            ReloadAsk::File(path, at) => {
                pending.insert(path, at);
            }
            ReloadAsk::All(at) => pending.extend(files.keys().map(|path| (path.clone(), at))),
        };
        add(first);
        loop {
            match tokio::time::timeout(QUIET, incoming.recv()).await {
                Ok(Some(request)) => add(request),
                Ok(None) => return,
                Err(_quiet) => break,
            }
        }
        for (path, changed_at) in pending {
            let Some(nodes) = files.get(&path) else { continue };
            // A file changed that is older than another of a node's sources: the newer serves.
            // (When none is left, the report says the file is gone.)
            let nodes: Vec<Arc<Node>> = nodes
                .iter()
                .filter(|node| {
                    components::newest(&sources(node)).is_none_or(|newest| newest == path)
                })
                .cloned()
                .collect();
            if nodes.is_empty() {
                continue;
            }
            for report in reload(&runtime, &path, &nodes, &mut compiled, changed_at).await {
                log(&report);
                let _ = reports.send(report);
            }
        }
    }
}

/// Loads the file at `path` and swaps it into each of `nodes` that does not already run it.
async fn reload(
    runtime: &Runtime,
    path: &Path,
    nodes: &[Arc<Node>],
    compiled: &mut Compiled,
    changed_at: Instant,
) -> Vec<Report> {
    let report = |node: &Node, outcome: Outcome| {
        let metrics = &node.state().metrics.runtime;
        match &outcome {
            Outcome::Swapped { compile_time, .. } => {
                // A version compiled before (a swap back) took no compile.
                if !compile_time.is_zero() {
                    metrics.compiled(*compile_time);
                }
                metrics.swapped(true);
            }
            Outcome::Rejected { .. } => metrics.swapped(false),
            Outcome::Unchanged => {}
        }
        Report { node: node.name().to_owned(), path: path.to_owned(), outcome, changed_at }
    };
    let rejected = |node: &Node, reason: String| {
        report(node, Outcome::Rejected { reason, serving: node.current().info.clone() })
    };
    let bytes = match node::read(path) {
        Ok(bytes) => bytes,
        Err(e) => return nodes.iter().map(|n| rejected(n, e.to_string())).collect(),
    };
    let sha256 = node::sha256(&bytes);
    let (current, stale): (Vec<_>, Vec<_>) =
        nodes.iter().partition(|node| node.current().info.sha256 == sha256);
    let mut reports: Vec<Report> = current.iter().map(|n| report(n, Outcome::Unchanged)).collect();
    if stale.is_empty() {
        return reports;
    }
    // A version seen before (a swap back) needs no compile.
    let (component, compile_time) = match compiled.get(&sha256) {
        Some(component) => (component, Duration::ZERO),
        None => {
            let (engine, owned) = (runtime.engine().clone(), path.to_owned());
            let compiling = move || CompiledComponent::compile(&engine, &owned, &bytes);
            let result = tokio::task::spawn_blocking(compiling).await.unwrap_or_else(|e| {
                Err(LoadError::Compile { path: path.to_owned(), reason: e.to_string() })
            });
            match result {
                Ok(component) => {
                    compiled.insert(&component);
                    let time = component.compile_time;
                    (component, time)
                }
                Err(e) => {
                    reports.extend(stale.iter().map(|n| rejected(n, e.to_string())));
                    return reports;
                }
            }
        }
    };
    for node in stale {
        let outcome = match node.swap(component.clone()).await {
            Ok(old) => Outcome::Swapped {
                from: old.info.clone(),
                to: node.current().info.clone(),
                compile_time,
            },
            Err(e) => {
                Outcome::Rejected { reason: e.to_string(), serving: node.current().info.clone() }
            }
        };
        reports.push(report(node, outcome));
    }
    reports
}

fn log(report: &Report) {
    let (node, path) = (&report.node, report.path.display());
    match &report.outcome {
        Outcome::Swapped { from, to, compile_time } => tracing::info!(
            node,
            path = %path,
            from_sha256 = %from.sha256,
            from_version = %from.version,
            sha256 = %to.sha256,
            version = %to.version,
            compile_ms = compile_time.as_millis() as u64,
            since_change_ms = report.changed_at.elapsed().as_millis() as u64,
            "component swapped in: new requests run the new version"
        ),
        Outcome::Rejected { reason, serving } => tracing::warn!(
            node,
            path = %path,
            serving_sha256 = %serving.sha256,
            serving_version = %serving.version,
            "component not swapped in, the running version serves on: {reason}"
        ),
        Outcome::Unchanged => {
            tracing::debug!(node, path = %path, "component file unchanged")
        }
    }
}

/// Versions compiled in this process, by sha256, oldest first.
#[derive(Default)]
struct Compiled {
    versions: VecDeque<CompiledComponent>,
}

impl Compiled {
    fn get(&self, sha256: &str) -> Option<CompiledComponent> {
        self.versions.iter().find(|c| c.sha256 == sha256).cloned()
    }

    fn insert(&mut self, component: &CompiledComponent) {
        self.versions.retain(|c| c.sha256 != component.sha256);
        if self.versions.len() == KEEP_COMPILED {
            self.versions.pop_front();
        }
        self.versions.push_back(component.clone());
    }
}
