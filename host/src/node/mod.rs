//! A node: one component serving HTTP requests over a state that outlives them.
//!
//! Each request gets a fresh `Store` and instance (as `wasmtime serve` does), cut from the
//! pre-instantiated component, with its own limits. The component runs in a task of its own
//! and the request waits only for the response: a master may answer its client once enough
//! secondaries hold a message and keep replicating to the rest afterwards.

mod bindings;
mod component;
mod ctx;
mod output;
mod streams;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use self::bindings::replicating::ReplicatingPre;
use self::bindings::replicating::exports::replog::node::replicator::Wake;
pub use self::component::{CompiledComponent, LoadError, Prepared, read, sha256};
use self::ctx::RequestCtx;
use self::output::{GuestOutput, Stream};
use crate::config::{NodeConfig, Role};
use crate::outbound::Outbound;
use crate::runtime::{LimitExceeded, RequestLimits, Runtime};
use crate::secret::ClusterSecret;
use crate::state::{NodeState, StorageError};

/// The response type nodes produce.
pub type Response = hyper::Response<HyperOutgoingBody>;

/// What identifies a loaded component version: in logs, and on `GET /health` through
/// `replog:node/host-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub path: PathBuf,
    pub sha256: String,
    /// What the component's `about.describe` reported, `unknown` if it exports none.
    pub version: String,
    /// When the node started serving it, RFC 3339 in UTC.
    pub loaded_at: String,
}

/// One version of the node's component, ready to serve. A request holds the version it
/// started with until it ends, so swapping in another never disturbs it.
pub struct Loaded {
    pub info: Arc<ComponentInfo>,
    component: CompiledComponent,
    proxy: ProxyPre<RequestCtx>,
    replicator: Option<ReplicatingPre<RequestCtx>>,
}

impl Loaded {
    pub fn component(&self) -> &CompiledComponent {
        &self.component
    }
}

/// When a replication stream runs its next step, as the component's `replicator` decided:
/// after `after`, or as soon as the log grows if `on_append`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextStep {
    pub after: Option<Duration>,
    pub on_append: bool,
}

/// What a round of the master's recovery (`replicator.recover`) asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The master is open (or fenced): recovery is over.
    Done,
    /// Not yet: run another round after this long.
    Again(Duration),
}

pub struct Node {
    shared: Arc<Shared>,
    /// A master's replication: its recovery, then a stream per secondary (see `streams`).
    replication: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What a node's requests and replication streams share.
struct Shared {
    parts: Parts,
    current: RwLock<Arc<Loaded>>,
}

/// Everything of a node but its component version: what every store of it is built from.
struct Parts {
    name: Arc<str>,
    config: NodeConfig,
    runtime: Runtime,
    state: Arc<NodeState>,
    secret: Option<ClusterSecret>,
    outbound: Outbound,
    env: Vec<(String, String)>,
}

impl Node {
    /// Sets up a node around an already compiled component, checking that it fits the role
    /// and asking it what it is.
    pub async fn new(
        runtime: &Runtime,
        config: NodeConfig,
        component: CompiledComponent,
    ) -> Result<Self, NodeError> {
        let name: Arc<str> = config.name.as_str().into();
        let state = Arc::new(open_state(&config).await?);
        let parts = Parts {
            outbound: Outbound::new(&name, config.allowed_peers(), runtime.client().clone()),
            env: config.component_env(),
            secret: config.secret.clone(),
            state,
            name,
            runtime: runtime.clone(),
            config,
        };
        let loaded = parts.load(component).await?;
        let shared = Arc::new(Shared { parts, current: RwLock::new(Arc::new(loaded)) });
        Ok(Self { shared, replication: Mutex::new(None) })
    }

    /// Starts a master's replication: recovery rounds until its component has opened an epoch,
    /// then a stream per secondary. Serving a node starts it; a node driven by direct calls
    /// needs this. A secondary has none; calling it again does nothing.
    pub fn start_replication(&self) {
        if self.role() != Role::Master {
            return;
        }
        let mut replication =
            self.replication.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if replication.is_none() {
            *replication = Some(tokio::spawn(streams::replicate(self.shared.clone())));
        }
    }

