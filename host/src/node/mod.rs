//! A node: one component serving HTTP requests over a state that outlives them.
//!
//! - `base`: everything of a node but its component version, and the stores its calls run in;
//! - `component`: a component file compiled and linked for a role;
//! - `version`: a version loaded, with what it says of itself and of its settings' needs
//!   (`info`: what identifies it), and the instances it keeps between calls (`reuse`);
//! - `call`: the one way a call into the current version runs (a request, a step, a recovery
//!   round), which a request drives itself (`detach`: until it outlives the request);
//! - `streams`: a master's recovery and replication streams;
//! - `bindings`, `ctx`, `output`: the host side of the contract (translating to `state`, where
//!   the rules are) and of one call's store;
//! - `answers`: the answers a version said depend on the log alone, served again while it
//!   stands;
//! - `failure`: what the host answers when a call gets no answer.

mod answers;
mod base;
mod bindings;
mod call;
mod component;
mod ctx;
mod detach;
mod failure;
mod info;
mod output;
mod request_id;
mod reuse;
mod streams;
mod version;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;

use self::base::NodeBase;
use self::call::NodeCore;
pub use self::call::{NextStep, Recovery};
pub use self::component::{CompiledComponent, LoadError, read, sha256};
pub(crate) use self::failure::whole;
pub use self::failure::{Failure, Response, ResponseBody, json_error};
pub use self::info::ComponentInfo;
pub use self::version::{Needs, PeerAddress, Traffic, Version};
use crate::config::{NodeConfig, Role};
use crate::metrics::{Reading, SecondaryReading, StateSet};
use crate::outbound::Outbound;
use crate::proof::{self, Refusal};
use crate::runtime::Runtime;
use crate::state::{self, NodeState, StorageError};

/// A node: its configuration, its state, and the version of its component that serves.
pub struct Node {
    core: Arc<NodeCore>,
    /// A master's replication: its recovery, then a stream per secondary (see `streams`).
    replication: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Drops the instances kept idle too long (see `reuse`).
    sweeper: tokio::task::JoinHandle<()>,
    /// The largest request body the node was set up for (its first version's): what its body
    /// budget keeps for the cluster's own traffic, and the most a swapped-in version may take.
    body_reserve: u64,
}

