//! replog's host: a small wasmtime runtime whose nodes run the replicated log's logic as
//! WebAssembly components, while the log itself lives here, in the host.
//!
//! - [`config`]: what a node is told to be, checked once.
//! - [`runtime`]: the shared engine and the limits on each request.
//! - [`node`]: one component serving requests over state that outlives them.
//! - [`state`]: that state, the log and the master's view of its peers.
//! - [`metrics`]: what a node counts and measures, for Prometheus.
//! - [`outbound`]: components' outgoing HTTP, allowed to the node's peers only.
//! - [`secret`]: the cluster secret nodes prove themselves with; [`proof`]: how a request
//!   carries that proof, and how it is checked.
//! - [`privileges`]: giving up root once the secret is read (containers).
//! - [`server`], [`cluster`]: listening, and running several nodes in one process.
//! - [`reload`]: swapping in new component versions while nodes serve.
//! - [`election`]: who is master, decided by etcd (a leader key under a lease; its create
//!   revision is the master's epoch); [`elected`]: a node that follows that election and
//!   changes role in the running process; [`seat`]: the node a port serves (and, for an
//!   elected one, where writes are forwarded).
//! - [`components`]: where the built `.wasm` files are found.
//! - [`command`]: running plain WASI command components (`replog run`).
//! - `deploy`, [`probe`]: what runs a cluster on Compose, Swarm and Kubernetes, and the
//!   containers' health check.
//! - `status`: `replog status`, the cluster as a table.
//! - [`cli`]: the `replog` command line.

#![warn(missing_docs)]

pub mod cli;
pub(crate) mod client;
pub mod cluster;
pub mod command;
pub mod components;
pub mod config;
pub(crate) mod console;
pub(crate) mod deploy;
pub mod elected;
pub mod election;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod privileges;
pub mod probe;
pub mod proof;
pub mod reload;
pub mod runtime;
pub mod seat;
pub mod secret;
pub mod server;
pub mod state;
pub(crate) mod status;
