//! The host side of the `replog:node` contract (see `wit/node.wit`).

use std::sync::Arc;

use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use crate::state;

wasmtime::component::bindgen!({
    path: "../wit",
    interfaces: "
        import replog:node/log@0.3.0;
        import replog:node/sequencer@0.3.0;
        import replog:node/replica@0.3.0;
        import replog:node/peers@0.3.0;
        import replog:node/host-info@0.3.0;
    ",
    // Writes wait for the disk (group commit) without holding up the thread.
    imports: {
        "replog:node/peers.wait-acked": trappable,
        "replog:node/sequencer.append": async,
        "replog:node/replica.store": async,
        "replog:node/replica.append": async,
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
                export replog:node/replicator@0.3.0;
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
                export replog:node/about@0.3.0;
            }
        ",
        world: "replog:host/described",
        exports: { default: async },
    });
}

use self::replog::node::{host_info, log, peers, replica, sequencer, types};
use super::ComponentInfo;

/// What the `replog:node` imports of one request act on.
pub struct NodeView<'a> {
    pub state: &'a Arc<state::NodeState>,
    pub component: &'a ComponentInfo,
    pub table: &'a mut ResourceTable,
}

impl From<state::Entry> for log::Entry {
    fn from(entry: state::Entry) -> Self {
        Self { seq: entry.seq, msg: entry.msg }
    }
}

impl From<state::LogError> for types::LogError {
    fn from(error: state::LogError) -> Self {
        match error {
            state::LogError::OutOfWindow { max, .. } => Self::OutOfWindow(max),
            state::LogError::Conflict { seq } => Self::Conflict(seq),
            state::LogError::Storage(why) => Self::Storage(why),
        }
    }
}

impl types::Host for NodeView<'_> {}

impl log::Host for NodeView<'_> {
    fn len(&mut self) -> u64 {
        self.state.log.len()
    }

    fn read(&mut self, start: u64, limit: u32) -> Vec<log::Entry> {
        self.state.log.read(start, limit).into_iter().map(Into::into).collect()
    }
}

impl sequencer::Host for NodeView<'_> {
    async fn append(&mut self, msg: String) -> Result<u64, types::LogError> {
        Ok(self.state.log.append(msg).await?)
    }
}

impl replica::Host for NodeView<'_> {
    async fn store(
        &mut self,
        entries: Vec<log::Entry>,
    ) -> Result<replica::Stored, types::LogError> {
        let entries =
            entries.into_iter().map(|e| state::Entry { seq: e.seq, msg: e.msg }).collect();
        let stored = self.state.log.store(entries).await?;
        Ok(replica::Stored { added: stored.added, duplicates: stored.duplicates, len: stored.len })
    }

    async fn append(&mut self, msg: String) -> Result<u64, types::LogError> {
        Ok(self.state.log.append(msg).await?)
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
            status: peer.status.into(),
            failures: peer.failures,
            last_contact_ms: peer.last_contact_ms,
            last_error: peer.last_error,
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

    fn record_ack(&mut self, url: String, len: u64) {
        self.state.peers.record_ack(&url, len);
    }

    fn record_contact(
        &mut self,
        url: String,
        ok: bool,
        status: peers::Status,
        error: Option<String>,
    ) {
        self.state.peers.record_contact(&url, ok, status.into(), error);
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
