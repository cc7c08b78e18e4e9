//! The host side of the `replog:node` contract (see `wit/node.wit`): the bindings, and what
//! every role imports (the log, auth, host-info). What only a master imports (`sequencer`,
//! `peers`) is in `master`; what only a secondary imports (`replica`), in `secondary`.

mod master;
mod secondary;
mod tail;

pub(crate) use self::tail::TailPlaces;

use std::sync::Arc;

use wasmtime::component::ResourceTable;

use crate::outbound::Outbound;
use crate::secret::ClusterSecret;
use crate::state;

wasmtime::component::bindgen!({
    path: "wit",
    interfaces: "
        import replog:node/log@0.8.0;
        import replog:node/sequencer@0.8.0;
        import replog:node/replica@0.8.0;
        import replog:node/peers@0.8.0;
        import replog:node/auth@0.8.0;
        import replog:node/host-info@0.8.0;
    ",
    // Writes wait for the disk (group commit) without holding up the thread. Every call logs
    // at TRACE (`RUST_LOG=replog::node::bindings=trace`), as wasmtime's WASI imports do: the
    // way bench/crossings.sh counts a request's host calls. Off, it costs a level check.
    imports: {
        default: tracing,
        "replog:node/sequencer.append": async | trappable | tracing,
        "replog:node/sequencer.restore": async | trappable | tracing,
        "replog:node/sequencer.open": async | trappable | tracing,
        "replog:node/replica.write": async | trappable | tracing,
        // A role's imports trap on a node of the other role (see `NodeView::sequencer`).
        "replog:node/sequencer": trappable | tracing,
        "replog:node/peers": trappable | tracing,
        "replog:node/replica": trappable | tracing,
        "replog:node/log.[method]tail.grown": trappable | tracing,
        "replog:node/log.[method]tail.pipe": async | trappable | tracing,
    },
    with: {
        "wasi:io/poll": wasmtime_wasi::p2::bindings::io::poll,
        "wasi:io/streams": wasmtime_wasi::p2::bindings::io::streams,
        "replog:node/log.tail": self::tail::Tail,
    },
});

/// The `replicator` export of the master component, called by the replication streams.
pub(crate) mod replicating {
    wasmtime::component::bindgen!({
        path: "wit",
        inline: "
            package replog:host;
            world replicating {
                export replog:node/replicator@0.8.0;
            }
        ",
        world: "replog:host/replicating",
        exports: { default: async },
    });
}

/// The `about` export, which every replog component offers (and which is optional for others).
pub(crate) mod described {
    wasmtime::component::bindgen!({
        path: "wit",
        inline: "
            package replog:host;
            world described {
                export replog:node/about@0.8.0;
            }
        ",
        world: "replog:host/described",
        exports: { default: async },
    });
}

use self::replog::node::{auth, host_info, log, types};
use super::info::ComponentInfo;

/// What the `replog:node` imports of one request act on.
pub(crate) struct NodeView<'a> {
    pub(crate) node: &'a str,
    /// The client request the call serves, if any.
    pub(crate) request_id: Option<&'a Arc<str>>,
    pub(crate) state: &'a Arc<state::NodeState>,
    /// The node's places for tails (`log.follow`).
    pub(crate) tails: &'a tail::TailPlaces,
    /// The call's limits: a tail renews its CPU budget after each wait.
    pub(crate) limits: &'a crate::runtime::RequestLimits,
    pub(crate) secret: Option<&'a ClusterSecret>,
    pub(crate) component: &'a ComponentInfo,
    /// Where a request's call asks for its answer to be kept; none for other calls.
    pub(crate) keep: Option<&'a super::answers::KeepCell>,
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) outbound: &'a mut Outbound,
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
            state::LogError::Closed(why) => Self::Closed(why),
        }
    }
}

impl types::Host for NodeView<'_> {}

impl log::Host for NodeView<'_> {
    fn len(&mut self) -> u64 {
        self.state.log().len()
    }

    fn start(&mut self) -> u64 {
        self.state.log().start()
    }

    fn disk(&mut self) -> log::DiskUse {
        let log = self.state.log();
        log::DiskUse { bytes: log.disk_bytes(), removed: log.removed() }
    }

    fn last(&mut self) -> log::Position {
        let state::Position { seq, epoch } = self.state.log().last();
        log::Position { seq, epoch }
    }

    fn read(&mut self, start: u64, limit: u32, max_bytes: u32) -> Vec<log::Entry> {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let entries = self.state.log().read_bounded(start, limit, max_bytes);
        if self.outbound.carries()
            && let (Some(first), Some(last)) = (entries.first(), entries.last())
        {
            // A replication step reads what it sends: its request names who appended it.
            self.outbound.carry(self.state.log().traces().between(first.seq, last.seq, usize::MAX));
        }
        entries.into_iter().map(Into::into).collect()
    }

    fn read_text(&mut self, start: u64, limit: u32, max_bytes: u32) -> log::TextPage {
        let state::TextPage { text, ends } = self.state.log().read_text(start, limit, max_bytes);
        log::TextPage { text, ends }
    }

    fn epoch_at(&mut self, seq: u64) -> Option<u64> {
        self.state.log().epoch_at(seq)
    }

    fn committed(&mut self) -> u64 {
        self.state.log().committed()
    }

    fn mark(&mut self) -> u64 {
        self.state.log().mark()
    }

    fn keep_answer(&mut self, mark: u64, vary: Vec<(String, Option<String>)>) {
        if let Some(cell) = self.keep {
            let request = super::answers::KeepRequest { mark, vary };
            *cell.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(request);
        }
    }

    fn follow(&mut self) -> Result<wasmtime::component::Resource<tail::Tail>, String> {
        self.follow_log()
    }

    fn rendered(
        &mut self,
        form: String,
        start: u64,
        through: u64,
        max_bytes: u32,
    ) -> log::Rendition {
        let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let state::Rendition { bytes, count, runs } =
            self.state.log().rendered(&form, start, through, max_bytes);
        let runs = runs.into_iter().map(|r| log::Run { epoch: r.epoch, first: r.first }).collect();
        log::Rendition { bytes, count, runs }
    }

    fn keep_rendered(
        &mut self,
        form: String,
        start: u64,
        runs: Vec<log::Run>,
        ends: Vec<u32>,
        bytes: Vec<u8>,
    ) {
        let runs: Vec<state::Run> =
            runs.into_iter().map(|r| state::Run { epoch: r.epoch, first: r.first }).collect();
        let renders = state::Renders { start, runs: &runs, ends: &ends, bytes: &bytes };
        self.state.log().keep_rendered(&form, &renders);
    }

    fn runs(&mut self) -> Vec<log::Run> {
        self.state
            .log()
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

    fn authorization(
        &mut self,
        method: String,
        path_with_query: String,
        body: Vec<u8>,
    ) -> Option<String> {
        let now = crate::proof::now_ms();
        self.secret.map(|secret| {
            crate::proof::authorization(secret, &method, &path_with_query, &body, now)
        })
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
