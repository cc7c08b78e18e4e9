//! One version of a node's component, loaded: linked for the role, and asked what it is and
//! what its settings need before it serves anything; with the instances it keeps.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::answers::KeptAnswers;
use super::base::NodeBase;
use super::bindings::described::DescribedPre;
use super::bindings::described::exports::replog::node::about;
use super::bindings::replicating::{Replicating, ReplicatingPre};
use super::component::{CompiledComponent, LoadError};
use super::ctx::RequestCtx;
use super::failure::Failure;
use super::info::ComponentInfo;
use super::reuse::IdleList;
use crate::config::{HOST_SECRETS, NodeConfig, env_owned_by_host, normalize_authority};

/// How long the questions asked of a version at load (`describe`, `check`) may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A node a component sends requests to, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddress {
    /// The base URL as configured: its name.
    pub(crate) url: String,
    /// `host:port` in the allow-list's form (`config::normalize_authority`).
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
    /// The largest request body it takes (none: the clients' `MAX_BODY_BYTES`).
    pub(crate) largest_request: Option<u64>,
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
            largest_request: None,
        }
    }

    /// What a version answered `about.check` with; an authority the host cannot read is
    /// refused (the text says which).
    pub(crate) fn from_check(needs: about::Needs) -> Result<Self, String> {
        let peers = needs
            .peers
            .into_iter()
            .map(|peer| {
                let authority =
                    http::uri::Authority::try_from(peer.authority.as_str()).map_err(|_| {
                        format!(
                            "peer {} has an authority the host cannot read: {:?}",
                            peer.url, peer.authority
                        )
                    })?;
                Ok(PeerAddress { url: peer.url, authority: normalize_authority(&authority) })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            longest_call: Duration::from_millis(needs.longest_call_ms),
            peers,
            cluster_routes: needs
                .cluster_routes
                .into_iter()
                .map(|route| {
                    let traffic = if route.proven { Traffic::Proven } else { Traffic::Cluster };
                    (route.path, traffic)
                })
                .collect(),
            largest_request: needs.largest_request,
        })
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
pub struct Version {
    /// What it is: file, sha256, version, compile time.
    pub info: Arc<ComponentInfo>,
    pub(crate) needs: Needs,
    /// The environment its calls run with: the node's, and the settings it declares.
    pub(crate) env: Vec<(String, String)>,
    pub(crate) component: CompiledComponent,
    /// Its request handlers.
    pub(crate) handlers: Instances<ProxyPre<RequestCtx>>,
    /// A master's `replicator`, which the replication streams call (none: not a master).
    pub(crate) replicators: Option<Instances<ReplicatingPre<RequestCtx>>>,
    /// The answers it made that the host serves again while the log stands (see `answers`).
    pub(crate) answers: Arc<KeptAnswers>,
}

/// What a version's instances of one world are made from, and those it keeps between calls
/// (see `reuse`): they go away with the version.
pub(crate) struct Instances<P: Instantiate> {
    pre: P,
    pub(crate) idle: IdleList<P::Instance>,
}

impl<P: Instantiate> Instances<P> {
    fn new(pre: P) -> Self {
        Self { pre, idle: IdleList::default() }
    }
}

impl Version {
    /// Links `component` for `base`'s role, asks it what it is and which settings it reads,
    /// then whether those are right: one version, ready to serve, or why not.
    pub(crate) async fn load(
        base: &NodeBase,
        component: CompiledComponent,
    ) -> Result<Self, LoadError> {
        let linked = component.link(base.config.role)?;
        let mut info = ComponentInfo {
            path: component.path.clone(),
            sha256: component.sha256.clone(),
            version: "unknown".to_owned(),
            loaded_at: String::new(),
        };
        let mut needs = Needs::unstated();
        let mut env = base.env.clone();
        if let Some(described) = &linked.described {
            let asked = ask(base, described, Arc::new(info.clone())).await;
            let (description, declared_env, checked) = asked
                .map_err(|reason| LoadError::Describe { path: component.path.clone(), reason })?;
            info.version = description.version;
            env = declared_env;
            let checked = checked.and_then(Needs::from_check);
            needs = checked.map_err(|why| refused(&component, why))?;
        }
        info.loaded_at = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        Ok(Self {
            info: Arc::new(info),
            needs,
            env,
            component,
            handlers: Instances::new(linked.proxy),
            replicators: linked.replicator.map(Instances::new),
            answers: Arc::new(KeptAnswers::new(
                base.state.metrics.http.kept_answers_served.clone(),
                base.state.metrics.http.kept_answers_bytes.clone(),
            )),
        })
    }

    pub(crate) fn component(&self) -> &CompiledComponent {
        &self.component
    }

    /// The largest request body it takes on a node set up as `config`: what it states, else
    /// the clients' `MAX_BODY_BYTES`.
    pub(crate) fn body_limit(&self, config: &NodeConfig) -> u64 {
        self.needs.largest_request.unwrap_or_else(|| config.max_message_bytes())
    }

    /// Instances it keeps idle now.
    pub(crate) fn idle(&self) -> usize {
        self.handlers.idle.len() + self.replicators.as_ref().map_or(0, |r| r.idle.len())
    }

    /// Drops the instances it kept idle for longer than `for_longer`; all with zero.
    pub(crate) fn sweep(&self, for_longer: Duration) {
        self.handlers.idle.sweep(for_longer);
        if let Some(replicators) = &self.replicators {
            replicators.idle.sweep(for_longer);
        }
    }

    /// A new instance of one of its worlds in `store`. When the pool of instance slots is
    /// full, the idle instances this version keeps are given up first: a kept instance must
    /// never turn a call away.
    pub(crate) async fn instantiate<P: Instantiate>(
        &self,
        store: &mut Store<RequestCtx>,
        instances: &Instances<P>,
    ) -> wasmtime::Result<P::Instance> {
        match instances.pre.make(store).await {
            Err(e) if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
                self.sweep(Duration::ZERO);
                instances.pre.make(store).await
            }
            made => made,
        }
    }
}

