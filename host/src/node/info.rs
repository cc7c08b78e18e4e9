//! What identifies a component version, wherever it is named: in logs, in reports of a swap,
//! and to the component itself (`replog:node/host-info`).

use std::path::PathBuf;

/// What identifies a loaded component version: in logs, and on `GET /health` through
/// `replog:node/host-info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    /// What the component's `about.describe` reported, `unknown` if it exports none.
    pub version: String,
    /// When the node started serving it, RFC 3339 in UTC.
    pub(crate) loaded_at: String,
}
