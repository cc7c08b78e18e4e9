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
    fn status(&mut self) -> wasmtime::Result<sequencer::Standing> {
        let sequencer = self.sequencer()?;
        let mode = match sequencer.mode() {
            state::Mode::Recovering(why) => sequencer::Mode::Recovering(why),
            state::Mode::Open(epoch) => sequencer::Mode::Open(epoch),
            state::Mode::Fenced(epoch) => sequencer::Mode::Fenced(epoch),
        };
        Ok(sequencer::Standing { mode, epoch: sequencer.log().epoch() })
    }

    async fn append(
        &mut self,
        msg: String,
        key: Option<String>,
    ) -> wasmtime::Result<Result<sequencer::Appended, types::LogError>> {
        let trace = self.request_id.cloned();
        let appended = self.sequencer()?.append(msg, key, trace).await;
        let (state::Appended { seq, duplicate }, epoch) = match appended {
            Ok(appended) => appended,
            Err(error) => return Ok(Err(error.into())),
        };
        let request_id = self.request_id.map(|id| &**id);
        tracing::debug!(node = self.node, seq, epoch, duplicate, request_id, "appended");
        Ok(Ok(sequencer::Appended { seq, duplicate }))
    }

    async fn restore(
        &mut self,
        begin: Option<log::Position>,
        entries: Vec<log::Entry>,
    ) -> wasmtime::Result<Result<u64, types::LogError>> {
        let entries = entries.into_iter().map(Into::into).collect();
        let begin = begin.map(|log::Position { seq, epoch }| state::Position { seq, epoch });
        Ok(self.sequencer()?.restore(begin, entries).await.map_err(Into::into))
    }

    async fn open(&mut self, epoch: u64) -> wasmtime::Result<Result<(), types::LogError>> {
        Ok(self.sequencer()?.open(epoch).await.map_err(Into::into))
    }

    fn hold(&mut self, reason: String) -> wasmtime::Result<()> {
        self.sequencer()?.hold(reason);
        Ok(())
    }

    fn fence(&mut self, epoch: u64) -> wasmtime::Result<()> {
        self.sequencer()?.fence(epoch);
        Ok(())
    }

    fn commit(&mut self, seq: u64) -> wasmtime::Result<u64> {
        self.sequencer()?;
        Ok(self.state.log().commit(seq))
    }

    fn settled(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        self.sequencer()?;
        let settled = self.table.push(Settled(self.state.clone()))?;
        subscribe(self.table, settled)
    }
}

impl NodeView<'_> {
    /// The node's state as a master's, or a trap: a component called a master's import on a
    /// node that is not one (a version linked for another role, or a role changed under it).
    fn sequencer(&self) -> wasmtime::Result<&state::Sequencer> {
        self.state.sequencer().ok_or_else(|| {
            wasmtime::format_err!("node {} is not a master: it has no sequencer", self.node)
        })
    }
}

/// The pollable behind `sequencer.settled`.
struct Settled(Arc<state::NodeState>);

#[wasmtime_wasi::async_trait]
impl Pollable for Settled {
    async fn ready(&mut self) {
        if let Some(sequencer) = self.0.sequencer() {
            sequencer.settled().await;
        }
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

impl From<state::PeerRecord> for peers::Peer {
    fn from(peer: state::PeerRecord) -> Self {
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
    fn all(&mut self) -> wasmtime::Result<Vec<peers::Peer>> {
        Ok(self.sequencer()?.peers().all().into_iter().map(Into::into).collect())
    }

    fn get(&mut self, url: String) -> wasmtime::Result<Option<peers::Peer>> {
        Ok(self.sequencer()?.peers().get(&url).map(Into::into))
    }

    fn told(&mut self, url: String) -> wasmtime::Result<u64> {
        Ok(self.sequencer()?.peers().get(&url).map_or(0, |peer| peer.told))
    }

    fn record_told(&mut self, url: String, seq: u64) -> wasmtime::Result<()> {
        self.sequencer()?.peers().record_told(&url, seq);
        Ok(())
    }

    fn record_ack(&mut self, url: String, acked: u64, synced: bool) -> wasmtime::Result<()> {
        self.sequencer()?.peers().record_ack(&url, acked, synced);
        Ok(())
    }

    fn record_contact(&mut self, url: String, contact: peers::Contact) -> wasmtime::Result<()> {
        let peers::Contact { outcome, status, failures, answered_ms, error, delay_ms } = contact;
        let outcome = match outcome {
            peers::Outcome::Acknowledged(entries) => ContactOutcome::Acknowledged(entries),
            peers::Outcome::Repairing(entries) => ContactOutcome::Repairing(entries),
            peers::Outcome::Fenced => ContactOutcome::Fenced,
            peers::Outcome::Failed => ContactOutcome::Failed,
        };
        let peers = self.sequencer()?.peers();
        self.state.metrics.replication.contact(&url, outcome);
        let contact =
            state::Contact { status: status.into(), failures, answered_ms, error, delay_ms };
        peers.record_contact(&url, contact);
        Ok(())
    }

    fn wait_acked(&mut self, seq: u64, count: u32) -> wasmtime::Result<Resource<DynPollable>> {
        self.sequencer()?;
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
        if let Some(sequencer) = self.state.sequencer() {
            sequencer.peers().wait_acked(self.seq, self.count).await;
            self.timer.met();
        }
    }
}