/// Asks a version what it is (`describe`), then, in a store that holds the settings it
/// declared, whether they are right (`check`): its description, its environment, its answer.
async fn ask(
    base: &NodeBase,
    described: &DescribedPre<RequestCtx>,
    info: Arc<ComponentInfo>,
) -> Result<(about::Description, Vec<(String, String)>, Result<about::Needs, String>), String> {
    let questions = async {
        let mut store = base.new_store(info.clone(), &base.env);
        let instance = described.instantiate_async(&mut store).await?;
        let description = instance.replog_node_about().call_describe(&mut store).await?;
        let env = env_with(base, &description.settings);
        let mut store = base.new_store(info, &env);
        let instance = described.instantiate_async(&mut store).await?;
        let checked = instance.replog_node_about().call_check(&mut store).await?;
        wasmtime::Result::Ok((description, env, checked))
    };
    tokio::time::timeout(LOAD_TIMEOUT, questions)
        .await
        .map_err(|_| format!("no answer within {LOAD_TIMEOUT:?}"))?
        .map_err(|e| Failure::from_guest(e).to_string())
}

/// The node's environment plus each of `declared` that is set where the node runs and was
/// not given explicitly; never the host's secrets, nor a setting the host writes itself.
fn env_with(base: &NodeBase, declared: &[String]) -> Vec<(String, String)> {
    let mut env = base.env.clone();
    for name in declared {
        if !HOST_SECRETS.contains(&name.as_str())
            && !env_owned_by_host(name)
            && env.iter().all(|(given, _)| given != name)
            && let Some(value) = base.config.environment.get(name)
        {
            env.push((name.clone(), value.clone()));
        }
    }
    env
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
