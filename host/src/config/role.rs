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
    /// Largest request body the role takes unless told otherwise. A secondary's is larger than
    /// the master's client limit: a batch carries many messages, and JSON escaping can grow
    /// each one.
    pub(crate) fn default_max_body_bytes(self) -> u64 {
        match self {
            Role::Master => 1 << 20,
            Role::Secondary => 16 << 20,
        }
    }

    /// The body limit a secondary needs to take every batch of a master whose clients may send
    /// `master_limit` bytes: a batch stops once its JSON passes 1 MiB, and its last message's
    /// JSON can be six times its bytes (control characters are escaped as `\u00XX`).
    pub(crate) fn secondary_limit_for(master_limit: u64) -> u64 {
        let batch = master_limit.saturating_mul(6).saturating_add(2 << 20);
        batch.max(Role::Secondary.default_max_body_bytes())
    }

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

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn a_secondary_takes_the_largest_batch_its_master_can_send() {
        assert_eq!(Role::secondary_limit_for(64), 16 << 20, "never below the default");
        assert_eq!(Role::secondary_limit_for(1 << 20), 16 << 20);
        assert_eq!(Role::secondary_limit_for(8 << 20), 50 << 20, "6 × 8 MiB + 2 MiB");
        assert_eq!(Role::secondary_limit_for(u64::MAX), u64::MAX);
    }
}
