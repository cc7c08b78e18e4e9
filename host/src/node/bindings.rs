//! The host side of the `replog:node` contract (see `wit/node.wit`).

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::secret::ClusterSecret;
use crate::state;

wasmtime::component::bindgen!({
    path: "../wit",
    interfaces: "
        import replog:node/log@0.4.0;
        import replog:node/sequencer@0.4.0;
        import replog:node/replica@0.4.0;
        import replog:node/peers@0.4.0;
        import replog:node/auth@0.4.0;
        import replog:node/host-info@0.4.0;
    ",
    // Writes wait for the disk (group commit) without holding up the thread.
    imports: {
        "replog:node/peers.wait-acked": trappable,
        "replog:node/sequencer.settled": trappable,
        "replog:node/sequencer.append": async,
        "replog:node/sequencer.restore": async,
        "replog:node/sequencer.open": async,
        "replog:node/replica.write": async,
    },
    with: { "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll },
});

/// The `replicator` export of the master component, called by the replication streams.
pub mod replicating {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package replog:host;
            world replicating {
                export replog:node/replicator@0.4.0;
            }
        ",
        world: "replog:host/replicating",
        exports: { default: async },
    });
}

/// The `about` export, which every replog component offers (and which is optional for others).
pub mod described {
    wasmtime::component::bindgen!({
        path: "../wit",
        inline: "
            package replog:host;
            world described {
                export replog:node/about@0.4.0;
            }
        ",
        world: "replog:host/described",
        exports: { default: async },
    });
}

use self::replog::node::{auth, host_info, log, peers, replica, sequencer, types};
use super::ComponentInfo;

/// What the `replog:node` imports of one request act on.
pub struct NodeView<'a> {
    pub state: &'a Arc<state::NodeState>,
    pub secret: Option<&'a ClusterSecret>,
    pub component: &'a ComponentInfo,
    pub table: &'a mut ResourceTable,
}

impl From<state::Entry> for log::Entry {
    fn from(state::Entry { seq, epoch, key, msg }: state::Entry) -> Self {
        Self { seq, epoch, key, msg }
    }
}

impl From<log::Entry> for state::Entry {
    fn from(log::Entry { seq, epoch, key, msg }: log::Entry) -> Self {
        Self { seq, epoch, key, msg }
    }
}

impl From<state::LogError> for types::LogError {
    fn from(error: state::LogError) -> Self {
        match error {
            state::LogError::Moved(version) => Self::Moved(version),
            state::LogError::Invalid(why) => Self::Invalid(why),
            state::LogError::KeyReused(seq) => Self::KeyReused(seq),
            state::LogError::Storage(why) => Self::Storage(why),
        }
    }
}

impl types::Host for NodeView<'_> {}

impl log::Host for NodeView<'_> {
    fn len(&mut self) -> u64 {
        self.state.log.len()
    }

    fn last(&mut self) -> log::Position {
        let state::Position { seq, epoch } = self.state.log.last();
        log::Position { seq, epoch }
    }

    fn read(&mut self, start: u64, limit: u32, max_bytes: u32) -> Vec<log::Entry> {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        self.state.log.read_bounded(start, limit, max_bytes).into_iter().map(Into::into).collect()
    }

    fn epoch_at(&mut self, seq: u64) -> Option<u64> {
        self.state.log.epoch_at(seq)
    }

    fn runs(&mut self) -> Vec<log::Run> {
        self.state
            .log
            .runs()
            .into_iter()
            .map(|r| log::Run { epoch: r.epoch, first: r.first })
            .collect()
    }
}

impl auth::Host for NodeView<'_> {
    fn enabled(&mut self) -> bool {
        self.secret.is_some()
    }

    fn sign(&mut self, head: Vec<u8>, body: Vec<u8>) -> Option<String> {
        self.secret.map(|secret| secret.sign(&head, &body))
    }

    fn verify(&mut self, head: Vec<u8>, body: Vec<u8>, signature: String) -> bool {
        self.secret.is_some_and(|secret| secret.verify(&head, &body, &signature))
    }
}

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
        let state::Appended { seq, duplicate } = self.state.log.append(msg, epoch, key).await?;
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

impl replica::Host for NodeView<'_> {
    fn state(&mut self) -> replica::Snapshot {
        replica_state(&self.state.log)
    }

    async fn write(
        &mut self,
        change: replica::Change,
    ) -> Result<replica::Snapshot, types::LogError> {
        let change = state::Change {
            version: change.version,
            epoch: change.epoch,
            truncate_after: change.truncate_after,
            entries: change.entries.into_iter().map(Into::into).collect(),
        };
        self.state.log.write(change).await?;
        Ok(replica_state(&self.state.log))
    }
}

fn replica_state(log: &state::Log) -> replica::Snapshot {
    let state::Snapshot { epoch, last, version } = log.snapshot();
    replica::Snapshot { epoch, last: log::Position { seq: last.seq, epoch: last.epoch }, version }
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
        let contact = state::Contact {
            ok: contact.ok,
            status: contact.status.into(),
            error: contact.error,
            delay_ms: contact.delay_ms,
        };
        self.state.peers.record_contact(&url, contact);
    }

    fn wait_acked(&mut self, seq: u64, count: u32) -> wasmtime::Result<Resource<DynPollable>> {
        let wait = AckWait { state: self.state.clone(), seq, count: count as usize };
        let wait = self.table.push(wait)?;
        subscribe(self.table, wait)
    }
}

/// The pollable behind `peers.wait-acked`: ready once enough secondaries hold `seq`.
struct AckWait {
    state: Arc<state::NodeState>,
    seq: u64,
    count: usize,
}

#[wasmtime_wasi::async_trait]
impl Pollable for AckWait {
    async fn ready(&mut self) {
        self.state.peers.wait_acked(self.seq, self.count).await;
    }
}

impl host_info::Host for NodeView<'_> {
    fn component(&mut self) -> host_info::LoadedComponent {
        host_info::LoadedComponent {
            sha256: self.component.sha256.clone(),
            version: self.component.version.clone(),
            loaded_at: self.component.loaded_at.clone(),
        }
    }
}
