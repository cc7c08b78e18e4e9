//! Watching the files a node's versions may come from: each through its directory, so that
//! both copying over a file (`cp`) and renaming a new one into place (`mv`) are seen, with the
//! kernel's notifications or, where there are none, by polling.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::ReloadAsk;
use crate::node::Node;

/// How often a directory is polled where the kernel cannot notify about it.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Why component files cannot be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// A directory could not be watched, or no watcher could be set up.
    #[error("cannot watch {dir}: {reason}")]
    Watch {
        /// The directory (empty when the watcher itself could not be made).
        dir: PathBuf,
        /// What the watcher reported.
        reason: String,
    },
}

/// The files `node`'s versions may come from, as events name them: the one it started with
/// and its candidates.
pub(super) fn sources(node: &Node) -> Vec<PathBuf> {
    let config = node.config();
    let mut paths: Vec<PathBuf> = Vec::new();
    for path in std::iter::once(&config.component).chain(&config.component_candidates) {
        let path = watched_path(path);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// The path events will name for `path`: its directory resolved (the file itself may come and
/// go), joined with its name.
fn watched_path(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    dir.join(path.file_name().unwrap_or_default())
}

/// Watches the directories of `files` with the kernel's notifications, or by polling where
/// those are not available, and turns events on the files into reload requests.
pub(super) fn watch(
    files: &HashSet<PathBuf>,
    requests: mpsc::UnboundedSender<ReloadAsk>,
) -> Result<Box<dyn Watcher + Send>, WatchError> {
    let interesting = files.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let reading = matches!(
            event.kind,
            EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
                | EventKind::Access(AccessKind::Close(AccessMode::Read))
        );
        if reading {
            return;
        }
        for path in event.paths.iter().filter(|p| interesting.contains(*p)) {
            let _ = requests.send(ReloadAsk::File(path.clone(), Instant::now()));
        }
    };
    // A folder that does not exist yet (a build that never ran) is looked at on SIGHUP only.
    let dirs: HashSet<&Path> =
        files.iter().filter_map(|f| f.parent()).filter(|dir| dir.is_dir()).collect();
    let watch_all = |watcher: &mut dyn Watcher| {
        dirs.iter().try_for_each(|dir| {
            watcher.watch(dir, RecursiveMode::NonRecursive).map_err(|e| (dir.to_path_buf(), e))
        })
    };
    let native = notify::recommended_watcher(handler.clone())
        .map_err(|e| (PathBuf::new(), e))
        .and_then(|mut watcher| watch_all(&mut watcher).map(|()| watcher));
    let (dir, error) = match native {
        Ok(watcher) => return Ok(Box::new(watcher)),
        Err(failed) => failed,
    };
    tracing::warn!(
        dir = %dir.display(),
        %error,
        "cannot use file change notifications; polling every {POLL_INTERVAL:?} instead"
    );
    let config = notify::Config::default().with_poll_interval(POLL_INTERVAL);
    let mut poller = notify::PollWatcher::new(handler, config)
        .map_err(|e| WatchError::Watch { dir: PathBuf::new(), reason: e.to_string() })?;
    watch_all(&mut poller).map_err(|(dir, e)| WatchError::Watch { dir, reason: e.to_string() })?;
    Ok(Box::new(poller))
}
