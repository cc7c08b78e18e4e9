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
//! - **An elected master opens its term's epoch only** (`with_term`: etcd's leader key's create
//!   revision), so that epochs are unique across the cluster whoever computes them.
//! - **No write past the lease**: an elected master takes and acknowledges writes only until the
//!   deadline its election last confirmed (`hold_lease_until`), checked when it acts, so that a
//!   process that was paused looks at the clock before it acknowledges anything.
//!
//! What it keeps besides the log (`gate`: the mode; `peers`: each secondary's progress) lives
//! in memory: after a restart the component checks the log against the replicas again.

mod gate;
mod peers;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use self::gate::Gate;
pub use self::gate::Mode;
pub use self::peers::{Contact, PeerRecord, PeerStatus, Peers};
use crate::state::entry::Entry;
use crate::state::ledger::Ledger;
use crate::state::log::{Appended, Change, Log, LogError, Position};

/// A node's state while it numbers writes: the log, its mode, its view of the secondaries.
#[derive(Debug)]
pub struct Sequencer {
    ledger: Arc<Ledger>,
    gate: Gate,
    peers: Peers,
    /// The epoch an election gave this master (none: a master by configuration, which picks
    /// its own above every one it has seen).
    term: Option<u64>,
    /// Until when an elected master may act on its lease (none: for as long as it runs).
    lease: Mutex<Option<Instant>>,
}

impl Sequencer {
    /// A sequencer over `ledger`, recovering, with no secondaries yet (see `peers`).
    pub(crate) fn new(ledger: Arc<Ledger>) -> Self {
        Self {
            ledger,
            gate: Gate::default(),
            peers: Peers::default(),
            term: None,
            lease: Mutex::new(None),
        }
    }

    /// The same, elected for `term`: it opens that epoch or none, and acts only within a lease
    /// (none until `hold_lease_until` first says until when).
    pub(crate) fn with_term(mut self, term: u64) -> Self {
        self.term = Some(term);
        *self.lease.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(Instant::now());
        self
    }

    /// The epoch an election gave it, if it was elected.
    pub fn term(&self) -> Option<u64> {
        self.term
    }

    /// Lets an elected master act until `deadline` (its election's last confirmed renewal
    /// says so); a master by configuration is not bound by a lease.
    pub fn hold_lease_until(&self, deadline: Instant) {
        if self.term.is_some() {
            *self.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(deadline);
        }
    }

    /// How long an elected master may still act, at `now` (none: not bound by a lease).
    pub fn lease_left(&self, now: Instant) -> Option<std::time::Duration> {
        let lease = *self.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        lease.map(|deadline| deadline.saturating_duration_since(now))
    }

    /// Whether it may take or acknowledge a write at `now`: always by configuration; for an
    /// elected master, only before its lease's deadline.
    pub fn may_act_at(&self, now: Instant) -> bool {
        match *self.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            Some(deadline) => now < deadline,
            None => true,
        }
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
            Mode::Open(epoch) if self.may_act_at(Instant::now()) => epoch,
            Mode::Open(epoch) => {
                return Err(LogError::Closed(format!(
                    "the lease of epoch {epoch} may have run out: this master may have been \
                     replaced"
                )));
            }
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
    pub(crate) async fn restore(
        &self,
        begin: Option<Position>,
        entries: Vec<Entry>,
    ) -> Result<u64, LogError> {
        self.recovering()?;
        let log = self.log();
        let epochs = entries.iter().map(|e| e.epoch).chain(begin.map(|b| b.epoch));
        let change = Change {
            version: log.version(),
            epoch: epochs.max().unwrap_or(0),
            truncate_after: None,
            begin,
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
        if let Some(term) = self.term.filter(|&term| term != epoch) {
            return Err(LogError::Invalid(format!(
                "epoch {epoch} is not {term}, the epoch this master was elected for"
            )));
        }
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
    pub(super) fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
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
        assert_eq!(sequencer.restore(None, vec![entry(1, 2), entry(2, 2)]).await, Ok(2));
        assert_eq!(sequencer.log().epoch(), 2, "a restored entry's epoch is one seen");
        sequencer.open(3).await.unwrap();
        assert!(closed(sequencer.restore(None, vec![entry(3, 2)]).await));
        assert!(closed(sequencer.open(4).await), "no second opening");
        assert_eq!(sequencer.mode(), Mode::Open(3));
        assert_eq!(sequencer.log().len(), 2);
    }

    #[tokio::test]
    async fn a_new_epoch_is_above_every_recorded_one() {
        let sequencer = sequencer();
        sequencer.restore(None, vec![entry(1, 5)]).await.unwrap();
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
    async fn an_elected_master_opens_its_term_only_and_acts_within_its_lease() {
        let elected = sequencer().with_term(40);
        elected.restore(None, vec![entry(1, 12)]).await.unwrap();
        for other in [13, 39, 41] {
            let refused = elected.open(other).await;
            assert!(matches!(refused, Err(LogError::Invalid(_))), "{other}: {refused:?}");
        }
        elected.open(40).await.unwrap();
        assert!(closed(elected.append("no lease yet".into(), None, None).await));
        let now = Instant::now();
        elected.hold_lease_until(now + Duration::from_secs(60));
        assert!(elected.may_act_at(now));
        elected.append("within".into(), None, None).await.unwrap();
        elected.hold_lease_until(now);
        assert!(!elected.may_act_at(now), "the deadline itself is past it");
        assert!(closed(elected.append("past".into(), None, None).await));
        assert_eq!(elected.log().len(), 2);

        let configured = sequencer();
        configured.hold_lease_until(now);
        assert!(configured.may_act_at(now + Duration::from_secs(3600)), "no lease binds it");
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
