//! Finding the built components on disk.
//!
//! Components may be built two ways, and the two land in different folders: `cargo build` for
//! `wasm32-wasip2` (the host's build script does it) and `cargo component build`, which always
//! builds for `wasm32-wasip1` and adapts the result. A node looks for its role's file in a list
//! of folders and takes the most recently built one, so whichever build ran last is what runs;
//! the reloader watches every folder of the list for the same reason.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::Role;

/// The components' target directory, relative to the repository root
/// (`components/.cargo/config.toml`).
pub(crate) const BUILD_ROOT: &str = "target/components";
/// Where in it the builds leave the components: `cargo build` (for `wasm32-wasip2`, as the
/// host's build script does), then `cargo component build` (which builds for `wasm32-wasip1`).
pub(crate) const BUILD_OUTPUTS: [&str; 2] = ["wasm32-wasip2/release", "wasm32-wasip1/release"];

#[derive(Debug, thiserror::Error)]
pub(crate) enum LocateError {
    #[error(
        "cannot find {file}: looked in {searched}. Build the components with `cargo build \
         --release` from the repository root, or point --components DIR[:DIR...] / --component \
         PATH at them"
    )]
    NotFound { file: &'static str, searched: String },
}

/// Where a node's component comes from: the file it starts with, and every file a newer
/// version may appear in (that one included).
#[derive(Debug, Clone)]
pub(crate) struct ComponentFiles {
    pub(crate) path: PathBuf,
    pub(crate) candidates: Vec<PathBuf>,
}

/// The component file for `role`: the newest of those in `dirs` when given, else in the build
/// folders under the current directory and where this binary's own build put the components.
pub(crate) fn locate(role: Role, dirs: Option<&[PathBuf]>) -> Result<ComponentFiles, LocateError> {
    let file = role.component_file();
    let dirs = dirs.map_or_else(search_dirs, <[PathBuf]>::to_vec);
    let candidates: Vec<PathBuf> = dirs.iter().map(|dir| dir.join(file)).collect();
    let path = newest(&candidates).ok_or_else(|| LocateError::NotFound {
        file,
        searched: dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
    })?;
    Ok(ComponentFiles { path, candidates })
}

/// The most recently modified of `paths` that exists (the first of equals).
pub(crate) fn newest(paths: &[PathBuf]) -> Option<PathBuf> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut best: Option<(SystemTime, &PathBuf)> = None;
    for path in paths {
        if let Some(time) = modified(path)
            && best.is_none_or(|(best_time, _)| time > best_time)
        {
            best = Some((time, path));
        }
    }
    best.map(|(_, path)| path.clone())
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        BUILD_OUTPUTS.iter().map(|output| Path::new(BUILD_ROOT).join(output)).collect();
    if let Some(built) = option_env!("REPLOG_BUILT_COMPONENTS") {
        dirs.push(PathBuf::from(built));
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_recent_build_is_found_among_the_folders() {
        let root = std::env::temp_dir().join(format!("replog-locate-{}", std::process::id()));
        let (older, newer, empty) = (root.join("older"), root.join("newer"), root.join("none"));
        for dir in [&older, &newer] {
            std::fs::create_dir_all(dir).unwrap();
        }
        let file = Role::Master.component_file();
        std::fs::write(older.join(file), b"old").unwrap();
        std::fs::write(newer.join(file), b"new").unwrap();
        let past = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(older.join(file))
            .unwrap()
            .set_modified(past)
            .unwrap();

        let dirs = [empty.clone(), older.clone(), newer.clone()];
        let located = locate(Role::Master, Some(&dirs)).unwrap();
        assert_eq!(located.path, newer.join(file));
        assert_eq!(located.candidates.len(), 3, "every folder, also one without the file yet");
        let missing = locate(Role::Secondary, Some(&dirs)).unwrap_err().to_string();
        assert!(missing.contains("replog_secondary.wasm") && missing.contains("none"), "{missing}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