    /// Stops a master's replication and waits until it has, so that nothing of this node is
    /// still running once it returns.
    pub async fn stop_replication(&self) {
        let task = self.replication.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Resolves once a master has finished recovering (it is open, or fenced).
    pub async fn settled(&self) {
        self.shared.parts.state.gate.settled().await;
    }

    /// The version new requests run on.
    pub fn current(&self) -> Arc<Loaded> {
        self.shared.current()
    }

    /// Runs one replication step toward `peer` now, as its stream would; `None` when the
    /// component is not a master. For tests and tools: the streams run steps by themselves.
    pub async fn replication_step(&self, peer: &str) -> Result<Option<NextStep>, Failure> {
        self.shared.step(peer).await
    }

    /// Runs one round of recovery now, as `start_replication` would; `None` when the
    /// component is not a master. For tests and tools.
    pub async fn recovery_round(&self) -> Result<Option<Recovery>, Failure> {
        self.shared.recover().await
    }

    /// Makes `component` the version new requests run on, once it has linked for this node's
    /// role and described itself; until then, and if that fails, the current version serves
    /// on. Returns the version it replaced.
    pub async fn swap(&self, component: CompiledComponent) -> Result<Arc<Loaded>, LoadError> {
        let loaded = Arc::new(self.shared.parts.load(component).await?);
        let mut current =
            self.shared.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(std::mem::replace(&mut *current, loaded))
    }

    pub fn name(&self) -> &str {
        &self.shared.parts.name
    }

    pub fn role(&self) -> Role {
        self.shared.parts.config.role
    }

    pub fn config(&self) -> &NodeConfig {
        &self.shared.parts.config
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.shared.parts.state
    }

    /// The places client requests take among the process's instances.
    pub fn client_places(&self) -> &Arc<tokio::sync::Semaphore> {
        self.shared.parts.runtime.client_places()
    }

    /// Serves one request with a fresh instance of the current version. Never fails: whatever
    /// goes wrong becomes a JSON error response, and is logged.
    pub async fn handle<B>(&self, request: hyper::Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let name = &self.shared.parts.name;
        match self.shared.run(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let elapsed_us = started.elapsed().as_micros() as u64;
                tracing::debug!(node = %name, %method, %uri, status, elapsed_us, "served");
                response
            }
            Err(failure) => {
                tracing::warn!(node = %name, %method, %uri, error = %failure, "request failed");
                failure.into_response()
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let replication =
            self.replication.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(task) = replication.take() {
            task.abort();
        }
    }
}

impl Shared {
    fn current(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    async fn run<B>(&self, request: hyper::Request<B>) -> Result<Response, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let version = self.current();
        let mut store = self.parts.new_store(version.info.clone());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let answered = Arc::new(AtomicBool::new(false));
        let (req, out) = {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, request).map_err(Failure::host)?;
            let flag = answered.clone();
            let out = http
                .new_response_outparam_from_callback(move |response| {
                    flag.store(true, Ordering::Release);
                    let _ = sender.send(response);
                })
                .map_err(Failure::host)?;
            (req, out)
        };
        let timeout = self.parts.config.request_timeout();
        let name = self.parts.name.clone();
        let task = tokio::spawn(async move {
            let call = async {
                let proxy = version.proxy.instantiate_async(&mut store).await?;
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
            };
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Failure::from_guest(e)),
                Err(_) => Err(Failure::Timeout(timeout)),
            };
            if let Err(failure) = &result
                && answered.load(Ordering::Acquire)
            {
                // The client has its answer; what failed afterwards is for the operator.
                tracing::warn!(node = %name, error = %failure, "component failed after answering");
            }
            result
        });
        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Failure::ErrorCode(code)),
            Err(_) => match task.await {
                Ok(Err(failure)) => Err(failure),
                Ok(Ok(())) => Err(Failure::NoResponse),
                Err(e) => Err(Failure::Host(format!("the request's task failed: {e}"))),
            },
        }
    }

    /// One replication step toward `peer` on the current version, `None` when the version
    /// has no `replicator` (it is not a master).
    async fn step(&self, peer: &str) -> Result<Option<NextStep>, Failure> {
        let wake = self
            .replicator(async |store, replicator| {
                replicator.replog_node_replicator().call_step(store, peer).await
            })
            .await?;
        Ok(wake.map(|Wake { after_ms, on_append }| NextStep {
            after: after_ms.map(Duration::from_millis),
            on_append,
        }))
    }

    /// One round of the master's recovery on the current version, `None` when the version has
    /// no `replicator`.
    async fn recover(&self) -> Result<Option<Recovery>, Failure> {
        let again = self
            .replicator(async |store, replicator| {
                replicator.replog_node_replicator().call_recover(store).await
            })
            .await?;
        Ok(again.map(|again| match again {
            None => Recovery::Done,
            Some(ms) => Recovery::Again(Duration::from_millis(ms)),
        }))
    }

    /// Calls the current version's `replicator` export in a fresh store, within the node's
    /// wall-clock bound.
    async fn replicator<R>(
        &self,
        call: impl AsyncFnOnce(
            &mut Store<RequestCtx>,
            &bindings::replicating::Replicating,
        ) -> wasmtime::Result<R>,
    ) -> Result<Option<R>, Failure> {
        let version = self.current();
        let Some(replicator) = &version.replicator else { return Ok(None) };
        let mut store = self.parts.new_store(version.info.clone());
        let run = async {
            let instance = replicator.instantiate_async(&mut store).await?;
            call(&mut store, &instance).await
        };
        let timeout = self.parts.config.request_timeout();
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(result)) => Ok(Some(result)),
            Ok(Err(e)) => Err(Failure::from_guest(e)),
            Err(_) => Err(Failure::Timeout(timeout)),
        }
    }
}

