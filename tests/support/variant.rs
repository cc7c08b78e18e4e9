//! A second build of the components that differs visibly from the first: built with
//! `REPLOG_COMPONENT_TAG=swap`, it reports its version as `<version>+swap`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const TAG: &str = "swap";

/// The folder holding the variant's `.wasm` files, built (incrementally) once per test process
/// into a target directory of its own, so the regular build stays as it is.
pub fn variant_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = super::repo_root();
        let target = root.join("target").join("components-swap");
        let output = Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .current_dir(root.join("components"))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
            .arg(&target)
            .env("REPLOG_COMPONENT_TAG", TAG)
            .output()
            .expect("running cargo");
        assert!(
            output.status.success(),
            "building the variant components failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        target.join("wasm32-wasip2").join("release")
    })
}

/// The version the variant reports, given the regular build's.
pub fn variant_version(regular: &str) -> String {
    format!("{regular}+{TAG}")
}
