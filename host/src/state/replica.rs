//! A secondary's state: the log, changed only by whole versioned changes on its master's word,
//! and why it refuses a master, if it does.
//!
//! The rules the host enforces on a replica, whatever its component decides:
//!
//! - **Whole, versioned changes only**: a change names the log version it was decided on and
//!   is refused (`Moved`) if another came first, so two masters' changes never interleave;
//!   it applies whole (durably, on disk) or not at all.
//! - **The log's invariants hold** after every change (no gaps, epochs that never decrease,
//!   no entry above the recorded epoch): see `log`.
//! - **Nothing is numbered here**: a replica has no `append`.
//! - **A retired replica takes nothing**: once its node has become master, a change still on
//!   its way from the old master is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::ledger::Ledger;
use super::log::{Change, Log, LogError, Snapshot};

/// A node's state while it follows a master.
#[derive(Debug)]
pub struct Replica {
    ledger: Arc<Ledger>,
    /// Why it refused the last master that contacted it, as its component recorded (none: it
    /// serves its master). Not kept across restarts: the next contact tells again.
    refusal: Mutex<Option<String>>,
    /// Set when its node changed role: the log has another role's rules now.
    retired: AtomicBool,
}

/// A replica's log epoch, end and version, with why it refuses its master now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStanding {
    /// The log's epoch, end and version, read together.
    pub log: Snapshot,
    /// Why it refuses its master (none: it serves it).
    pub refusal: Option<String>,
}

impl Replica {
    /// A replica over `ledger`, refusing no one yet.
    pub(crate) fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger, refusal: Mutex::default(), retired: AtomicBool::new(false) }
    }

    /// The log it holds.
    pub fn log(&self) -> &Log {
        &self.ledger.log
    }

    /// Applies `change` whole, if the log is still at the version it names. Returns where the
    /// log stands then.
    pub(crate) async fn write(&self, change: Change) -> Result<ReplicaStanding, LogError> {
        if self.retired.load(Ordering::Acquire) {
            return Err(LogError::Closed("this node is no longer a secondary".to_owned()));
        }
        self.log().write(change).await?;
        Ok(self.standing())
    }

    /// Where its log stands, and why it refuses its master now.
    pub(crate) fn standing(&self) -> ReplicaStanding {
        ReplicaStanding { log: self.log().snapshot(), refusal: self.refusal() }
    }

    /// Why it refuses its master now (none: it serves it).
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Records why it refuses its master (none: it serves it again).
    pub(crate) fn refuse(&self, reason: Option<String>) {
        *self.refusal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
    }

    /// Takes no change from now on: its node has another role.
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    /// Its ledger, for the state of another role (`role`).
    pub(super) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Entry;

    fn entry(seq: u64, epoch: u64) -> Entry {
        Entry { seq, epoch, key: None, msg: format!("m{seq}") }
    }

    #[tokio::test]
    async fn a_change_decided_on_an_older_version_is_refused_whole() {
        let replica = Replica::new(Arc::new(Ledger::in_memory(16)));
        let first = Change {
            version: 0,
            epoch: 1,
            truncate_after: None,
            begin: None,
            entries: vec![entry(1, 1)],
        };
        let standing = replica.write(first.clone()).await.unwrap();
        assert_eq!((standing.log.epoch, standing.log.last.seq), (1, 1));
        assert_eq!(replica.write(first).await, Err(LogError::Moved(standing.log.version)));
        let broken = Change {
            version: standing.log.version,
            epoch: 1,
            truncate_after: None,
            begin: None,
            entries: vec![entry(3, 1)],
        };
        assert!(matches!(replica.write(broken).await, Err(LogError::Invalid(_))), "a gap");
        assert_eq!(replica.log().len(), 1, "neither refused change left anything");
    }

    #[test]
    fn its_refusal_is_reported_with_its_log_until_lifted() {
        let replica = Replica::new(Arc::new(Ledger::in_memory(16)));
        assert_eq!(replica.standing().refusal, None);
        replica.refuse(Some("epoch 2 is below 3".into()));
        assert_eq!(replica.standing().refusal.as_deref(), Some("epoch 2 is below 3"));
        replica.refuse(None);
        assert_eq!(replica.refusal(), None);
    }
}
