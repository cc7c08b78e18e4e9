//! Failpoints: named places where a test stops a node's log writer, to kill the process there
//! (`kill -9`) and check what a crash at that very step leaves on disk.
//!
//! `REPLOG_FAILPOINT=NAME` (read once) makes the thread that reaches `NAME` say so on stderr and
//! stop for good; nothing else changes. Unset, each place costs one comparison.

use std::sync::OnceLock;

/// The failpoint set for this process, if any.
fn set() -> Option<&'static str> {
    static SET: OnceLock<Option<String>> = OnceLock::new();
    SET.get_or_init(|| std::env::var("REPLOG_FAILPOINT").ok().filter(|name| !name.is_empty()))
        .as_deref()
}

/// Stops this thread for good if `name` is the failpoint set.
pub(crate) fn reached(name: &str) {
    if set() == Some(name) {
        tracing::error!(failpoint = name, "failpoint reached: this thread stops here");
        eprintln!("REPLOG_FAILPOINT {name} reached");
        loop {
            std::thread::park();
        }
    }
}
