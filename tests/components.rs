//! The components' own unit tests, on this machine's target: their pure logic (the wire
//! format, the secondary's log matching, the master's decisions) is tested
//! without a host, as openraft and raft-rs test their cores. Running them from here makes
//! `cargo test --release` run every test of the repository.

mod support;

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
    let passed: u64 = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum();
    println!("{passed} unit tests of the components passed");
    assert!(passed >= 20, "the components' unit tests ran ({passed} passed):\n{stdout}");
}
