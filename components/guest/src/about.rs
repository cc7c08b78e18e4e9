//! A component's identity: what it reports through `replog:node/about`, and what the host
//! reports back about the version it runs, for `GET /health`.

use serde::Serialize;

use crate::host::host_info;

/// This build's version: the crate version, plus `+TAG` when `REPLOG_COMPONENT_TAG` was set
/// at build time (to stamp a build with a commit, say, or to tell two test builds apart).
pub fn version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    match option_env!("REPLOG_COMPONENT_TAG") {
        Some(tag) if !tag.is_empty() => format!("{version}+{tag}"),
        _ => version.to_owned(),
    }
}

/// The running version as the host sees it, shaped for `GET /health`.
#[derive(Serialize)]
pub struct Running {
    pub sha256: String,
    pub version: String,
    pub loaded_at: String,
}

pub fn running() -> Running {
    let host_info::LoadedComponent { sha256, version, loaded_at } = host_info::component();
    Running { sha256, version, loaded_at }
}
