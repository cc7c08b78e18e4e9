//! The commit point, advanced after every acknowledgement: what `policy::commit_point` allows
//! from where the secondaries' logs agree with this master's, handed to the host (which keeps
//! it from going back or past the log). The replication streams carry it to the secondaries.

use replog_guest::host::log;

use crate::bindings::replog::node::{peers, sequencer};
use crate::policy;

/// Raises the commit point as far as the acknowledgements allow, for a master open in `epoch`.
pub fn advance(epoch: u64) {
    let acked: Vec<u64> = peers::all().iter().map(|peer| peer.acked).collect();
    if let Some(seq) = policy::commit_point(epoch, log::len(), &acked, log::epoch_at)
        && seq > log::committed()
    {
        sequencer::commit(seq);
    }
}
