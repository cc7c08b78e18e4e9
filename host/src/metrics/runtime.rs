//! The node's component: its versions swapped in (or refused) and their compile times, the
//! instances alive, and the calls the host stopped.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::register;

/// Buckets for compile times, in seconds.
const COMPILE_SECONDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Why the host stopped a call into the component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It used more than its CPU budget.
    Cpu,
    /// It tried to grow its memory past the limit.
    Memory,
    /// It took longer than its call timeout.
    WallClock,
}

/// The component's versions swapped in or refused, compile times, instances in use and calls
/// stopped. Cheap to clone: every clone counts into the same series.
#[derive(Clone)]
pub struct RuntimeMetrics {
    in_use: IntGauge,
    stopped: IntCounterVec,
    swaps: IntCounter,
    swap_failures: IntCounter,
    role_changes: IntCounter,
    compile: Histogram,
}

impl RuntimeMetrics {
    pub(super) fn new(registry: &Registry) -> Self {
        let in_use = register(
            registry,
            IntGauge::with_opts(Opts::new(
                "replog_instances_in_use",
                "Component instances serving a call now (a request, a replication step, a recovery round).",
            )),
        );
        let stopped = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "replog_calls_stopped_total",
                    "Calls into the component the host stopped, by the limit they passed: cpu, memory, wall_clock.",
                ),
                &["limit"],
            ),
        );
        for limit in ["cpu", "memory", "wall_clock"] {
            stopped.with_label_values(&[limit]);
        }
        let counter = |name: &str, help: &str| {
            register(registry, IntCounter::with_opts(Opts::new(name, help)))
        };
        let swaps = counter(
            "replog_component_swaps_total",
            "New component versions swapped in while the node served.",
        );
        let swap_failures = counter(
            "replog_component_swap_failures_total",
            "Component files not swapped in (unreadable, not compiling, not fitting the role, or refusing the node's settings): the running version served on.",
        );
        let role_changes = counter(
            "replog_role_changes_total",
            "Times the node changed role while it ran (elected master, or deposed), its log kept.",
        );
        let compile = register(
            registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "replog_component_compile_seconds",
                    "Time to compile a component version (at start and for each new version).",
                )
                .buckets(COMPILE_SECONDS.to_vec()),
            ),
        );
        Self { in_use, stopped, swaps, swap_failures, role_changes, compile }
    }

    /// A version compiled in `took` (a version compiled before and swapped back to is not).
    pub fn compiled(&self, took: Duration) {
        self.compile.observe(took.as_secs_f64());
    }

    /// A new version swapped in (`true`), or a file that was not (`false`).
    pub fn swapped(&self, done: bool) {
        if done { self.swaps.inc() } else { self.swap_failures.inc() }
    }

    /// The node changed role.
    pub fn role_changed(&self) {
        self.role_changes.inc();
    }

    /// Counts an instance serving a call until the returned guard is dropped.
    pub fn in_use(&self) -> InUse {
        self.in_use.inc();
        InUse(self.in_use.clone())
    }

    /// One call the host stopped, for `why`.
    pub fn stopped(&self, why: Stopped) {
        let limit = match why {
            Stopped::Cpu => "cpu",
            Stopped::Memory => "memory",
            Stopped::WallClock => "wall_clock",
        };
        self.stopped.with_label_values(&[limit]).inc();
    }
}

/// One instance serving a call: counted in `replog_instances_in_use` until dropped.
pub struct InUse(IntGauge);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.dec();
    }
}
