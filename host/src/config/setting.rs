//! The names of the settings the host itself writes into a component's environment or a
//! Compose file: one owner for each, so the command line, `replog cluster`, `replog compose`
//! and the components' environment cannot spell one two ways. (The components own the
//! meaning of their settings; these are only the names the host must write.)

/// The node's name, for the component's answers and logs.
pub(crate) const REPLOG_NODE: &str = "REPLOG_NODE";
/// The node's role, `master` or `secondary`.
pub(crate) const REPLOG_ROLE: &str = "REPLOG_ROLE";
/// The largest message a client may send: enforced by the host at the master, passed to every
/// component (a secondary sizes its largest batch from it).
pub(crate) const MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
/// A master's secondaries, as base URLs separated by commas.
pub(crate) const SECONDARIES: &str = "SECONDARIES";
/// The secondaries' `DELAY_MS`, for their master to check they fit its timeouts.
pub(crate) const SECONDARY_DELAYS: &str = "SECONDARY_DELAYS";
/// A secondary's artificial delay before it stores a replication.
pub(crate) const DELAY_MS: &str = "DELAY_MS";
/// The epoch an election gave a master: it opens that one or none. Written by the host on an
/// elected master only; never taken from a node's settings or environment.
pub(crate) const ELECTED_EPOCH: &str = "ELECTED_EPOCH";
/// The members of an elected cluster, `name=url,...`, the same on every node.
pub(crate) const MEMBERS: &str = "MEMBERS";
/// Where etcd answers, `http://host:port,...`.
pub(crate) const ETCD_ENDPOINTS: &str = "ETCD_ENDPOINTS";
/// The prefix of an elected cluster's keys in etcd.
pub(crate) const CLUSTER_NAME: &str = "CLUSTER_NAME";
