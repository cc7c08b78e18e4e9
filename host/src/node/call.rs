//! Running one call into a node's component: a request, a replication step, a recovery round,
//! or the questions a version is asked when it is loaded. A call runs on an instance of the
//! version kept from an earlier call (`reuse`), or on a new one cut from the pre-instantiated
//! component (as `wasmtime serve` does), with the node's settings, state and limits, a whole
//! CPU budget of its own, and a wall-clock bound from what the version said its longest call
//! takes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use super::bindings::replicating::{self, exports::replog::node::replicator::Wake};
use super::component::{CompiledComponent, LoadError};
use super::ctx::RequestCtx;
use super::detach::Detachable;
use super::failure::{Failure, Response};
use super::info::ComponentInfo;
use super::output::{GuestOutput, Naming, Stream};
use super::reuse::{Idle, Kept};
use super::version::{self, Loaded, Needs};
use crate::config::{CALL_TIMEOUT_MARGIN, HOST_SECRETS, NodeConfig};
use crate::outbound::{Outbound, Trace};
use crate::runtime::{RequestLimits, Runtime};
use crate::secret::ClusterSecret;
use crate::state::NodeState;

/// How long the questions asked of a version at load (`describe`, `check`) may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// When a replication stream runs its next step, as the component's `replicator` decided:
/// after `after`, or as soon as the log grows if `on_append`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextStep {
    /// Run again after this long (`None`: only when the log grows).
    pub after: Option<Duration>,
    /// Run again as soon as the log grows.
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

/// Everything of a node but its component version: what every store of it is built from.
pub(crate) struct Parts {
    pub(crate) name: Arc<str>,
    pub(crate) config: NodeConfig,
    pub(crate) runtime: Runtime,
    pub(crate) state: Arc<NodeState>,
    pub(crate) secret: Option<ClusterSecret>,
    pub(crate) outbound: Outbound,
    /// Who the node is and the settings given to it: the environment of every version, which
    /// adds the settings it declares from where the node runs.
    pub(crate) env: Vec<(String, String)>,
}

/// What a node's requests and replication streams share.
pub(crate) struct Shared {
    pub(crate) parts: Parts,
    pub(crate) current: RwLock<Arc<Loaded>>,
}

