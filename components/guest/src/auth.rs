//! How a node's requests to another prove they come from a member of the cluster, and which
//! routes take only such requests.
//!
//! The proof (an HMAC-SHA256 under the cluster secret, in the `Authorization` header) and its
//! checking are the host's, which holds the key: it refuses an unproven request to a route a
//! role declares `proven` before the role's component sees it. What is left here is the
//! policy: which routes are the cluster's own, which of them need proof, and signing what a
//! master sends.

use crate::host::auth as host;

/// A route of the cluster's own traffic, as the host is told of it (`about.cluster-route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterRoute {
    /// Its path. (A constant here, where the WIT's `about.cluster-route` is generated in each
    /// role's bindings, which this crate cannot name.)
    pub path: &'static str,
    /// Whether only the cluster's members may use it.
    pub proven: bool,
}

/// The routes every replog node serves to the rest of the cluster: `/replicate`, which only
/// the master may use (on a master too: whatever its role, a node takes node-to-node requests
/// from members only), and `/health`, which masters poll and clients may read.
pub const CLUSTER_ROUTES: [ClusterRoute; 2] = [
    ClusterRoute { path: "/replicate", proven: true },
    ClusterRoute { path: "/health", proven: false },
];

/// Whether this node runs with a cluster secret (without one it was started `--insecure`).
pub fn enabled() -> bool {
    host::enabled()
}

/// The `Authorization` value for `method path_with_query` with `body`, signed now by the host;
/// none when the node runs without a secret.
pub fn authorization(method: &str, path_with_query: &str, body: &[u8]) -> Option<String> {
    host::authorization(method, path_with_query, body)
}
