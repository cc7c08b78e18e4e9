//! `log.follow` and its `tail`: readers that wait for the log to grow, within the node's
//! `MAX_TAILS`. A tail's wait is a pollable, so a component waits on the log and on a timer
//! (its ping, its deadline) at once, the WASI way.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use super::NodeView;
use super::replog::node::log;
use crate::runtime::CpuRenewal;
use crate::state::NodeState;

/// A node's places for tails (`Edge::max_tails`). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct TailPlaces {
    places: Arc<Semaphore>,
    limit: usize,
}

impl TailPlaces {
    pub(crate) fn new(limit: usize) -> Self {
        Self { places: Arc::new(Semaphore::new(limit)), limit }
    }

    /// Tails being served now.
    pub(crate) fn in_use(&self) -> usize {
        self.limit - self.places.available_permits()
    }
}

/// One follower of the log: holds its place among the node's tails until the component drops
/// it (or its instance goes).
pub struct Tail {
    state: Arc<NodeState>,
    renewal: CpuRenewal,
    _place: OwnedSemaphorePermit,
}

/// What `tail.grown` waits on: the log's length or its commit point passing `after`, or any
/// other change to them.
struct Grown {
    reach: watch::Receiver<u64>,
    after: u64,
    renewal: CpuRenewal,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Grown {
    async fn ready(&mut self) {
        if *self.reach.borrow_and_update() > self.after {
            return;
        }
        // Any change wakes the reader, not only growth past `after`: a repair that drops
        // entries it was sent (the length or the commit point going down, or entries replaced
        // at the same length) is for it to notice and tell. A log that goes away (its node
        // stopped) ends the wait as well.
        let _ = self.reach.changed().await;
        self.renewal.renew();
    }
}

impl NodeView<'_> {
    /// A place among the node's tails, or why there is none.
    pub(super) fn follow_log(&mut self) -> Result<Resource<Tail>, String> {
        let places = self.tails;
        let place = places.places.clone().try_acquire_owned().map_err(|_| {
            format!(
                "this node serves {} tails already, its limit (the MAX_TAILS setting); try again \
                 shortly or follow another node",
                places.limit
            )
        })?;
        let tail =
            Tail { state: self.state.clone(), renewal: self.limits.renewal(), _place: place };
        self.table.push(tail).map_err(|e| format!("could not follow the log: {e}"))
    }
}

impl log::HostTail for NodeView<'_> {
    fn grown(
        &mut self,
        tail: Resource<Tail>,
        after: u64,
        committed: bool,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let tail = self.table.get(&tail)?;
        let log = tail.state.log();
        let reach = if committed { log.watch_committed() } else { log.watch() };
        let grown = Grown { reach, after, renewal: tail.renewal.clone() };
        let grown = self.table.push(grown)?;
        subscribe(self.table, grown)
    }

    fn drop(&mut self, tail: Resource<Tail>) -> wasmtime::Result<()> {
        self.table.delete(tail)?;
        Ok(())
    }
}
