//! A master's state: the rules the host enforces on a node that numbers writes, whatever its
//! component decides.
//!
//! The component runs recovery and decides when to open; these rules keep any decision, or a
//! buggy or hostile component version, from breaking the log's promises (as openraft's
//! storage traits state what a log store must uphold, whoever calls it):
//!
//! - **A sequencer starts recovering** and takes no write until its component opens an epoch.
//! - **Only while recovering** may it restore what a replica holds (`restore`) and open an
//!   epoch (`open`); once open or fenced, recovery is over for this sequencer.
//! - **A new epoch is above every one recorded**: above the log's recorded epoch and the epoch
//!   of its last entry, so that two masters never number writes in one epoch.
//! - **Appends only while open**, each stamped with the open epoch; never after a fence.
//! - **A fence is for good**: a newer master's epoch closes writes, and a lower epoch never
//!   lifts a higher fence.
//!
//! What it keeps besides the log (`gate`: the mode; `peers`: each secondary's progress) lives
//! in memory: after a restart the component checks the log against the replicas again.

mod gate;
mod peers;

use std::sync::Arc;

use self::gate::Gate;
pub use self::gate::Mode;
pub use self::peers::{Contact, PeerRecord, PeerStatus, Peers};
use crate::state::entry::Entry;
use crate::state::ledger::Ledger;
use crate::state::log::{Appended, Change, Log, LogError};

/// A node's state while it numbers writes: the log, its mode, its view of the secondaries.
#[derive(Debug)]
pub struct Sequencer {
    ledger: Arc<Ledger>,
    gate: Gate,
    peers: Peers,
}

