//! The one harness of replog's tests.
//!
//! - `process`: `replog` as a child process on free loopback ports (the binary users run);
//! - `nodes`: a cluster of `replog serve` processes with data directories, to kill and wipe;
//! - `inproc`: nodes in this process through the library, called directly or served on
//!   loopback (the host tests that invoke the components);
//! - `etcd`: a real etcd of the test's own, for elections; `elected`: three elected nodes on
//!   it, writers that follow the master, and the check that nothing acknowledged was lost;
//! - `docker`: a Compose project of the test's own, and the images it runs; `swarm`: the
//!   engine as a swarm manager, and a stack of the test's own;
//! - `load`: what the benchmarks share (pinning, closed-loop writers);
//! - `client`: HTTP to any of them; `wait`: bounded waits on conditions; `variant`: a second
//!   build of the components, for hot swaps.

#![allow(dead_code)] // Each test binary uses its own share of these helpers.

use std::path::PathBuf;

pub mod chance;
pub mod client;
pub mod docker;
pub mod elected;
pub mod etcd;
pub mod inproc;
pub mod load;
pub mod nodes;
pub mod process;
pub mod swarm;
pub mod variant;
pub mod wait;

#[allow(unused_imports)] // Tests of nodes in process may not use them.
pub use client::*;
#[allow(unused_imports)]
pub use process::*;

/// The cluster secret every node a test starts shares (only tests of the refusal go without).
pub const SECRET: &str = "the cluster secret of replog's tests";

/// The repository root: `replog` is run from there, as the README does.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The program `name` from `PATH`, for a test that needs it (`.ci/run` installs it). Where it
/// is missing the test is skipped, saying why, except in CI (`CI` set), where a missing tool
/// is a broken setup and fails the test.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|file| file.is_file())
    });
    if found.is_none() {
        skip(&format!(
            "`{name}` is not installed (Debian package `{package}`; .ci/run installs it)"
        ));
    }
    found
}

/// Says that a test is skipped, and why; in CI (`CI` set), where everything a test needs is
/// installed, a skip is a broken setup and fails the test instead.
pub fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "cannot run under CI: {why}");
    eprintln!("SKIPPED: {why}");
}
