//! Replication streams: the host runs one per secondary of a master, calling the component's
//! `replicator.step` for it again and again. What to send and how to react is the component's
//! business; when to call it again is what the step answers (`wake`): after a delay, when the
//! log grows, or whichever comes first. Each step is one short-lived instance of the current
//! component version, so a swapped-in version takes over the streams too.

use std::sync::Arc;
use std::time::Duration;

use super::{NextStep, Shared};

/// Pause after a step that failed in the host (a trap, a timeout) or on a component version
/// without a replicator, before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

pub(super) async fn run(shared: Arc<Shared>, peer: String) {
    let mut grown = shared.parts.state.log.watch();
    loop {
        // Appends from here on wake the next step; the step about to run sees the ones before.
        grown.borrow_and_update();
        let next = match shared.step(&peer).await {
            Ok(Some(next)) => next,
            Ok(None) => NextStep { after: Some(RETRY_AFTER_FAILURE), on_append: false },
            Err(failure) => {
                tracing::warn!(node = %shared.parts.name, %peer, error = %failure, "replication step failed");
                NextStep { after: Some(RETRY_AFTER_FAILURE), on_append: false }
            }
        };
        let after = async {
            match next.after {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        let wait_for_append = next.on_append || next.after.is_none();
        tokio::select! {
            () = after => {}
            grew = grown.changed(), if wait_for_append => {
                if grew.is_err() {
                    return;
                }
            }
        }
    }
}
