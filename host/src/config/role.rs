//! Which logic a node runs.

use std::fmt;

/// Which logic a node runs, and so which host interfaces its component may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Numbers and replicates writes; imports `replog:node/sequencer` and `replicator`.
    Master,
    /// Applies what its master sends; imports `replog:node/replica`.
    Secondary,
}

impl Role {
    /// Which rules the node's state enforces in this role.
    pub(crate) fn state_kind(self) -> crate::state::RoleKind {
        match self {
            Role::Master => crate::state::RoleKind::Sequencer,
            Role::Secondary => crate::state::RoleKind::Replica,
        }
    }

    /// File name of the role's component in a build or components directory.
    pub(crate) fn component_file(self) -> &'static str {
        match self {
            Role::Master => "replog_master.wasm",
            Role::Secondary => "replog_secondary.wasm",
        }
    }
}

impl Role {
    /// `master` or `secondary`: its name in logs, metrics and the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Secondary => "secondary",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