impl Sequencer {
    /// A sequencer over `ledger`, recovering, with no secondaries yet (see `peers`).
    pub(crate) fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger, gate: Gate::default(), peers: Peers::default() }
    }

    /// The log it numbers writes in.
    pub fn log(&self) -> &Log {
        &self.ledger.log
    }

    /// Each secondary's progress, as its component's replicator records it.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Whether it recovers, takes writes, or was fenced.
    pub fn mode(&self) -> Mode {
        self.gate.mode()
    }

    /// Appends `msg` (with its client's `key`, appended by client request `trace`) in the open
    /// epoch. Refused unless open. Returns where it is, and the epoch it was numbered in.
    pub(crate) async fn append(
        &self,
        msg: String,
        key: Option<String>,
        trace: Option<Arc<str>>,
    ) -> Result<(Appended, u64), LogError> {
        let epoch = match self.gate.mode() {
            Mode::Open(epoch) => epoch,
            Mode::Recovering(why) => return Err(LogError::Closed(format!("recovering: {why}"))),
            Mode::Fenced(by) => {
                return Err(LogError::Closed(format!(
                    "fenced: a master with epoch {by} has taken over"
                )));
            }
        };
        Ok((self.log().append_traced(msg, epoch, key, trace).await?, epoch))
    }

    /// Appends what a replica holds past this log's end, while recovering: their epochs become
    /// epochs this node has seen. Returns the log's length.
    pub(crate) async fn restore(&self, entries: Vec<Entry>) -> Result<u64, LogError> {
        self.recovering()?;
        let log = self.log();
        let change = Change {
            version: log.version(),
            epoch: entries.iter().map(|e| e.epoch).max().unwrap_or(0),
            truncate_after: None,
            entries,
        };
        log.write(change).await?;
        Ok(log.len())
    }

    /// Ends recovery: records `epoch` durably, then takes writes in it. Refused unless
    /// recovering, and unless `epoch` is above every epoch this node has recorded.
    pub(crate) async fn open(&self, epoch: u64) -> Result<(), LogError> {
        self.recovering()?;
        let log = self.log();
        let highest = log.epoch().max(log.last().epoch);
        if epoch <= highest {
            return Err(LogError::Invalid(format!(
                "epoch {epoch} is not above {highest}, the highest this node has recorded"
            )));
        }
        log.write(Change { version: log.version(), epoch, ..Change::default() }).await?;
        self.gate.open(epoch);
        Ok(())
    }

    /// Says what recovery waits for; ignored once it is over.
    pub(crate) fn hold(&self, reason: String) {
        self.gate.hold(reason);
    }

    /// Closes writes for good: a master with `epoch` has taken over.
    pub(crate) fn fence(&self, epoch: u64) {
        self.gate.fence(epoch);
    }

    /// Resolves once recovery is over (open, or fenced).
    pub(crate) async fn settled(&self) {
        self.gate.settled().await;
    }

    /// Its ledger, for the state of another role (`role`).
    pub(super) fn into_ledger(self) -> Arc<Ledger> {
        self.ledger
    }

    fn recovering(&self) -> Result<(), LogError> {
        match self.gate.mode() {
            Mode::Recovering(_) => Ok(()),
            mode => Err(LogError::Closed(format!("recovery is over ({mode:?})"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sequencer() -> Sequencer {
        Sequencer::new(Arc::new(Ledger::in_memory(16)))
    }

    fn entry(seq: u64, epoch: u64) -> Entry {
        Entry { seq, epoch, key: None, msg: format!("m{seq}") }
    }

    fn closed(result: Result<impl std::fmt::Debug, LogError>) -> bool {
        matches!(result, Err(LogError::Closed(_)))
    }

    #[tokio::test]
    async fn writes_are_refused_until_an_epoch_is_opened_and_stamped_with_it_after() {
        let sequencer = sequencer();
        assert!(matches!(sequencer.mode(), Mode::Recovering(_)));
        assert!(closed(sequencer.append("early".into(), None, None).await));
        assert!(sequencer.log().is_empty(), "a refused append leaves nothing");

        sequencer.open(3).await.unwrap();
        assert_eq!(sequencer.mode(), Mode::Open(3));
        let appended = sequencer.append("m".into(), None, None).await.unwrap();
        assert_eq!(appended, (Appended { seq: 1, duplicate: false }, 3));
        assert_eq!(sequencer.log().read(1, 1)[0].epoch, 3);
    }

    #[tokio::test]
    async fn restore_and_open_are_for_recovery_only() {
        let sequencer = sequencer();
        assert_eq!(sequencer.restore(vec![entry(1, 2), entry(2, 2)]).await, Ok(2));
        assert_eq!(sequencer.log().epoch(), 2, "a restored entry's epoch is one seen");
        sequencer.open(3).await.unwrap();
        assert!(closed(sequencer.restore(vec![entry(3, 2)]).await));
        assert!(closed(sequencer.open(4).await), "no second opening");
        assert_eq!(sequencer.mode(), Mode::Open(3));
        assert_eq!(sequencer.log().len(), 2);
    }

    #[tokio::test]
    async fn a_new_epoch_is_above_every_recorded_one() {
        let sequencer = sequencer();
        sequencer.restore(vec![entry(1, 5)]).await.unwrap();
        for stale in [0, 4, 5] {
            let refused = sequencer.open(stale).await;
            assert!(matches!(refused, Err(LogError::Invalid(_))), "{stale}: {refused:?}");
        }
        assert!(matches!(sequencer.mode(), Mode::Recovering(_)), "still recovering");
        sequencer.open(6).await.unwrap();
        assert_eq!(sequencer.log().epoch(), 6, "recorded before writes are taken");
    }

    #[tokio::test]
    async fn a_fence_closes_writes_for_good_and_never_goes_down() {
        let sequencer = sequencer();
        sequencer.open(1).await.unwrap();
        sequencer.fence(7);
        assert!(closed(sequencer.append("late".into(), None, None).await));
        sequencer.fence(4);
        assert_eq!(sequencer.mode(), Mode::Fenced(7), "a lower epoch does not lift it");
        sequencer.hold("anything".into());
        assert_eq!(sequencer.mode(), Mode::Fenced(7), "holding is for recovery only");
        assert!(closed(sequencer.open(9).await));
    }

    #[tokio::test]
    async fn settled_waits_for_the_end_of_recovery() {
        let sequencer = Arc::new(sequencer());
        sequencer.hold("waiting for a secondary".into());
        assert_eq!(sequencer.mode(), Mode::Recovering("waiting for a secondary".into()));
        let waiting = tokio::spawn({
            let sequencer = sequencer.clone();
            async move { sequencer.settled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "not settled while recovering");
        sequencer.open(1).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
