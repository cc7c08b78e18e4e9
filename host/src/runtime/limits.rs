//! Per-request limits: memory and CPU time.
//!
//! A component that loops or allocates without end must fail its own request, with an error
//! that says so, and leave the node serving. Memory is capped through a resource limiter; CPU
//! through the epoch: each tick during which the guest runs is counted against a budget, and
//! time spent waiting in host calls (a delay, a response from a peer) is not.

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
    ticks_left: u64,
    /// The largest the instance's memory has been allowed to grow to.
    grown_to: usize,
}

impl RequestLimits {
    pub(crate) fn new(memory_bytes: usize, cpu_budget: Duration) -> Self {
        Self { memory_bytes, cpu_budget, ticks_left: Self::ticks(cpu_budget), grown_to: 0 }
    }

    fn ticks(cpu_budget: Duration) -> u64 {
        let ticks = cpu_budget.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Gives the next call on the same instance its whole CPU budget again (an instance
    /// serving calls one after another): each call is limited as if it had a fresh one. The
    /// memory limit is the instance's, which never shrinks.
    pub(crate) fn renew<T: Send + 'static>(store: &mut Store<T>, limits: fn(&mut T) -> &mut Self) {
        let renewed = limits(store.data_mut());
        renewed.ticks_left = Self::ticks(renewed.cpu_budget);
        store.set_epoch_deadline(1);
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
            if limits.ticks_left == 0 {
                return Err(wasmtime::Error::new(LimitExceeded::Cpu { budget: limits.cpu_budget }));
            }
            limits.ticks_left -= 1;
            // Yielding lets the other requests on this worker thread run meanwhile.
            Ok(UpdateDeadline::Yield(1))
        });
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
