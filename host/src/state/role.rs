//! A node's state in its role, and the passage from one role's to the other's: the ledger (the
//! log with the claim on its directory) goes along, nothing else does.

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

    pub(super) fn log(&self) -> &Log {
        match self {
            Self::Sequencer(sequencer) => sequencer.log(),
            Self::Replica(replica) => replica.log(),
        }
    }
}

impl Replica {
    /// The same log as a sequencer's, recovering: it numbers nothing until its component has
    /// checked the log against the replicas and opened an epoch above every one recorded.
    pub fn into_sequencer(self) -> Sequencer {
        Sequencer::new(self.into_ledger())
    }
}

impl Sequencer {
    /// The same log as a replica's: writes stop being numbered here. Its mode and its view of
    /// the secondaries are dropped; a sequencer made from the replica again starts recovering.
    pub fn into_replica(self) -> Replica {
        Replica::new(self.into_ledger())
    }
}
