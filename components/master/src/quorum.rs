//! Taking writes only with a majority: the master counts itself and every secondary that is
//! not unhealthy (a suspected one still counts: it may only be slow), and refuses writes when
//! that is not more than half of all nodes. Reads go on; writes resume by themselves once
//! enough secondaries answer again.

use serde::Serialize;

use crate::bindings::replog::node::peers::{self, Status};

/// Why the master does not take writes right now: the body of its `503`.
#[derive(Debug, Serialize)]
pub struct Refusal {
    pub error: String,
    pub healthy_nodes: u64,
    pub nodes: u64,
    pub majority: u64,
    pub unhealthy: Vec<String>,
}

/// `Ok` when a majority of the `nodes` (master included) can take writes.
pub fn check(nodes: u64) -> Result<(), Refusal> {
    let all = peers::all();
    let unhealthy: Vec<String> =
        all.iter().filter(|p| p.status == Status::Unhealthy).map(|p| p.url.clone()).collect();
    let healthy_nodes = nodes - unhealthy.len() as u64;
    let majority = nodes / 2 + 1;
    if healthy_nodes >= majority {
        return Ok(());
    }
    Err(Refusal {
        error: format!(
            "read-only: only {healthy_nodes} of {nodes} nodes are healthy and writes need a majority of {majority}; nothing was appended. Unhealthy: {}",
            unhealthy.join(", ")
        ),
        healthy_nodes,
        nodes,
        majority,
        unhealthy,
    })
}
