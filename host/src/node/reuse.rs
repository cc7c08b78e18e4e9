//! Instances kept for the next call of the same version.
//!
//! Making a `Store` and instantiating the component is most of what a short request costs. So
//! an instance that served a call cleanly goes back to its version's idle list and serves a
//! later call of that version, one call at a time, as `wasmtime serve` reuses instances. It is
//! thrown away instead after a trap, a limit trip or a timeout (its state is unknown), once it
//! served `Limits::reuse` calls, and when its memory grew past `KEEP_MEMORY_BELOW`. The lists
//! belong to a version (`Version`), so a swapped-out version's instances are never used again
//! and go away with it. Instances idle for `IDLE_FOR` are dropped by a sweep, so a quiet node
//! gives their memory back.
//!
//! What reuse costs: the components keep nothing between calls by design (their state is the
//! host's), but a component with a bug that left something in its own memory would carry it
//! into the next call. Isolation per call is what `INSTANCE_REUSE=1` keeps.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::ctx::RequestCtx;

/// How long an instance may wait unused before the sweep drops it.
pub(crate) const IDLE_FOR: Duration = Duration::from_secs(10);

/// An instance whose memory grew past this is not kept: a call that needed much (a large
/// body, a large batch) leaves a large instance, and keeping it would hold that memory for
/// calls that need little, and hold it after a burst of such calls. A fresh instance of our
/// components has about 1.1 MiB, and ordinary calls leave it there; an instance that took a
/// 1 MiB body has 3 to 5 MiB. Making a new one costs tens of microseconds, little beside the
/// work of a call that grew one.
pub(crate) const KEEP_MEMORY_BELOW: usize = 2 << 20;

/// Instances kept idle per version and kind at most: about the concurrency a node sees.
pub(crate) const MAX_IDLE: usize = 64;

/// An instance with its store, and how many calls it served.
pub(crate) struct IdleInstance<T> {
    pub(crate) store: Store<RequestCtx>,
    pub(crate) instance: T,
    /// Calls it served before this one.
    pub(crate) calls: u32,
    /// Since when it waits.
    since: Instant,
}

impl<T> IdleInstance<T> {
    /// An instance that has served `calls` calls.
    pub(crate) fn new(store: Store<RequestCtx>, instance: T, calls: u32) -> Self {
        Self { store, instance, calls, since: Instant::now() }
    }
}

/// The idle instances of one version, of one kind (request handlers, or replicators).
pub(crate) struct IdleList<T> {
    kept: Mutex<Vec<IdleInstance<T>>>,
}

impl<T> Default for IdleList<T> {
    fn default() -> Self {
        Self { kept: Mutex::new(Vec::new()) }
    }
}

impl<T> IdleList<T> {
    /// The most recently used idle instance (its memory is the likeliest to be warm).
    pub(crate) fn take(&self) -> Option<IdleInstance<T>> {
        self.lock().pop()
    }

    /// Keeps `kept`, which just served a call cleanly with its memory at `memory` bytes,
    /// unless it has served `max_calls`, grew too large, or enough are kept already.
    pub(crate) fn give_back(&self, mut kept: IdleInstance<T>, max_calls: u32, memory: usize) {
        kept.calls += 1;
        if kept.calls >= max_calls || memory > KEEP_MEMORY_BELOW {
            return;
        }
        kept.since = Instant::now();
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(kept);
        }
    }

    /// Drops the instances idle for longer than `for_longer`; all of them with zero.
    pub(crate) fn sweep(&self, for_longer: Duration) {
        let dropped: Vec<IdleInstance<T>> = {
            let mut idle = self.lock();
            let (old, fresh) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|kept| kept.since.elapsed() >= for_longer);
            *idle = fresh;
            old
        };
        // Dropped outside the lock: freeing an instance returns its slot to the pool.
        drop(dropped);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<IdleInstance<T>>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
