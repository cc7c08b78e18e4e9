//! The wasmtime engine every node of this process shares, and the per-request limits.
//!
//! One engine means each component is compiled once however many nodes run it, one pool of
//! instance slots, and one thread advancing the epoch that bounds guest execution.

mod cache;
mod limits;

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use self::cache::FunctionCache;
pub(crate) use self::limits::{CpuRenewal, LimitExceeded, RequestLimits};
use crate::outbound::Client;

/// How often the epoch advances: the resolution of the CPU budget.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Bound on Cranelift's incremental cache: a few versions of our components' functions.
const FUNCTION_CACHE_BYTES: usize = 64 << 20;

/// Bytes of each linear memory kept resident when its instance goes (see `Runtime::new`):
/// about what a fresh instance of our components touches, so that a slot's next instance
/// starts warm, while a slot whose instance grew large gives the rest back.
const KEEP_RESIDENT: usize = 1 << 20;

/// Process-wide runtime settings.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeConfig {
    /// Instances that may run at once across all nodes of this process; a request beyond that
    /// is answered `503` rather than queued without bound.
    pub max_instances: u32,
    /// Of those, how many client requests may never take: kept for the cluster's own traffic
    /// (replication, recovery, health checks), so that clients cannot starve it.
    pub reserved_instances: u32,
    /// Largest linear memory any instance may have (each node's limit is at most this).
    pub memory_bytes: usize,
}

impl RuntimeConfig {
    /// Instances reserved by default out of `max_instances`: 16, or half when that is fewer.
    pub(crate) fn default_reserve(max_instances: u32) -> u32 {
        (max_instances / 2).min(16)
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            reserved_instances: Self::default_reserve(1000),
            memory_bytes: crate::config::Limits::default().memory_bytes,
        }
    }
}

/// Why the engine could not be set up (its pooling allocator, most likely: see the limits).
#[derive(Debug, thiserror::Error)]
#[error("could not set up the WebAssembly engine: {0}")]
pub struct RuntimeError(String);

/// The shared engine and outbound HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    resources: Arc<Resources>,
}

struct Resources {
    engine: Engine,
    client: Client,
    /// The instances client requests may use (all but the reserve).
    client_places: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    /// The engine with its pooling allocator sized for `config`, and the epoch ticker that
    /// enforces CPU budgets.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        // A component built from Rust has one memory, a few core instances (its module plus
        // the shims wit-component adds) and a couple of tables; the totals leave room for that.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n)
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_memory_size(config.memory_bytes)
            // A request touches little memory: resetting the touched pages in place (found
            // with PAGEMAP_SCAN where the kernel has it) beats unmapping them and faulting them
            // back in on the next instance. What lies beyond is given back as soon as its
            // instance goes (no batching): a batch of 32 held the memory of the last large
            // instances until 31 more went, hundreds of megabytes after a burst of large
            // bodies. Instances are reused (`node::reuse`), so few go and the cost is small.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT / 16)
            .decommit_batch_size(1);

        let mut wasm = Config::new();
        // A new build of a component mostly repeats the last one's functions: with Cranelift's
        // incremental cache only the changed ones are compiled again, which shortens the time
        // from a new file landing to it serving (see `reload`).
        wasm.enable_incremental_compilation(Arc::new(FunctionCache::new(FUNCTION_CACHE_BYTES)))
            .map_err(|e| RuntimeError(format!("{e:#}")))?;
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError(format!("{e:#}")))?;
        spawn_epoch_ticker(&engine);
        let places = config.max_instances.saturating_sub(config.reserved_instances).max(1);
        let client_places = Arc::new(tokio::sync::Semaphore::new(places as usize));
        Ok(Self { resources: Arc::new(Resources { engine, client: Client::new(), client_places }) })
    }

    /// The engine components are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.resources.engine
    }

    pub(crate) fn client(&self) -> &Client {
        &self.resources.client
    }

    /// The places client requests take among the instances.
    pub(crate) fn client_places(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.resources.client_places
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("replog-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning a thread at startup");
}
