//! The data of one request's store: WASI, `wasi:http`, the node's state and the limits.

use std::sync::Arc;

use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::answers::KeepCell;
use super::bindings::NodeView;
use super::info::ComponentInfo;
use super::output::ServedRequest;
use crate::outbound::Outbound;
use crate::runtime::RequestLimits;
use crate::secret::ClusterSecret;
use crate::state::NodeState;

pub(crate) struct RequestCtx {
    /// The node's name, for logs.
    pub(super) node: Arc<str>,
    /// The client request this call serves, if it serves one.
    pub(super) request_id: Option<Arc<str>>,
    pub(super) table: ResourceTable,
    pub(super) wasi: WasiCtx,
    pub(super) http: WasiHttpCtx,
    pub(super) outbound: Outbound,
    pub(super) state: Arc<NodeState>,
    /// The node's places for tails.
    pub(super) tails: super::bindings::TailPlaces,
    pub(super) secret: Option<ClusterSecret>,
    pub(super) limits: RequestLimits,
    /// The component version this request runs on, for `host-info`.
    pub(super) component: Arc<ComponentInfo>,
    /// The request its output lines name (shared with its stdout and stderr), set per call.
    pub(super) served: ServedRequest,
    /// Whether the component asked for its answer to be kept (`log.keep-answer`): a cell of
    /// the request's own, set per call.
    pub(super) keep: Option<KeepCell>,
}

impl WasiView for RequestCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RequestCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

/// Marks `NodeView` as what the `replog:node` imports borrow from a `RequestCtx`.
pub(crate) struct ReplogNode;

impl HasData for ReplogNode {
    type Data<'a> = NodeView<'a>;
}

pub(crate) fn node_view(ctx: &mut RequestCtx) -> NodeView<'_> {
    NodeView {
        node: &ctx.node,
        request_id: ctx.request_id.as_ref(),
        state: &ctx.state,
        tails: &ctx.tails,
        limits: &ctx.limits,
        secret: ctx.secret.as_ref(),
        component: &ctx.component,
        keep: ctx.keep.as_ref(),
        table: &mut ctx.table,
        outbound: &mut ctx.outbound,
    }
}
