//! Builds the guest components (the `components/` workspace) for `wasm32-wasip2`.
//!
//! One `cargo build` of the host thus yields the `.wasm` files it runs, and the host's tests
//! always drive the components of the same checkout (wasmtime's test-programs and Spin's
//! test-components do the same). The nested cargo uses its own target directory: sharing the
//! outer one would deadlock on cargo's build lock.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let components = root.join("components");
    let target_dir = root.join("target").join("components");
    println!("cargo:rerun-if-changed={}", components.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&components)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir)
        // Flags meant for the host must not leak into the guest build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    let status = build.status().unwrap_or_else(|e| panic!("could not run cargo: {e}"));
    if !status.success() {
        if !target_installed("wasm32-wasip2") {
            panic!(
                "the wasm32-wasip2 target is not installed, so the components cannot be built. \
                 Run `rustup toolchain install` in the repository root: it installs the \
                 targets rust-toolchain.toml lists."
            );
        }
        panic!("building the components in {} failed (see above)", components.display());
    }
    let built = target_dir.join("wasm32-wasip2").join("release");
    println!("cargo:rustc-env=REPLOG_BUILT_COMPONENTS={}", built.display());
    // The components' unit tests run on the machine's own target (tests/components.rs).
    let native = std::env::var("TARGET").expect("set by cargo");
    println!("cargo:rustc-env=REPLOG_NATIVE_TARGET={native}");
}

/// Whether the standard library for `target` is in the active toolchain.
fn target_installed(target: &str) -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .is_some_and(|dir| std::path::Path::new(dir.trim()).is_dir())
}
