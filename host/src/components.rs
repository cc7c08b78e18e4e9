//! Finding the built components on disk.

use std::path::{Path, PathBuf};

use crate::config::Role;

/// Where `cargo build` (the host's build script, or a build in `components/`) leaves the
/// components, relative to the repository root.
pub const BUILD_DIR: &str = "target/components/wasm32-wasip2/release";

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(
        "{file} is not in {dir}; build the components (`cargo build --release`) or pass --components DIR"
    )]
    NotIn { file: &'static str, dir: PathBuf },
    #[error(
        "cannot find {file}: looked in {searched}. Build it with `cargo build --release` from the \
         repository root, or point --components DIR / --component PATH at it"
    )]
    NotFound { file: &'static str, searched: String },
}

/// The component file for `role`: in `dir` when given, else in the build directory under the
/// current directory, else where this binary's own build put the components.
pub fn locate(role: Role, dir: Option<&Path>) -> Result<PathBuf, LocateError> {
    let file = role.component_file();
    if let Some(dir) = dir {
        let path = dir.join(file);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(LocateError::NotIn { file, dir: dir.to_owned() })
        };
    }
    let candidates = search_dirs();
    candidates.iter().map(|dir| dir.join(file)).find(|path| path.is_file()).ok_or_else(|| {
        LocateError::NotFound {
            file,
            searched: candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    })
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(BUILD_DIR)];
    if let Some(built) = option_env!("REPLOG_BUILT_COMPONENTS") {
        dirs.push(PathBuf::from(built));
    }
    dirs
}

/// The directory this binary's build script compiled the components into.
pub fn built_dir() -> Option<&'static Path> {
    option_env!("REPLOG_BUILT_COMPONENTS").map(Path::new)
}
