//! `log.follow` and its `tail`: readers that wait for the log to grow, within the node's
//! `MAX_TAILS`. A tail's wait is a pollable, so a component waits on the log and on a timer
//! (its ping, its deadline) at once, the WASI way.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, sleep, sleep_until};
use wasmtime::component::Resource;
use wasmtime_wasi::p2::{DynOutputStream, DynPollable, Pollable, StreamResult, subscribe};

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
    /// When its rounds may start, and what renews its call's CPU budget at each.
    turns: TurnTaker,
    _place: OwnedSemaphorePermit,
}

/// The most bytes of renders a pipe takes from the log at a time (it writes them whole).
const PIPE_PAGE_BYTES: usize = 64 << 10;

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
    tail: TurnTaker,
}

/// What of a tail decides its turns, for a wait that outlives the borrow of the tail.
#[derive(Clone)]
struct TurnTaker {
    renewal: CpuRenewal,
    woken: Arc<Mutex<Instant>>,
}

impl TurnTaker {
    async fn take_turn(&self, deadline: Instant) {
        let last = *self.woken.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sleep_until((last + WAKE_EVERY).min(deadline)).await;
        *self.woken.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
        self.renewal.renew();
    }
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
        self.tail.take_turn(far_future()).await;
    }
}

/// A deadline that never comes.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Writes `bytes` whole, as fast as the stream takes them.
async fn write_all(stream: &mut DynOutputStream, mut bytes: Bytes) -> StreamResult<()> {
    while !bytes.is_empty() {
        let permit = stream.write_ready().await?;
        stream.write(bytes.split_to(permit.min(bytes.len())))?;
    }
    stream.flush()
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
        let woken = Arc::new(Mutex::new(Instant::now() - WAKE_EVERY));
        let turns = TurnTaker { renewal: self.limits.renewal(), woken };
        let tail = Tail { state: self.state.clone(), turns, _place: place };
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
        let grown = Grown { reach, after, tail: tail.turns.clone() };
        let grown = self.table.push(grown)?;
        subscribe(self.table, grown)
    }

    #[allow(clippy::too_many_arguments)] // the WIT function's parameters, and the tail
    async fn pipe(
        &mut self,
        tail: Resource<Tail>,
        out: Resource<DynOutputStream>,
        form: String,
        next: u64,
        sent_epoch: Option<u64>,
        committed: bool,
        within: u64,
    ) -> wasmtime::Result<log::Piped> {
        let tail = self.table.get(&tail)?;
        let (state, turns) = (tail.state.clone(), tail.turns.clone());
        let deadline = Instant::now() + Duration::from_nanos(within);
        let log = state.log();
        let mut reach = if committed { log.watch_committed() } else { log.watch() };
        let mut kept = log.watch_kept();
        let next = next.max(1);
        let mut piped =
            log::Piped { next, runs: Vec::new(), bytes: 0, stop: log::PipeStop::Deadline };
        let mut last = sent_epoch.map(|epoch| (next - 1, epoch));
        let stop = loop {
            // Marked seen before looking: a change after the look ends the wait below.
            reach.borrow_and_update();
            if let Some((seq, epoch)) = last
                && log.epoch_at(seq) != Some(epoch)
            {
                break log::PipeStop::Dropped;
            }
            let end = if committed { log.committed() } else { log.len() };
            if piped.next <= end {
                let rendition = log.rendered(&form, piped.next, end, PIPE_PAGE_BYTES);
                if rendition.count == 0 {
                    kept.borrow_and_update();
                    if log.claim_render(&form, piped.next) {
                        break log::PipeStop::Unrendered;
                    }
                    // Another follower is rendering it: its render, shortly, or this one's turn.
                    tokio::select! {
                        _ = kept.changed() => {}
                        () = sleep(crate::state::CLAIM_FOR) => {}
                        () = sleep_until(deadline) => break log::PipeStop::Deadline,
                    }
                    continue;
                }
                let written = rendition.bytes.len() as u64;
                let stream = self.table.get_mut(&out)?;
                if write_all(stream, Bytes::from(rendition.bytes)).await.is_err() {
                    break log::PipeStop::Closed;
                }
                for run in rendition.runs {
                    if piped.runs.last().is_none_or(|last: &log::Run| last.epoch != run.epoch) {
                        piped.runs.push(log::Run { epoch: run.epoch, first: run.first });
                    }
                }
                piped.next += u64::from(rendition.count);
                piped.bytes += written;
                last = piped.runs.last().map(|run| (piped.next - 1, run.epoch));
                continue;
            }
            if Instant::now() >= deadline {
                break log::PipeStop::Deadline;
            }
            if *reach.borrow() < piped.next {
                tokio::select! {
                    changed = reach.changed() => if changed.is_err() {
                        // The log went away with its node: the stream ends with the call.
                        break log::PipeStop::Deadline;
                    },
                    () = sleep_until(deadline) => break log::PipeStop::Deadline,
                }
            }
            turns.take_turn(deadline).await;
        };
        turns.renewal.renew();
        piped.stop = stop;
        Ok(piped)
    }

    fn drop(&mut self, tail: Resource<Tail>) -> wasmtime::Result<()> {
        self.table.delete(tail)?;
        Ok(())
    }
}
