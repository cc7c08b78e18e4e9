//! One version of a node's component, loaded: linked for the role, and asked what it is and
//! what its settings need before it serves anything.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::bindings::described::exports::replog::node::about;
use super::bindings::replicating::{Replicating, ReplicatingPre};
use super::component::{CompiledComponent, LoadError};
use super::ctx::RequestCtx;
use super::info::ComponentInfo;
use super::reuse::Idle;

/// A node a component sends requests to, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// The base URL as configured: its name.
    pub(crate) url: String,
    /// `host:port` in the allow-list's form.
    pub(crate) authority: String,
}

/// What a version's settings need of the host (`about.check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The longest one call may legitimately take.
    pub(crate) longest_call: Duration,
    /// The only nodes its outbound requests may reach; a master's secondaries.
    pub(crate) peers: Vec<PeerAddress>,
    /// The paths of the cluster's own traffic, and which of them take proven requests only.
    pub(crate) cluster_routes: Vec<(String, Traffic)>,
}

/// Whose traffic a request is, by its path, as the serving version declared its routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// A client's: it may not use what is reserved for the cluster's own traffic.
    Client,
    /// The cluster's own, open to anyone (`/health`): it may use the reserve.
    Cluster,
    /// The cluster's own, from its members only: the host refuses it unless it carries the
    /// cluster's proof (`proof`), and it may use the reserve.
    Proven,
}

impl Needs {
    /// A component that says nothing of its needs: it calls no one, no call of it waits long,
    /// and every request to it is a client's.
    pub(crate) fn unstated() -> Self {
        Self {
            longest_call: Duration::from_secs(60),
            peers: Vec::new(),
            cluster_routes: Vec::new(),
        }
    }

    pub(crate) fn from_check(needs: about::Needs) -> Self {
        Self {
            longest_call: Duration::from_millis(needs.longest_call_ms),
            peers: needs
                .peers
                .into_iter()
                .map(|p| PeerAddress { url: p.url, authority: p.authority })
                .collect(),
            cluster_routes: needs
                .cluster_routes
                .into_iter()
                .map(|route| {
                    let traffic = if route.proven { Traffic::Proven } else { Traffic::Cluster };
                    (route.path, traffic)
                })
                .collect(),
        }
    }

    /// Whose traffic a request to `path` is.
    pub(crate) fn traffic(&self, path: &str) -> Traffic {
        self.cluster_routes
            .iter()
            .find(|(route, _)| route == path)
            .map_or(Traffic::Client, |(_, traffic)| *traffic)
    }
}

/// One version of the node's component, ready to serve. A request holds the version it
/// started with until it ends, so swapping in another never disturbs it.
pub struct Loaded {
    /// What it is: file, sha256, version, compile time.
    pub info: Arc<ComponentInfo>,
    pub(crate) needs: Needs,
    /// The environment its calls run with: the node's, and the settings it declares.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) component: CompiledComponent,
    pub(crate) proxy: ProxyPre<RequestCtx>,
    pub(crate) replicator: Option<ReplicatingPre<RequestCtx>>,
    /// Its instances kept between requests, and between replication steps (see `reuse`):
    /// they go away with the version.
    pub(crate) idle: Idle<Proxy>,
    pub(crate) idle_replicators: Idle<Replicating>,
}

impl Loaded {
    pub(crate) fn component(&self) -> &CompiledComponent {
        &self.component
    }

    /// A new instance of `pre` (one of this version's) in `store`. When the pool of instance
    /// slots is full, the idle instances this version keeps are given up first: a kept
    /// instance must never turn a call away.
    pub(crate) async fn instantiate<P: Instantiate>(
        &self,
        store: &mut Store<RequestCtx>,
        pre: &P,
    ) -> wasmtime::Result<P::Instance> {
        match pre.make(store).await {
            Err(e) if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
                self.idle.sweep(Duration::ZERO);
                self.idle_replicators.sweep(Duration::ZERO);
                pre.make(store).await
            }
            made => made,
        }
    }
}

/// Something a version's instances are made from: a pre-instantiated world.
pub(crate) trait Instantiate {
    type Instance;
    async fn make(&self, store: &mut Store<RequestCtx>) -> wasmtime::Result<Self::Instance>;
}

impl Instantiate for ProxyPre<RequestCtx> {
    type Instance = Proxy;
    async fn make(&self, store: &mut Store<RequestCtx>) -> wasmtime::Result<Proxy> {
        self.instantiate_async(store).await
    }
}

impl Instantiate for ReplicatingPre<RequestCtx> {
    type Instance = Replicating;
    async fn make(&self, store: &mut Store<RequestCtx>) -> wasmtime::Result<Self::Instance> {
        self.instantiate_async(store).await
    }
}

/// Why the settings a version was given were refused by it.
pub(crate) fn refused(component: &CompiledComponent, message: String) -> LoadError {
    LoadError::Settings { path: component.path.clone(), message }
}
