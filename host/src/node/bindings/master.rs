//! What a master imports: `sequencer` (numbering writes, its mode through recovery) and
//! `peers` (its view of its secondaries).

use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::NodeView;
use super::replog::node::{log, peers, sequencer, types};
use crate::metrics::{AckWaitTimer, ContactOutcome};
use crate::state;

impl sequencer::Host for NodeView<'_> {
    fn status(&mut self) -> sequencer::Standing {
        let mode = match self.state.gate.mode() {
            state::Mode::Recovering(why) => sequencer::Mode::Recovering(why),
            state::Mode::Open(epoch) => sequencer::Mode::Open(epoch),
            state::Mode::Fenced(epoch) => sequencer::Mode::Fenced(epoch),
        };
        sequencer::Standing { mode, epoch: self.state.log.epoch() }
    }

    async fn append(
        &mut self,
        msg: String,
        key: Option<String>,
    ) -> Result<sequencer::Appended, types::LogError> {
        let epoch = match self.state.gate.mode() {
            state::Mode::Open(epoch) => epoch,
            state::Mode::Recovering(why) => return Err(closed(format!("recovering: {why}"))),
            state::Mode::Fenced(by) => {
                return Err(closed(format!("fenced: a master with epoch {by} has taken over")));
            }
        };
        let trace = self.request_id.cloned();
        let state::Appended { seq, duplicate } =
            self.state.log.append_traced(msg, epoch, key, trace).await?;
        let request_id = self.request_id.map(|id| &**id);
        tracing::debug!(node = self.node, seq, epoch, duplicate, request_id, "appended");
        Ok(sequencer::Appended { seq, duplicate })
    }

    async fn restore(&mut self, entries: Vec<log::Entry>) -> Result<u64, types::LogError> {
        self.recovering()?;
        let log = &self.state.log;
        let change = state::Change {
            version: log.version(),
            // The epochs of what the replica held are epochs this node has now seen.
            epoch: entries.iter().map(|e| e.epoch).max().unwrap_or(0),
            truncate_after: None,
            entries: entries.into_iter().map(Into::into).collect(),
        };
        log.write(change).await?;
        Ok(log.len())
    }

    async fn open(&mut self, epoch: u64) -> Result<(), types::LogError> {
        self.recovering()?;
        let log = &self.state.log;
        let highest = log.epoch().max(log.last().epoch);
        if epoch <= highest {
            return Err(types::LogError::Invalid(format!(
                "epoch {epoch} is not above {highest}, the highest this node has recorded"
            )));
        }
        let change = state::Change { version: log.version(), epoch, ..state::Change::default() };
        log.write(change).await?;
        self.state.gate.open(epoch);
        Ok(())
    }

    fn hold(&mut self, reason: String) {
        self.state.gate.hold(reason);
    }

    fn fence(&mut self, epoch: u64) {
        self.state.gate.fence(epoch);
    }

    fn settled(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let settled = self.table.push(Settled(self.state.clone()))?;
        subscribe(self.table, settled)
    }
}

impl NodeView<'_> {
    fn recovering(&self) -> Result<(), types::LogError> {
        match self.state.gate.mode() {
            state::Mode::Recovering(_) => Ok(()),
            mode => Err(closed(format!("recovery is over ({mode:?})"))),
        }
    }
}

fn closed(why: String) -> types::LogError {
    types::LogError::Closed(why)
}

/// The pollable behind `sequencer.settled`.
struct Settled(Arc<state::NodeState>);

#[wasmtime_wasi::async_trait]
impl Pollable for Settled {
    async fn ready(&mut self) {
        self.0.gate.settled().await;
    }
}

impl From<state::PeerStatus> for peers::Status {
    fn from(status: state::PeerStatus) -> Self {
        match status {
            state::PeerStatus::Healthy => Self::Healthy,
            state::PeerStatus::Suspected => Self::Suspected,
            state::PeerStatus::Unhealthy => Self::Unhealthy,
        }
    }
}

impl From<peers::Status> for state::PeerStatus {
    fn from(status: peers::Status) -> Self {
        match status {
            peers::Status::Healthy => Self::Healthy,
            peers::Status::Suspected => Self::Suspected,
            peers::Status::Unhealthy => Self::Unhealthy,
        }
    }
}

impl From<state::Peer> for peers::Peer {
    fn from(peer: state::Peer) -> Self {
        Self {
            url: peer.url,
            acked: peer.acked,
            synced: peer.synced,
            status: peer.status.into(),
            failures: peer.failures,
            last_contact_ms: peer.last_contact_ms,
            last_error: peer.last_error,
            delay_ms: peer.delay_ms,
        }
    }
}

impl peers::Host for NodeView<'_> {
    fn all(&mut self) -> Vec<peers::Peer> {
        self.state.peers.all().into_iter().map(Into::into).collect()
    }

    fn get(&mut self, url: String) -> Option<peers::Peer> {
        self.state.peers.get(&url).map(Into::into)
    }

    fn record_ack(&mut self, url: String, acked: u64, synced: bool) {
        self.state.peers.record_ack(&url, acked, synced);
    }

    fn record_contact(&mut self, url: String, contact: peers::Contact) {
        let peers::Contact { outcome, status, failures, answered_ms, error, delay_ms } = contact;
        let outcome = match outcome {
            peers::Outcome::Acknowledged(entries) => ContactOutcome::Acknowledged(entries),
            peers::Outcome::Repairing(entries) => ContactOutcome::Repairing(entries),
            peers::Outcome::Fenced => ContactOutcome::Fenced,
            peers::Outcome::Failed => ContactOutcome::Failed,
        };
        self.state.metrics.replication.contact(&url, outcome);
        let contact =
            state::Contact { status: status.into(), failures, answered_ms, error, delay_ms };
        self.state.peers.record_contact(&url, contact);
    }

    fn wait_acked(&mut self, seq: u64, count: u32) -> wasmtime::Result<Resource<DynPollable>> {
        let timer = self.state.metrics.replication.wait();
        let wait = AckWait { state: self.state.clone(), seq, count: count as usize, timer };
        let wait = self.table.push(wait)?;
        subscribe(self.table, wait)
    }
}

/// The pollable behind `peers.wait-acked`: ready once enough secondaries hold `seq`. Its
/// timer counts the wait as met then, or as given up if the writer drops it first.
struct AckWait {
    state: Arc<state::NodeState>,
    seq: u64,
    count: usize,
    timer: AckWaitTimer,
}

#[wasmtime_wasi::async_trait]
impl Pollable for AckWait {
    async fn ready(&mut self) {
        self.state.peers.wait_acked(self.seq, self.count).await;
        self.timer.met();
    }
}
