//! A master's replication, as the host runs it: recovery rounds until the component has opened
//! an epoch, then one stream per secondary calling the component's `replicator.step` for it
//! again and again. What to send, what to fetch and how to react is the component's business;
//! when to call it again is what each call answers. Each call runs on the version current when
//! it starts (on an instance that version kept, or a new one: see `call`), so a swapped-in
//! version takes over recovery and streams from their next call.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::call::{NextStep, NodeCore, Recovery};

/// Pause after a call that failed in the host (a trap, a timeout) or on a component version
/// without a replicator, before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// Recovers, then runs a stream per secondary until aborted.
pub(super) async fn replicate(core: Arc<NodeCore>) {
    recover(&core).await;
    let mut streams = JoinSet::new();
    // The secondaries the component named when the node started (a swap cannot change them).
    for peer in &core.current().needs.peers {
        streams.spawn(run(core.clone(), peer.url.clone()));
    }
    while streams.join_next().await.is_some() {}
}

async fn recover(core: &NodeCore) {
    loop {
        let after = match core.recover().await {
            Ok(Some(Recovery::Done)) => return,
            Ok(Some(Recovery::Again(after))) => after,
            Ok(None) => RETRY_AFTER_FAILURE,
            Err(failure) => {
                tracing::warn!(node = %core.base.name, error = %failure, "recovery round failed");
                RETRY_AFTER_FAILURE
            }
        };
        tokio::time::sleep(after).await;
    }
}

async fn run(core: Arc<NodeCore>, peer: String) {
    let mut grown = core.base.state.log().watch();
    let mut committed = core.base.state.log().watch_committed();
    loop {
        // Appends from here on wake the next step; the step about to run sees the ones before.
        // So does a new commit point, which the step may have to tell an idle secondary.
        grown.borrow_and_update();
        committed.borrow_and_update();
        let next = match core.step(&peer).await {
            Ok(Some(next)) => next,
            Ok(None) => NextStep { after: Some(RETRY_AFTER_FAILURE), on_append: false },
            Err(failure) => {
                tracing::warn!(node = %core.base.name, %peer, error = %failure, "replication step failed");
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
            moved = committed.changed(), if wait_for_append => {
                if moved.is_err() {
                    return;
                }
            }
        }
    }
}
