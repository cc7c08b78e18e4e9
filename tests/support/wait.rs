//! Waiting for something that happens in the background (replication, catch-up) without
//! guessing how long it takes: poll often, give up only after a generous bound.

use std::time::{Duration, Instant};

/// Waits until `check` holds, failing the test after `within`.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