impl Parts {
    /// Links `component` for this node's role and asks it what it is: one version, ready to
    /// serve.
    async fn load(&self, component: CompiledComponent) -> Result<Loaded, LoadError> {
        let prepared = component.prepare(self.config.role)?;
        let mut info = ComponentInfo {
            path: component.path.clone(),
            sha256: component.sha256.clone(),
            version: "unknown".to_owned(),
            loaded_at: String::new(),
        };
        if let Some(described) = &prepared.described {
            let mut store = self.new_store(Arc::new(info.clone()));
            let failed = |e: wasmtime::Error| LoadError::Describe {
                path: component.path.clone(),
                reason: Failure::from_guest(e).to_string(),
            };
            let instance = described.instantiate_async(&mut store).await.map_err(failed)?;
            let description =
                instance.replog_node_about().call_describe(&mut store).await.map_err(failed)?;
            info.version = description.version;
        }
        info.loaded_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        Ok(Loaded {
            info: Arc::new(info),
            component,
            proxy: prepared.proxy,
            replicator: prepared.replicator,
        })
    }

    /// A store for one call into the component: the node's settings, state and limits, and
    /// the version the call runs on.
    fn new_store(&self, component: Arc<ComponentInfo>) -> Store<RequestCtx> {
        let wasi = WasiCtxBuilder::new()
            .envs(&self.env)
            .stdout(GuestOutput::new(self.name.clone(), Stream::Stdout))
            .stderr(GuestOutput::new(self.name.clone(), Stream::Stderr))
            .build();
        let limits = self.config.limits;
        let ctx = RequestCtx {
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: self.outbound.clone(),
            state: self.state.clone(),
            secret: self.secret.clone(),
            limits: RequestLimits::new(limits.memory_bytes, limits.cpu_budget),
            component,
        };
        let mut store = Store::new(self.runtime.engine(), ctx);
        RequestLimits::install(&mut store, |ctx| &mut ctx.limits);
        store
    }
}

/// Why a node could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The node's state: read back from its data directory, or new in memory.
async fn open_state(config: &NodeConfig) -> Result<NodeState, StorageError> {
    let secondaries: Vec<String> =
        config.secondaries.iter().map(|p| p.as_str().to_owned()).collect();
    let Some(dir) = config.data_dir.clone() else {
        return Ok(NodeState::in_memory(secondaries.iter().map(String::as_str), config.key_window));
    };
    let name = config.name.clone();
    let started = Instant::now();
    let opening = {
        let (dir, name, key_window) = (dir.clone(), name.clone(), config.key_window);
        move || NodeState::open(&dir, &name, secondaries.iter().map(String::as_str), key_window)
    };
    let (state, replayed) = tokio::task::spawn_blocking(opening)
        .await
        .map_err(|e| StorageError::Io { file: dir.clone(), error: std::io::Error::other(e) })??;
    if let Some((file, offset, bytes)) = &replayed.truncated {
        tracing::warn!(
            node = %name,
            file = %file.display(),
            offset,
            bytes,
            "the log ended in a record cut short (a crash while writing it): cut it off"
        );
    }
    tracing::info!(
        node = %name,
        dir = %dir.display(),
        messages = state.log.len(),
        ms = started.elapsed().as_millis() as u64,
        "log read back"
    );
    Ok(state)
}

/// Why a call into the component (a request, a replication step) got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}; the request was stopped")]
    Limit(LimitExceeded),
    #[error("the request took longer than {} ms and was stopped", .0.as_millis())]
    Timeout(Duration),
    #[error("the node is at capacity: {0}")]
    Busy(String),
    #[error("the component failed: {0}")]
    Trap(String),
    #[error("the component answered with an error: {0:?}")]
    ErrorCode(ErrorCode),
    #[error("the component finished without answering")]
    NoResponse,
    #[error("host error: {0}")]
    Host(String),
}

impl Failure {
    fn host(e: wasmtime::Error) -> Self {
        Self::Host(format!("{e:#}"))
    }

    fn from_guest(e: wasmtime::Error) -> Self {
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            return Self::Limit(limit.clone());
        }
        if let Some(busy) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return Self::Busy(busy.to_string());
        }
        // The first line names the trap; the wasm backtrace that follows is for debugging.
        let text = format!("{e:#}");
        Self::Trap(text.lines().next().unwrap_or_default().to_owned())
    }

    fn status(&self) -> u16 {
        match self {
            Failure::Timeout(_) => 504,
            Failure::Busy(_) => 503,
            _ => 500,
        }
    }

    fn into_response(self) -> Response {
        json_error(self.status(), &self.to_string())
    }
}

/// `status` with `{"error": message}`: how the host itself answers, as the components do.
pub fn json_error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    hyper::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync())
        .expect("a valid status and a static header make a valid response")
}
