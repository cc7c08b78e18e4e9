//! A node's state in its role, and the passage from one role's to the other's: the ledger (the
//! log with the claim on its directory) goes along, nothing else does. The passage leaves the
//! old role's state unable to change the log (a retired replica, a fenced sequencer), since
//! calls that started before it may still hold that state and finish on it.

use std::sync::Arc;

use super::ledger::Ledger;
use super::log::Log;
use super::replica::Replica;
use super::sequencer::Sequencer;

/// Which rules a node's state enforces: a master's or a secondary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// Numbers writes (`Sequencer`).
    Sequencer,
    /// Follows a master (`Replica`).
    Replica,
}

/// A node's state in its role.
#[derive(Debug)]
pub enum RoleState {
    /// A master's.
    Sequencer(Sequencer),
    /// A secondary's.
    Replica(Replica),
}

impl RoleState {
    pub(super) fn new(kind: RoleKind, ledger: Arc<Ledger>) -> Self {
        match kind {
            RoleKind::Sequencer => Self::Sequencer(Sequencer::new(ledger)),
            RoleKind::Replica => Self::Replica(Replica::new(ledger)),
        }
    }

    /// The same log in the role of `kind`; this one changes the log no more. `epoch`: the term
    /// a new sequencer was elected for, or the epoch that fences an old one.
    pub(super) fn hand_over(&self, kind: RoleKind, epoch: Option<u64>) -> Self {
        match (self, kind) {
            (Self::Replica(replica), RoleKind::Sequencer) => {
                Self::Sequencer(replica.hand_over(epoch))
            }
            (Self::Sequencer(sequencer), RoleKind::Replica) => {
                let fenced_by = epoch.unwrap_or_else(|| sequencer.log().epoch().saturating_add(1));
                Self::Replica(sequencer.hand_over(fenced_by))
            }
            (Self::Replica(replica), RoleKind::Replica) => {
                replica.retire();
                Self::Replica(Replica::new(replica.ledger().clone()))
            }
            (Self::Sequencer(sequencer), RoleKind::Sequencer) => {
                let fenced_by = epoch.unwrap_or_else(|| sequencer.log().epoch().saturating_add(1));
                // Elected again: a new term recovers again, above the old one.
                Self::Sequencer(sequencer.hand_over(fenced_by).hand_over(epoch))
            }
        }
    }

    pub(super) fn log(&self) -> &Log {
        match self {
            Self::Sequencer(sequencer) => sequencer.log(),
            Self::Replica(replica) => replica.log(),
        }
    }
}

impl Replica {
    /// The same log as a sequencer's, recovering: it numbers nothing until its component has
    /// checked the log against the replicas and opened an epoch above every one recorded
    /// (`term`'s, when elected). This replica takes no change from here on.
    pub fn hand_over(&self, term: Option<u64>) -> Sequencer {
        self.retire();
        let sequencer = Sequencer::new(self.ledger().clone());
        match term {
            Some(term) => sequencer.with_term(term),
            None => sequencer,
        }
    }
}

impl Sequencer {
    /// The same log as a replica's: this sequencer is fenced by `epoch` (the master that took
    /// over) and numbers nothing more. Its mode and its view of the secondaries stay with it; a
    /// sequencer made from the replica again starts recovering.
    pub fn hand_over(&self, epoch: u64) -> Replica {
        self.fence(epoch);
        Replica::new(self.ledger().clone())
    }
}
