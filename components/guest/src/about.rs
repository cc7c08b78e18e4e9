//! What every role says about itself: its identity and what its settings need of the host
//! (`replog:node/about`, exported through [`export_about!`]), and the shape of `GET /health`.

use std::time::Duration;

use serde::Serialize;

use crate::host::host_info;
use crate::http::Response;
use crate::peer::Peer;

/// What a role's settings need of the host: the longest one of its calls may take, the peers
/// it sends requests to, and the routes of the cluster's own traffic it serves.
pub struct Needs {
    pub longest_call: Duration,
    pub peers: Vec<Peer>,
    pub cluster_routes: Vec<crate::auth::ClusterRoute>,
}

impl Needs {
    /// A replog node's needs: `longest_call`, `peers`, and the cluster's routes every node
    /// serves ([`crate::auth::CLUSTER_ROUTES`]).
    pub fn node(longest_call: Duration, peers: Vec<Peer>) -> Self {
        Self { longest_call, peers, cluster_routes: crate::auth::CLUSTER_ROUTES.to_vec() }
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
                let $crate::about::Needs { longest_call, peers, cluster_routes } =
                    $check().map_err(|e: $crate::settings::BadSetting| e.to_string())?;
                Ok($bindings::exports::replog::node::about::Needs {
                    longest_call_ms: u64::try_from(longest_call.as_millis()).unwrap_or(u64::MAX),
                    peers: peers
                        .into_iter()
                        .map(|peer| $bindings::exports::replog::node::about::Peer {
                            authority: peer.normalized_authority(),
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

/// The running version as the host sees it, shaped for `GET /health`.
#[derive(Serialize)]
pub struct Running {
    pub sha256: String,
    pub version: String,
    pub loaded_at: String,
}

pub fn running() -> Running {
    let host_info::LoadedComponent { sha256, version, loaded_at } = host_info::component();
    Running { sha256, version, loaded_at }
}

/// `GET /health` of `role`, with the log's length, the role's own fields (`fields`, an object
/// whose fields are spliced in), and the running version.
pub fn health(role: &'static str, fields: &impl Serialize) -> Response {
    #[derive(Serialize)]
    struct Health<'a, T> {
        status: &'static str,
        role: &'static str,
        count: u64,
        #[serde(flatten)]
        fields: &'a T,
        /// Whether node-to-node requests are signed (false: started `--insecure`).
        authenticated: bool,
        component: Running,
    }
    Response::json(
        200,
        &Health {
            status: "ok",
            role,
            count: crate::host::log::len(),
            fields,
            authenticated: crate::auth::enabled(),
            component: running(),
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