/// Why a node could not be set up: its component, its state, or settings that do not fit.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The component cannot serve this node.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The node's log on disk cannot be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node's settings cannot be used.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl Node {
    /// Sets up a node around an already compiled component: opens its state, then sets the
    /// component up over it (see `over`).
    pub async fn new(
        runtime: &Runtime,
        config: NodeConfig,
        component: CompiledComponent,
    ) -> Result<Self, NodeError> {
        let kind = config.role.state_kind();
        let state = state::open(
            kind,
            config.data_dir.clone(),
            &config.name,
            config.key_window,
            config.retention,
        )
        .await?;
        Self::over(runtime, config, component, state).await
    }

    /// The same node in another role, without a restart: `config` (its new role and that
    /// role's settings; a master's `elected_epoch`, when an election made it) and `component`
    /// over this node's log, lock and metrics. From here on this node changes the log no more:
    /// a master is fenced (by `fenced_by`, the master that took over, or else the epoch after
    /// its own) and its replication stopped; a secondary takes no more changes. A new master
    /// starts recovering. Calls already running on this node finish on it; whoever serves it
    /// serves the new node from here on (see `Seat`).
    pub async fn succeed(
        &self,
        config: NodeConfig,
        component: CompiledComponent,
        fenced_by: Option<u64>,
    ) -> Result<Self, NodeError> {
        let kind = config.role.state_kind();
        let epoch = match kind {
            state::RoleKind::Sequencer => config.elected_epoch,
            state::RoleKind::Replica => fenced_by,
        };
        let state = self.state().hand_over(kind, epoch);
        self.stop_replication().await;
        tracing::info!(
            node = self.name(),
            from = %self.role(),
            to = %config.role,
            epoch,
            "changing role: the log stays, the component changes"
        );
        state.metrics.runtime.role_changed();
        Self::over(&self.core.base.runtime, config, component, state).await
    }

    /// Sets up a node around `state`: checks that the component fits the role, asks it what it
    /// is and what its settings need, and allows its outbound requests to the peers it names,
    /// only.
    async fn over(
        runtime: &Runtime,
        config: NodeConfig,
        component: CompiledComponent,
        state: NodeState,
    ) -> Result<Self, NodeError> {
        let name: Arc<str> = config.name.as_str().into();
        let state = Arc::new(state);
        state.metrics.runtime.compiled(component.compile_time);
        let replication_metrics = state.metrics.replication.clone();
        let mut base = NodeBase {
            outbound: Outbound::new(
                &name,
                Vec::new(),
                runtime.client().clone(),
                replication_metrics.clone(),
            ),
            env: config.component_env(),
            tails: bindings::TailPlaces::new(config.edge.max_tails),
            secret: config.secret.clone(),
            state,
            name,
            runtime: runtime.clone(),
            config,
        };
        let loaded = Version::load(&base, component).await?;
        let body_reserve = loaded.body_limit(&base.config);
        base.config.check_budget(body_reserve)?;
        let peers = &loaded.needs.peers;
        base.outbound = Outbound::new(
            &base.name,
            peers.iter().map(|p| (p.authority.clone(), p.url.clone())),
            runtime.client().clone(),
            replication_metrics,
        );
        if let Some(sequencer) = base.state.sequencer() {
            sequencer.peers().configure(peers.iter().map(|p| p.url.as_str()));
        }
        let core = Arc::new(NodeCore { base, current: RwLock::new(Arc::new(loaded)) });
        let sweeper = tokio::spawn(sweep(Arc::downgrade(&core)));
        Ok(Self { core, replication: Mutex::new(None), sweeper, body_reserve })
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
            *replication = Some(tokio::spawn(streams::replicate(self.core.clone())));
        }
    }

    /// Stops a master's replication and waits until it has, so that nothing of this node is
    /// still running once it returns.
    pub(crate) async fn stop_replication(&self) {
        let task = self.replication.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Resolves once a master has finished recovering (it is open, or fenced).
    pub async fn settled(&self) {
        if let Some(sequencer) = self.core.base.state.sequencer() {
            sequencer.settled().await;
        }
    }

    /// The version new requests run on.
    pub fn current(&self) -> Arc<Version> {
        self.core.current()
    }

    /// Runs one replication step toward `peer` now, as its stream would; `None` when the
    /// component is not a master. For tests and tools: the streams run steps by themselves.
    pub async fn replication_step(&self, peer: &str) -> Result<Option<NextStep>, Failure> {
        self.core.step(peer).await
    }

    /// Runs one round of recovery now, as `start_replication` would; `None` when the
    /// component is not a master. For tests and tools.
    pub async fn recovery_round(&self) -> Result<Option<Recovery>, Failure> {
        self.core.recover().await
    }

    /// Makes `component` the version new requests run on, once it has linked for this node's
    /// role, described itself and accepted its settings; until then, and if that fails, the
    /// current version serves on. A version that names other peers, or takes larger requests
    /// than the node was set up for, is refused: the node's allow-list, streams and body
    /// budget are set when it starts. Returns the version it replaced.
    pub(crate) async fn swap(
        &self,
        component: CompiledComponent,
    ) -> Result<Arc<Version>, LoadError> {
        let loaded = Arc::new(Version::load(&self.core.base, component).await?);
        let urls =
            |l: &Version| l.needs.peers.iter().map(|p| p.url.clone()).collect::<HashSet<_>>();
        let limit = loaded.body_limit(self.config());
        if limit > self.body_reserve {
            return Err(LoadError::Settings {
                path: loaded.info.path.clone(),
                message: format!(
                    "it takes requests of up to {limit} bytes, more than the {} this node's body \
                     budget was set up for; restart the node to take them",
                    self.body_reserve
                ),
            });
        }
        let mut current =
            self.core.current.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if urls(&loaded) != urls(&current) {
            return Err(LoadError::Settings {
                path: loaded.info.path.clone(),
                message: "it names other peers than the version serving; restart the node to \
                          change its peers"
                    .to_owned(),
            });
        }
        Ok(std::mem::replace(&mut *current, loaded))
    }

    /// Its name in logs and in the cluster: `master`, `secondary1`, ...
    pub fn name(&self) -> &str {
        &self.core.base.name
    }

    pub(crate) fn role(&self) -> Role {
        self.core.base.config.role
    }

    pub(crate) fn config(&self) -> &NodeConfig {
        &self.core.base.config
    }

    /// What it keeps between requests: the log, and its role's state.
    pub fn state(&self) -> &Arc<NodeState> {
        &self.core.base.state
    }

    /// The largest request body the node takes now, as its current version states.
    pub(crate) fn body_limit(&self) -> u64 {
        self.current().body_limit(self.config())
    }

    /// Bytes of request bodies the node holds at once, and how many of them are kept for the
    /// cluster's own traffic.
    pub(crate) fn body_budget(&self) -> (u64, u64) {
        (self.config().body_budget(self.body_reserve), self.body_reserve)
    }

    /// The places client requests take among the process's instances.
    pub(crate) fn client_places(&self) -> &Arc<tokio::sync::Semaphore> {
        self.core.base.runtime.client_places()
    }

    /// Whose traffic a request is, and, for a route that takes proven requests only, whether
    /// its `Authorization` header alone already shows it cannot be proven: then the `401` to
    /// answer, so that its body need not be read.
    pub(crate) fn screen(&self, request: &http::request::Parts) -> Result<Traffic, Refusal> {
        let traffic = self.current().needs.traffic(request.uri.path());
        if traffic == Traffic::Proven && self.core.base.secret.is_some() {
            proof::screen(authorization(&request.headers), proof::now_ms())?;
        }
        Ok(traffic)
    }

    /// Checks the proof of a request to a route that takes proven requests only (without a
    /// cluster secret, the node runs insecure and takes them all).
    fn prove(&self, request: &http::Request<Bytes>) -> Result<(), Refusal> {
        let Some(secret) = &self.core.base.secret else { return Ok(()) };
        if self.current().needs.traffic(request.uri().path()) != Traffic::Proven {
            return Ok(());
        }
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        proof::screen(authorization(request.headers()), proof::now_ms())?.check(
            secret,
            request.method().as_str(),
            path,
            request.body(),
        )
    }

    /// Serves one request, its body whole, on the current version. A request to a route that
    /// takes proven requests only reaches the component only with the cluster's proof. Never
    /// fails: whatever goes wrong becomes a JSON error response, and is logged. The request's
    /// id (its `X-Request-Id`, or a new one) is in the answer and in every log line about it.
    pub async fn handle(&self, mut request: http::Request<Bytes>) -> Response {
        let started = Instant::now();
        let id = request_id::take_or_make(request.headers_mut());
        let method = request.method().clone();
        let uri = request.uri().clone();
        let (name, role) = (&*self.core.base.name, self.role().name());
        let request_id = &*id;
        let outcome = match self.prove(&request) {
            Ok(()) => self.core.run(request.map(Full::new), id.clone()).await,
            Err(refusal) => {
                // Counted by the HTTP metrics (a `401` on the route); at debug, so that a flood of
                // forgeries cannot flood the log too.
                tracing::debug!(node = name, role, request_id, %method, %uri, "refused: no valid proof of membership");
                Ok(unauthorized(&refusal))
            }
        };
        let mut response = match outcome {
            Ok(response) => {
                let status = response.status().as_u16();
                let elapsed_us = started.elapsed().as_micros() as u64;
                tracing::debug!(node = name, role, request_id, %method, %uri, status, elapsed_us, "served");
                response
            }
            Err(failure) => {
                tracing::warn!(node = name, role, request_id, %method, %uri, error = %failure, "request failed");
                failure.into_response()
            }
        };
        if self.lease_lapsed(&method, &response) {
            tracing::warn!(node = name, role, request_id, %method, %uri, "not acknowledged: this master's lease may have run out");
            response = lease_lapsed();
        }
        if let Ok(value) = http::HeaderValue::try_from(&*id) {
            response.headers_mut().insert(crate::outbound::REQUEST_ID, value);
        }
        response
    }

    /// Whether `response`, a success to a request that may change the log, must not leave: this
    /// node is an elected master whose lease may have run out (checked now, when the answer is
    /// ready, so that a master paused past its lease acknowledges nothing when it wakes).
    fn lease_lapsed(&self, method: &http::Method, response: &Response) -> bool {
        let changes = !matches!(*method, http::Method::GET | http::Method::HEAD);
        changes
            && response.status().is_success()
            && self.state().sequencer().is_some_and(|s| !s.may_act_at(Instant::now()))
    }

    /// Its metrics in Prometheus' text format, with the levels read from its state now.
    pub fn metrics(&self) -> String {
        let state = self.state();
        let version = self.current();
        let sequencer = state.sequencer();
        let reading = Reading {
            role: self.role().name(),
            node: self.name().to_owned(),
            log_entries: state.log().len(),
            log_first_seq: state.log().start(),
            log_committed: state.log().committed(),
            tails: self.core.base.tails.in_use() as u64,
            rendered_bytes: state.log().rendered_bytes() as u64,
            log_bytes: state.log().bytes(),
            epoch: state.log().epoch(),
            master_state: sequencer.map(|sequencer| StateSet {
                all: &state::Mode::WORDS,
                now: sequencer.mode().word(),
            }),
            secondaries: sequencer
                .map(|sequencer| sequencer.peers().all())
                .unwrap_or_default()
                .into_iter()
                .map(|peer| SecondaryReading {
                    status: StateSet { all: &state::PeerStatus::WORDS, now: peer.status.word() },
                    url: peer.url,
                    acked: peer.acked,
                    failures: peer.failures,
                })
                .collect(),
            instances_idle: version.idle() as u64,
            component_sha256: version.info.sha256.clone(),
            component_version: version.info.version.clone(),
        };
        state.metrics.render(&reading)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.sweeper.abort();
        let replication =
            self.replication.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(task) = replication.take() {
            task.abort();
        }
    }
}