impl Shared {
    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Serves one request on the current version, on an instance it kept or a new one. The
    /// request waits only for the response, driving the call itself until then; a call that
    /// goes on after answering (a master may answer its client once enough secondaries hold a
    /// message, a long body is written as the client reads it) runs on in a task of its own.
    pub(crate) async fn run<B>(
        &self,
        request: hyper::Request<B>,
        id: Arc<str>,
    ) -> Result<Response, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let version = self.current();
        let (mut store, kept) = self.parts.store_for(&version, &version.idle, Trace::Request(id));
        let (sender, mut receiver) = tokio::sync::oneshot::channel();
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
        let timeout = call_timeout(&version.needs);
        let name = self.parts.name.clone();
        let state = self.parts.state.clone();
        let reuse = self.parts.config.limits.reuse;
        let mut call = Detachable::new(async move {
            let _in_use = state.metrics.runtime.in_use();
            let call = async {
                let (proxy, calls) = match kept {
                    Some(kept) => kept,
                    None => (version.instantiate(&mut store, &version.proxy).await?, 0),
                };
                proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await?;
                wasmtime::Result::Ok((proxy, calls))
            };
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(Ok((proxy, calls))) => {
                    let memory = store.data().limits.memory();
                    version.idle.give_back(Kept::new(store, proxy, calls), reuse, memory);
                    Ok(())
                }
                Ok(Err(e)) => Err(Failure::from_guest(e)),
                Err(_) => Err(Failure::Timeout(timeout)),
            };
            if let Err(failure) = &result {
                failure.count(&state.metrics.runtime);
            }
            if let Err(failure) = &result
                && answered.load(Ordering::Acquire)
            {
                // The client has its answer; what failed afterwards is for the operator.
                tracing::warn!(node = %name, error = %failure, "component failed after answering");
            }
            result
        });
        // Whatever ends first: the call (its response, if it gave one, is waiting), or its
        // response (the call, if it goes on, is detached when this returns).
        let ended = tokio::select! {
            biased;
            ended = &mut call => ended,
            response = &mut receiver => match response {
                Ok(response) => return response.map_err(Failure::ErrorCode),
                // It dropped its response without setting it: it is ending.
                Err(_) => call.await,
            },
        };
        match receiver.try_recv() {
            Ok(response) => response.map_err(Failure::ErrorCode),
            Err(_) => Err(ended.err().unwrap_or(Failure::NoResponse)),
        }
    }

    /// One replication step toward `peer` on the current version, `None` when the version
    /// has no `replicator` (it is not a master).
    pub(crate) async fn step(&self, peer: &str) -> Result<Option<NextStep>, Failure> {
        let wake = self
            .replicator(Trace::Carried(Vec::new()), async |store, replicator| {
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
    pub(crate) async fn recover(&self) -> Result<Option<Recovery>, Failure> {
        let again = self
            .replicator(Trace::None, async |store, replicator| {
                replicator.replog_node_replicator().call_recover(store).await
            })
            .await?;
        Ok(again.map(|again| match again {
            None => Recovery::Done,
            Some(ms) => Recovery::Again(Duration::from_millis(ms)),
        }))
    }

    /// Calls the current version's `replicator` export, on an instance it kept or a new one,
    /// within its bound.
    async fn replicator<R>(
        &self,
        trace: Trace,
        call: impl AsyncFnOnce(&mut Store<RequestCtx>, &replicating::Replicating) -> wasmtime::Result<R>,
    ) -> Result<Option<R>, Failure> {
        let version = self.current();
        let Some(pre) = &version.replicator else { return Ok(None) };
        let idle = &version.idle_replicators;
        let (mut store, kept) = self.parts.store_for(&version, idle, trace);
        let _in_use = self.parts.state.metrics.runtime.in_use();
        let run = async {
            let (instance, calls) = match kept {
                Some(kept) => kept,
                None => (version.instantiate(&mut store, pre).await?, 0),
            };
            let result = call(&mut store, &instance).await?;
            wasmtime::Result::Ok((result, instance, calls))
        };
        let timeout = call_timeout(&version.needs);
        let failure = match tokio::time::timeout(timeout, run).await {
            Ok(Ok((result, instance, calls))) => {
                let memory = store.data().limits.memory();
                let reuse = self.parts.config.limits.reuse;
                idle.give_back(Kept::new(store, instance, calls), reuse, memory);
                return Ok(Some(result));
            }
            Ok(Err(e)) => Failure::from_guest(e),
            Err(_) => Failure::Timeout(timeout),
        };
        failure.count(&self.parts.state.metrics.runtime);
        Err(failure)
    }
}

/// The wall-clock bound on one call of a version that needs `needs`.
fn call_timeout(needs: &Needs) -> Duration {
    needs.longest_call + CALL_TIMEOUT_MARGIN
}

impl Parts {
    /// Links `component` for this node's role, asks it what it is and which settings it reads,
    /// then whether those are right: one version, ready to serve, or why not.
    pub(crate) async fn load(&self, component: CompiledComponent) -> Result<Loaded, LoadError> {
        let prepared = component.prepare(self.config.role)?;
        let mut info = ComponentInfo {
            path: component.path.clone(),
            sha256: component.sha256.clone(),
            version: "unknown".to_owned(),
            loaded_at: String::new(),
        };
        let mut needs = Needs::unstated();
        let mut env = self.env.clone();
        if let Some(described) = &prepared.described {
            let failed =
                |reason: String| LoadError::Describe { path: component.path.clone(), reason };
            let info_now = Arc::new(info.clone());
            let questions = async {
                let mut store = self.new_store(info_now.clone(), &env);
                let instance = described.instantiate_async(&mut store).await?;
                let description = instance.replog_node_about().call_describe(&mut store).await?;
                // Its settings are read when it checks them: in a store that holds them.
                let env = self.env_with(&description.settings);
                let mut store = self.new_store(info_now, &env);
                let instance = described.instantiate_async(&mut store).await?;
                let checked = instance.replog_node_about().call_check(&mut store).await?;
                wasmtime::Result::Ok((description, env, checked))
            };
            let (description, declared_env, checked) =
                tokio::time::timeout(LOAD_TIMEOUT, questions)
                    .await
                    .map_err(|_| failed(format!("no answer within {LOAD_TIMEOUT:?}")))?
                    .map_err(|e| failed(Failure::from_guest(e).to_string()))?;
            info.version = description.version;
            env = declared_env;
            needs = Needs::from_check(checked.map_err(|why| version::refused(&component, why))?);
        }
        info.loaded_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        Ok(Loaded {
            info: Arc::new(info),
            needs,
            env,
            component,
            proxy: prepared.proxy,
            replicator: prepared.replicator,
            idle: Idle::default(),
            idle_replicators: Idle::default(),
        })
    }

    /// The node's environment plus each of `declared` that is set where the node runs and was
    /// not given explicitly; never the host's secrets.
    fn env_with(&self, declared: &[String]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for name in declared {
            if !HOST_SECRETS.contains(&name.as_str())
                && env.iter().all(|(given, _)| given != name)
                && let Some(value) = self.config.environment.get(name)
            {
                env.push((name.clone(), value.clone()));
            }
        }
        env
    }

    /// A store for one call of `version`: one of its kept instances (with how many calls it
    /// served) when `idle` has one, else a new store to instantiate in. Either way set up for
    /// a call serving `trace`.
    fn store_for<T>(
        &self,
        version: &Loaded,
        idle: &Idle<T>,
        trace: Trace,
    ) -> (Store<RequestCtx>, Option<(T, u32)>) {
        let (mut store, kept) = match idle.take() {
            Some(Kept { store, instance, calls, .. }) => (store, Some((instance, calls))),
            None => (self.new_store(version.info.clone(), &version.env), None),
        };
        self.prepare(&mut store, trace);
        (store, kept)
    }

    /// Sets `store` up for its next call: the client requests it serves (`trace`), a whole
    /// CPU budget.
    fn prepare(&self, store: &mut Store<RequestCtx>, trace: Trace) {
        let request_id = match &trace {
            Trace::Request(id) => Some(id.clone()),
            Trace::None | Trace::Carried(_) => None,
        };
        let ctx = store.data_mut();
        *ctx.naming.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = request_id.clone();
        ctx.request_id = request_id;
        ctx.outbound = self.outbound.for_call(trace);
        RequestLimits::renew(store, |ctx| &mut ctx.limits);
    }

    /// A store for calls into the component: its environment, the node's state and limits,
    /// and the version the calls run on.
    pub(crate) fn new_store(
        &self,
        component: Arc<ComponentInfo>,
        env: &[(String, String)],
    ) -> Store<RequestCtx> {
        let naming = Naming::default();
        let output = |stream| GuestOutput::new(self.name.clone(), stream, naming.clone());
        let wasi = WasiCtxBuilder::new()
            .envs(env)
            .stdout(output(Stream::Stdout))
            .stderr(output(Stream::Stderr))
            .build();
        let limits = self.config.limits;
        let ctx = RequestCtx {
            node: self.name.clone(),
            request_id: None,
            table: ResourceTable::new(),
            wasi,
            http: WasiHttpCtx::new(),
            outbound: self.outbound.for_call(Trace::None),
            state: self.state.clone(),
            secret: self.secret.clone(),
            limits: RequestLimits::new(limits.memory_bytes, limits.cpu_budget),
            component,
            naming,
        };
        let mut store = Store::new(self.runtime.engine(), ctx);
        RequestLimits::install(&mut store, |ctx| &mut ctx.limits);
        store
    }
}
