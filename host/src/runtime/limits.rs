//! Per-request limits: memory and CPU time.
//!
//! A component that loops or allocates without end must fail its own request, with an error
//! that says so, and leave the node serving. Memory is capped through a resource limiter; CPU
//! through the epoch: each tick during which the guest runs is counted against a budget, and
//! time spent waiting in host calls (a delay, a response from a peer) is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use super::EPOCH_TICK;

/// Why a request's instance was stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("the component used more than its CPU budget of {} ms for one request", .budget.as_millis())]
    Cpu { budget: Duration },
    #[error(
        "the component tried to grow its memory to {desired} bytes, over the limit of {limit} bytes per request"
    )]
    Memory { desired: usize, limit: usize },
}

/// The limits of one request, kept in its store.
#[derive(Debug)]
pub(crate) struct RequestLimits {
    memory_bytes: usize,
    cpu_budget: Duration,
    /// Shared with the call's tails (`CpuRenewal`), which give it back whole after a wait.
    ticks_left: Arc<AtomicU64>,
    /// The largest the instance's memory has been allowed to grow to.
    grown_to: usize,
}

impl RequestLimits {
    pub(crate) fn new(memory_bytes: usize, cpu_budget: Duration) -> Self {
        let ticks_left = Arc::new(AtomicU64::new(Self::ticks(cpu_budget)));
        Self { memory_bytes, cpu_budget, ticks_left, grown_to: 0 }
    }

    fn ticks(cpu_budget: Duration) -> u64 {
        let ticks = cpu_budget.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Gives the next call on the same instance its whole CPU budget again (an instance
    /// serving calls one after another): each call is limited as if it had a fresh one. The
    /// memory limit is the instance's, which never shrinks.
    pub(crate) fn renew<T: Send + 'static>(store: &mut Store<T>, limits: fn(&mut T) -> &mut Self) {
        limits(store.data_mut()).renewal().renew();
        store.set_epoch_deadline(1);
    }

    /// What gives this call its whole CPU budget again from outside the store: a tail, after
    /// it waited for the log (a follower is limited per round of work, not over its life).
    pub(crate) fn renewal(&self) -> CpuRenewal {
        CpuRenewal { ticks_left: self.ticks_left.clone(), whole: Self::ticks(self.cpu_budget) }
    }

    /// The largest the instance's memory has grown to, in bytes.
    pub(crate) fn memory(&self) -> usize {
        self.grown_to
    }

    /// Arms both limits on `store`, whose data holds these limits at `limits`.
    pub(crate) fn install<T: Send + 'static>(
        store: &mut Store<T>,
        limits: fn(&mut T) -> &mut Self,
    ) {
        store.limiter(move |data| limits(data));
        // The callback runs when the guest is executing and the epoch has passed its deadline:
        // at most once per tick while it computes, once on resuming after a wait.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let limits = limits(ctx.data_mut());
            let spent = limits
                .ticks_left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            if spent.is_err() {
                return Err(wasmtime::Error::new(LimitExceeded::Cpu { budget: limits.cpu_budget }));
            }
            // Yielding lets the other requests on this worker thread run meanwhile.
            Ok(UpdateDeadline::Yield(1))
        });
    }
}

/// A handle on a call's CPU budget that renews it whole (see `RequestLimits::renewal`).
#[derive(Debug, Clone)]
pub(crate) struct CpuRenewal {
    ticks_left: Arc<AtomicU64>,
    whole: u64,
}

impl CpuRenewal {
    pub(crate) fn renew(&self) {
        self.ticks_left.store(self.whole, Ordering::Release);
    }
}

impl ResourceLimiter for RequestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                desired,
                limit: self.memory_bytes,
            }));
        }
        self.grown_to = self.grown_to.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}