/// A request's `Authorization` header, as bytes.
fn authorization(headers: &http::HeaderMap) -> Option<&[u8]> {
    headers.get(http::header::AUTHORIZATION).map(http::HeaderValue::as_bytes)
}

/// `401` for a request without valid proof of membership.
pub(crate) fn unauthorized(refusal: &proof::Refusal) -> Response {
    let mut response = json_error(401, &refusal.to_string());
    response
        .headers_mut()
        .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static(proof::SCHEME));
    response
}

/// `503` for a write a master may not acknowledge: its lease may have run out, so another
/// master may have been elected. It may have been numbered already: a retry with the same
/// idempotency key is answered once for it, wherever it lands.
fn lease_lapsed() -> Response {
    let mut response = json_error(
        503,
        "not acknowledged: this master's lease may have run out and another master may have \
         been elected; retry (with the same id) on the current master",
    );
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    response
}

/// Every half `reuse::IDLE_FOR`, drops the current version's instances idle for that long,
/// until the node is gone (a replaced version's go with it).
async fn sweep(node: std::sync::Weak<NodeCore>) {
    let mut every = tokio::time::interval(reuse::IDLE_FOR / 2);
    loop {
        every.tick().await;
        let Some(node) = node.upgrade() else { return };
        node.current().sweep(reuse::IDLE_FOR);
    }
}
