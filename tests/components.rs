//! The components' own unit tests, on this machine's target: their pure logic (the wire
//! format, the secondary's log matching, the master's decisions) is tested
//! without a host, as openraft and raft-rs test their cores. Running them from here makes
//! `cargo test --release` run every test of the repository.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use support::repo_root;

#[test]
fn the_components_unit_tests_pass_on_the_native_target() {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let output = Command::new(cargo)
        .current_dir(repo_root().join("components"))
        .args(["test", "--target", env!("REPLOG_NATIVE_TARGET")])
        // The components' workspace picks its own target directory; settings meant for the
        // host's build must not leak in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the components' unit tests failed:\n{stdout}\n{stderr}");
    // Each crate's count is pinned, so that a crate whose tests stopped being found or built
    // fails here instead of passing with fewer: change a count with the tests it counts.
    let expected = [("replog_guest", 19), ("replog_master", 32), ("replog_secondary", 11)];
    let passed = passed_by_crate(&stdout, &stderr);
    for (krate, count) in expected {
        assert_eq!(
            passed.get(krate).copied(),
            Some(count),
            "{krate}'s native tests: {passed:?}\n{stdout}\n{stderr}"
        );
    }
    println!("the components' unit tests passed: {passed:?}");
}

/// Tests passed by each crate's unit tests, from cargo's output: cargo names each test binary
/// on stderr as it runs it (`Running unittests src/lib.rs (.../deps/CRATE-HASH)`, another
/// binary's path, or `Doc-tests CRATE`), and each binary's summary follows on stdout, in the
/// same order.
fn passed_by_crate(stdout: &str, stderr: &str) -> BTreeMap<String, u64> {
    let binaries = stderr
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("Running ") || line.starts_with("Doc-tests "))
        .map(library);
    let summaries = stdout.lines().filter_map(|line| line.strip_prefix("test result: "));
    binaries
        .zip(summaries)
        .filter_map(|(krate, summary)| {
            let passed = summary.strip_prefix("ok. ")?.split(' ').next()?.parse().ok()?;
            Some((krate?, passed))
        })
        .collect()
}

/// The crate whose library's unit tests cargo's `Running` line names; none for other binaries.
fn library(line: &str) -> Option<String> {
    let path = line.strip_prefix("Running unittests src/lib.rs (")?.trim_end_matches(')');
    let file = path.rsplit('/').next()?;
    Some(file.rsplit_once('-').map_or(file, |(name, _)| name).to_owned())
}
