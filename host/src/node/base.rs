//! Everything of a node but its component version: who it is, its settings, state, secret and
//! allow-list, and the stores its calls run in.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use super::ctx::RequestCtx;
use super::info::ComponentInfo;
use super::output::{GuestOutput, OutputStream, ServedRequest};
use crate::config::NodeConfig;
use crate::outbound::{Outbound, Trace};
use crate::runtime::{RequestLimits, Runtime};
use crate::secret::ClusterSecret;
use crate::state::NodeState;

/// Everything of a node but its component version: what every store of it is built from.
pub(crate) struct NodeBase {
    pub(crate) name: Arc<str>,
    pub(crate) config: NodeConfig,
    pub(crate) runtime: Runtime,
    pub(crate) state: Arc<NodeState>,
    pub(crate) secret: Option<ClusterSecret>,
    pub(crate) outbound: Outbound,
    /// Who the node is and the settings given to it: the environment of every version, which
    /// adds the settings it declares from where the node runs.
    pub(crate) env: Vec<(String, String)>,
    /// The node's places for tails (`Edge::max_tails`), which `log.follow` hands out.
    pub(crate) tails: super::bindings::TailPlaces,
}

impl NodeBase {
    /// A store for calls into the component: its environment, the node's state and limits,
    /// and the version the calls run on.
    pub(crate) fn new_store(
        &self,
        component: Arc<ComponentInfo>,
        env: &[(String, String)],
    ) -> Store<RequestCtx> {
        let served = ServedRequest::default();
        let output = |stream| GuestOutput::new(self.name.clone(), stream, served.clone());
        let wasi = WasiCtxBuilder::new()
            .envs(env)
            .stdout(output(OutputStream::Stdout))
            .stderr(output(OutputStream::Stderr))
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
            tails: self.tails.clone(),
            secret: self.secret.clone(),
            limits: RequestLimits::new(limits.memory_bytes, limits.cpu_budget),
            component,
            served,
            keep: None,
        };
        let mut store = Store::new(self.runtime.engine(), ctx);
        RequestLimits::install(&mut store, |ctx| &mut ctx.limits);
        store
    }

    /// Sets `store` up for its next call: the client request it serves (`trace`), a whole
    /// CPU budget.
    pub(crate) fn prepare(&self, store: &mut Store<RequestCtx>, trace: Trace) {
        let request_id = match &trace {
            Trace::Request(id) => Some(id.clone()),
            Trace::None | Trace::Carried(_) => None,
        };
        let ctx = store.data_mut();
        *ctx.served.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = request_id.clone();
        ctx.request_id = request_id;
        ctx.keep = None;
        ctx.outbound = self.outbound.for_call(trace);
        RequestLimits::renew(store, |ctx| &mut ctx.limits);
    }
}
