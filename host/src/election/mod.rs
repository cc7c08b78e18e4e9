//! Who is master, decided by etcd: a leader key under the cluster's prefix, created in a
//! transaction only if absent and bound to a lease its holder keeps alive (`etcd`: the calls;
//! `rules`: how long a holder may act, who may campaign, whether the timings hold together).
//!
//! The key's create revision is the new master's epoch: etcd's revisions are cluster-wide and
//! strictly increasing, so a later master's epoch is above every earlier one's, and the
//! secondaries' epoch check fences a deposed master wherever it runs, whatever it believes.
//!
//! This is the election alone; a node that runs it, changes role and forwards writes is the
//! rest of the failover issue (see the README's note on failover).

mod etcd;
mod rules;

use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use self::etcd::{Created, Etcd, EtcdError, KeyValue};
pub use self::rules::{LeaseClock, Timings, may_campaign};

/// The cluster prefix unless `CLUSTER_NAME` says otherwise.
pub const DEFAULT_CLUSTER_NAME: &str = "replog";

/// Why an election step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    /// etcd did not answer, or not as etcd would.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The leader key holds something that does not name a node: ignored, never followed.
    #[error("the leader key {key} holds {value:?}, which names no node: ignored")]
    BadLeader {
        /// The key.
        key: String,
        /// What it holds, as text.
        value: String,
    },
}

/// A node that may become master: how the others name and reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its member name.
    pub name: String,
    /// Its base URL.
    pub url: String,
}

/// The master etcd names now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// Who it is.
    pub node: Candidate,
    /// Its epoch: the leader key's create revision.
    pub epoch: u64,
}

/// A master's hold on the leader key: its lease, its epoch, how long it may act.
#[derive(Debug, Clone)]
pub struct Term {
    lease: i64,
    /// Its epoch: the leader key's create revision.
    pub epoch: u64,
    /// How long it may act on it (see `rules`).
    pub clock: LeaseClock,
}

/// What a campaign came to.
#[derive(Debug, Clone)]
pub enum Campaign {
    /// This node holds the key now.
    Won(Term),
    /// Another node does.
    Lost(Leader),
}

/// The election of one cluster on one etcd.
#[derive(Debug, Clone)]
pub struct Election {
    etcd: Etcd,
    key: String,
    timings: Timings,
}

impl Election {
    /// The election of cluster `cluster` (its keys under `cluster/`, so that clusters sharing
    /// an etcd never see each other's), with `timings`.
    pub fn new(etcd: Etcd, cluster: &str, timings: Timings) -> Self {
        Self { etcd, key: format!("{cluster}/leader"), timings }
    }

    /// The leader key's name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The master etcd names now, if any.
    pub async fn leader(&self) -> Result<Option<Leader>, ElectionError> {
        let Some(held) = self.etcd.get(&self.key).await? else { return Ok(None) };
        self.leader_from(held).map(Some)
    }

    /// Tries to become master: a new lease, then the leader key created on it if absent. The
    /// lease of a lost campaign is revoked at once.
    pub async fn campaign(&self, me: &Candidate) -> Result<Campaign, ElectionError> {
        let sent_at = Instant::now();
        let lease = self.etcd.grant(self.timings.ttl).await?;
        let value = serde_json::to_vec(me).expect("a candidate is JSON");
        // On an error, whether the key was created is unknown: the lease is left to lapse on
        // its own rather than revoked under a key that may be this node's.
        match self.etcd.create(&self.key, &value, lease).await? {
            Created::Now(epoch) => Ok(Campaign::Won(Term {
                lease,
                epoch,
                clock: LeaseClock::new(sent_at, self.timings.renew_deadline),
            })),
            Created::Held(held) => {
                let _ = self.etcd.revoke(lease).await;
                Ok(Campaign::Lost(self.leader_from(held)?))
            }
        }
    }

    /// Renews `term`'s lease; returns whether it still holds (false: the lease expired, the
    /// term is over). Its clock moves only on a confirmed renewal.
    pub async fn renew(&self, term: &mut Term) -> Result<bool, ElectionError> {
        let sent_at = Instant::now();
        match self.etcd.keep_alive(term.lease).await? {
            Some(_) => {
                term.clock.renewed(sent_at);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Gives the key up now (on shutdown), so that another node need not wait for the TTL:
    /// the key is deleted only if it is still this term's, and the lease revoked.
    pub async fn resign(&self, term: Term) -> Result<(), ElectionError> {
        self.etcd.delete_if_created_at(&self.key, term.epoch).await?;
        self.etcd.revoke(term.lease).await?;
        Ok(())
    }

    fn leader_from(&self, held: KeyValue) -> Result<Leader, ElectionError> {
        let bad = || ElectionError::BadLeader {
            key: self.key.clone(),
            value: String::from_utf8_lossy(&held.value).into_owned(),
        };
        let node: Candidate = serde_json::from_slice(&held.value).map_err(|_| bad())?;
        if node.name.is_empty() || held.create_revision == 0 {
            return Err(bad());
        }
        Ok(Leader { node, epoch: held.create_revision })
    }
}
