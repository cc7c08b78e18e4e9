//! `log.follow` and its `tail`: readers that wait for the log to grow, within the node's
//! `MAX_TAILS`. A tail's wait is a pollable, so a component waits on the log and on a timer
//! (its ping, its deadline) at once, the WASI way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// When its last wait ended (see `WAKE_EVERY`).
    woken: Arc<Mutex<tokio::time::Instant>>,
    _place: OwnedSemaphorePermit,
}

/// The least time between two wakes of one tail: the first change after a quiet spell wakes it
/// at once, and under a stream of writes it wakes at most this often, taking what came
/// meanwhile in one round. A thousand followers then cost the node a round each per period,
/// not one per write, and runnable tails cannot crowd the writes out of the node's threads; a
/// follower's delay grows by this at most.
const WAKE_EVERY: Duration = Duration::from_millis(20);

/// What `tail.grown` waits on: the log's length or its commit point passing `after`, or any
/// other change to them.
struct Grown {
    reach: watch::Receiver<u64>,
    after: u64,
    renewal: CpuRenewal,
    woken: Arc<Mutex<tokio::time::Instant>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Grown {
    async fn ready(&mut self) {
        // Any change wakes the reader, not only growth past `after`: a repair that drops
        // entries it was sent (the length or the commit point going down, or entries replaced
        // at the same length) is for it to notice and tell. A log that goes away (its node
        // stopped) ends the wait as well.
        if *self.reach.borrow_and_update() <= self.after {
            let _ = self.reach.changed().await;
        }
        // Ready or not, a tail is woken at most every `WAKE_EVERY`: one that is behind takes
        // all that came meanwhile in its next round, and its rounds leave the node's other
        // work its turn.
        let last = *self.woken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        tokio::time::sleep_until(last + WAKE_EVERY).await;
        *self.woken.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            tokio::time::Instant::now();
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
        let woken = Arc::new(Mutex::new(tokio::time::Instant::now() - WAKE_EVERY));
        let renewal = self.limits.renewal();
        let tail = Tail { state: self.state.clone(), renewal, woken, _place: place };
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
        let grown =
            Grown { reach, after, renewal: tail.renewal.clone(), woken: tail.woken.clone() };
        let grown = self.table.push(grown)?;
        subscribe(self.table, grown)
    }

    fn drop(&mut self, tail: Resource<Tail>) -> wasmtime::Result<()> {
        self.table.delete(tail)?;
        Ok(())
    }
}
