//! What every role says about itself: its identity and what its settings need of the host
//! (`replog:node/about`, exported through [`crate::export_about!`]), and the shape of `GET /health`.

use std::time::Duration;

use serde::Serialize;

use crate::host::host_info;
use crate::http::Response;
use crate::peer::PeerUrl;

/// What a role's settings need of the host (`about.needs`): the host enforces these, so they
/// are stated by the component, which alone knows its wire and its waits.
pub struct Needs {
    /// The longest one call may legitimately take: the host stops a call after this and a
    /// margin.
    pub longest_call: Duration,
    /// The nodes it sends requests to: the only ones it may reach.
    pub peers: Vec<PeerUrl>,
    /// The routes of the cluster's own traffic, and which take members only.
    pub cluster_routes: Vec<crate::auth::ClusterRoute>,
    /// The largest request body it takes (none: the clients' `MAX_BODY_BYTES`).
    pub largest_request: Option<u64>,
}

impl Needs {
    /// A replog node's needs: `longest_call` (at least a tail's, which every node serves:
    /// [`crate::tail::LONGEST_TAIL`]), `peers`, and the cluster's routes every node serves
    /// ([`crate::auth::CLUSTER_ROUTES`]); requests up to the clients' limit.
    pub fn node(longest_call: Duration, peers: Vec<PeerUrl>) -> Self {
        Self {
            longest_call: longest_call.max(crate::tail::LONGEST_TAIL),
            peers,
            cluster_routes: crate::auth::CLUSTER_ROUTES.to_vec(),
            largest_request: None,
        }
    }

    /// The same, taking request bodies up to `bytes`.
    pub fn taking_requests_up_to(self, bytes: u64) -> Self {
        Self { largest_request: Some(bytes), ..self }
    }
}

/// Exports `replog:node/about` for the role type `$role`, with the crate's bindings module
/// named after `with_types_in` (as wit-bindgen's own `export!`): its name, this build's version, the names of the settings it reads
/// (`$settings`, a `&[&str]`), and `$check`, a function that reads and checks them
/// (`Result<Needs, BadSetting>`).
#[macro_export]
macro_rules! export_about {
    ($role:ty, $name:literal, $settings:expr, $check:expr, with_types_in $bindings:ident) => {
        impl $bindings::exports::replog::node::about::Guest for $role {
            fn describe() -> $bindings::exports::replog::node::about::Description {
                $bindings::exports::replog::node::about::Description {
                    name: $name.into(),
                    version: $crate::about::version(),
                    settings: $settings.iter().map(|name: &&str| (*name).to_owned()).collect(),
                }
            }

            fn check() -> Result<$bindings::exports::replog::node::about::Needs, String> {
                let $crate::about::Needs { longest_call, peers, cluster_routes, largest_request } =
                    $check().map_err(|e: $crate::settings::BadSetting| e.to_string())?;
                Ok($bindings::exports::replog::node::about::Needs {
                    longest_call_ms: u64::try_from(longest_call.as_millis()).unwrap_or(u64::MAX),
                    peers: peers
                        .into_iter()
                        .map(|peer| $bindings::exports::replog::node::about::PeerAddress {
                            authority: peer.authority,
                            url: peer.url,
                        })
                        .collect(),
                    cluster_routes: cluster_routes
                        .into_iter()
                        .map(|route| $bindings::exports::replog::node::about::ClusterRoute {
                            path: route.path.to_owned(),
                            proven: route.proven,
                        })
                        .collect(),
                    largest_request,
                })
            }
        }
    };
}

/// This build's version: the crate version, plus `+TAG` when `REPLOG_COMPONENT_TAG` was set
/// at build time (to stamp a build with a commit, say, or to tell two test builds apart).
pub fn version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match option_env!("REPLOG_COMPONENT_TAG") {
        Some(tag) if !tag.is_empty() => format!("{version}+{tag}"),
        _ => version.to_owned(),
    }
}

/// The version serving this request, as the host sees it, shaped for `GET /health`.
#[derive(Serialize)]
pub struct ServingVersion {
    /// Hex sha256 of its `.wasm` file.
    pub sha256: String,
    /// What it reported of itself (`describe`).
    pub version: String,
    /// When the host started serving it, RFC 3339.
    pub loaded_at: String,
}

/// The version serving this request, from the host.
pub fn serving_version() -> ServingVersion {
    let host_info::LoadedComponent { sha256, version, loaded_at } = host_info::component();
    ServingVersion { sha256, version, loaded_at }
}

/// `GET /health` of `role`, with the log's length, the role's own fields (`fields`, an object
/// whose fields are spliced in), and the running version.
pub fn health(role: &'static str, fields: &impl Serialize) -> Response {
    #[derive(Serialize)]
    struct Health<'a, T> {
        status: &'static str,
        role: &'static str,
        count: u64,
        /// The commit point as this node knows it.
        committed: u64,
        /// The first `seq` the log holds (above 1 once retention removed older entries).
        first_seq: u64,
        /// Bytes of the log's files (0 in memory).
        disk_bytes: u64,
        /// Entries retention removed since the node started.
        removed: u64,
        #[serde(flatten)]
        fields: &'a T,
        /// Whether node-to-node requests are signed (false: started `--insecure`).
        authenticated: bool,
        component: ServingVersion,
    }
    let disk = crate::host::log::disk();
    Response::json(
        200,
        &Health {
            status: "ok",
            role,
            count: crate::host::log::len(),
            committed: crate::host::log::committed(),
            first_seq: crate::host::log::start(),
            disk_bytes: disk.bytes,
            removed: disk.removed,
            fields,
            authenticated: crate::auth::enabled(),
            component: serving_version(),
        },
    )
}

/// `GET /ready` of `role`: `200` when the node can do its job, `503` with why not (`Err`). Apart
/// from `/health`, which says only that the node answers, so that orchestrators route to, and
/// wait for, nodes that are of use.
pub fn ready(role: &'static str, readiness: Result<(), String>) -> Response {
    #[derive(Serialize)]
    struct Ready {
        ready: bool,
        role: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    }
    let (status, error) = match readiness {
        Ok(()) => (200, None),
        Err(why) => (503, Some(why)),
    };
    let response = Response::json(status, &Ready { ready: error.is_none(), role, error });
    if status == 200 { response } else { response.with_header("retry-after", "1") }
}
