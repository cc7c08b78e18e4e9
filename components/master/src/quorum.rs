//! Taking writes only with a majority: the master counts itself and every secondary that is
//! not unhealthy (a suspected one still counts: it may only be slow), and refuses writes when
//! that is not more than half of all nodes. Reads go on; writes resume by themselves once
//! enough secondaries answer again.

use serde::Serialize;

use crate::bindings::replog::node::peers::{Peer, Status};

/// Why the master does not take writes right now: the body of its `503`.
#[derive(Debug, Serialize)]
pub struct NoMajority {
    /// What is wrong and what was not done, in a sentence.
    pub error: String,
    /// The nodes that count: the master and every secondary that is not unhealthy.
    pub healthy_nodes: u64,
    /// All nodes: the master and every secondary.
    pub nodes: u64,
    /// How many must count for writes to be taken.
    pub majority: u64,
    /// The secondaries that do not count, so that an operator knows which to look at.
    pub unhealthy: Vec<String>,
}

/// `Ok` when a majority of the `nodes` (master included) can take writes, given the
/// `secondaries` as the host holds them.
pub fn check(nodes: u64, secondaries: &[Peer]) -> Result<(), NoMajority> {
    let unhealthy: Vec<String> = secondaries
        .iter()
        .filter(|p| p.status == Status::Unhealthy)
        .map(|p| p.url.clone())
        .collect();
    let healthy_nodes = nodes - unhealthy.len() as u64;
    let majority = nodes / 2 + 1;
    if healthy_nodes >= majority {
        return Ok(());
    }
    Err(NoMajority {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(url: &str, status: Status) -> Peer {
        Peer {
            url: url.to_owned(),
            acked: 0,
            synced: true,
            status,
            failures: 0,
            last_contact_ms: None,
            last_error: None,
            delay_ms: None,
        }
    }

    #[test]
    fn a_suspected_secondary_still_counts_an_unhealthy_one_does_not() {
        let (a, b) = ("http://a", "http://b");
        assert!(check(3, &[peer(a, Status::Suspected), peer(b, Status::Unhealthy)]).is_ok());
        let refused = check(3, &[peer(a, Status::Unhealthy), peer(b, Status::Unhealthy)])
            .expect_err("one of three is no majority");
        assert_eq!((refused.healthy_nodes, refused.majority), (1, 2));
        assert_eq!(refused.unhealthy, [a, b]);
        assert!(check(1, &[]).is_ok(), "a master alone is its own majority");
    }

    #[test]
    fn an_even_cluster_needs_more_than_half() {
        let (a, b, c) = ("http://a", "http://b", "http://c");
        // Two nodes: a majority is both of them.
        assert!(check(2, &[peer(a, Status::Healthy)]).is_ok());
        assert!(check(2, &[peer(a, Status::Suspected)]).is_ok(), "suspected still counts");
        let refused = check(2, &[peer(a, Status::Unhealthy)]).expect_err("half is no majority");
        assert_eq!((refused.healthy_nodes, refused.nodes, refused.majority), (1, 2, 2));
        // Four nodes: three of them.
        let one_down =
            [peer(a, Status::Healthy), peer(b, Status::Suspected), peer(c, Status::Unhealthy)];
        assert!(check(4, &one_down).is_ok());
        let two_down =
            [peer(a, Status::Healthy), peer(b, Status::Unhealthy), peer(c, Status::Unhealthy)];
        let refused = check(4, &two_down).expect_err("two of four is no majority");
        assert_eq!((refused.healthy_nodes, refused.majority), (2, 3));
        assert_eq!(refused.unhealthy, [b, c]);
        assert!(refused.error.contains("2 of 4") && refused.error.contains("majority of 3"));
    }
}
