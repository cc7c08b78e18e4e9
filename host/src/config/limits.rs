//! What one request, and one client, may take of a node.

use std::time::Duration;

/// Bounds on what one request may use. A request over them fails alone; the node serves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time the component may spend executing (not waiting) for one request.
    pub cpu_budget: Duration,
    /// Largest linear memory one request's instance may grow to.
    pub memory_bytes: usize,
    /// Calls one component instance serves, one after another, before it is thrown away
    /// (1: a fresh instance for every call). An instance is thrown away sooner after a trap,
    /// a limit or a timeout, or when its version is replaced.
    pub reuse: u32,
}

impl Limits {
    /// Calls an instance serves by default: enough that making instances costs next to
    /// nothing, few enough that a slow leak in a component cannot grow for long.
    pub const DEFAULT_REUSE: u32 = 1000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            cpu_budget: Duration::from_secs(2),
            memory_bytes: 128 << 20,
            reuse: Self::DEFAULT_REUSE,
        }
    }
}

/// The HTTP edge: how long a client may take and how much it may hold, so that slow or
/// careless clients cannot tie a node up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// How long a connection may wait for its next request (keep-alive) before it is closed.
    pub idle_timeout: Duration,
    /// How long a request may take from its first byte to the end of its headers; past it the
    /// client gets `408` and the connection is closed.
    pub header_timeout: Duration,
    /// How long a request's whole body may take to arrive; past it, `408`. The body is
    /// received before a component instance is taken for the request.
    pub body_timeout: Duration,
    /// Connections a node keeps open at once; one more is answered `503` and closed.
    pub max_connections: usize,
    /// Bytes of request bodies a node holds at once, across all its connections; past it a
    /// request waits for room, or gets `503`. `None`: the default for the node's body limit
    /// (`NodeConfig::body_budget`).
    pub body_budget_bytes: Option<u64>,
    /// Tails (long-polls and event streams) a node serves at once; one more gets `503`. Each
    /// holds a place among the instances for as long as it lives, so this keeps followers
    /// from taking the places writes and reads need.
    pub max_tails: usize,
}

impl Edge {
    /// The smallest default budget for request bodies: room for many ordinary writes at once.
    pub const MIN_DEFAULT_BODY_BUDGET: u64 = 32 << 20;

    /// Tails a node serves by default when clients have `places` among the instances: 256, or a
    /// quarter of the places when that is fewer (at least 1), so that tails leave most places
    /// to writes and reads.
    pub fn default_tails(places: usize) -> usize {
        (places / 4).clamp(1, Self::MOST_DEFAULT_TAILS)
    }

    /// The default `max_tails` with the default number of instances.
    pub const MOST_DEFAULT_TAILS: usize = 256;
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 1024,
            body_budget_bytes: None,
            max_tails: Self::MOST_DEFAULT_TAILS,
        }
    }
}
