//! What a secondary imports: `replica`, whole changes to its log on its master's word.

use super::NodeView;
use super::replog::node::{log, replica, types};
use crate::state;

impl replica::Host for NodeView<'_> {
    fn state(&mut self) -> replica::Snapshot {
        replica_state(&self.state.log)
    }

    async fn write(
        &mut self,
        change: replica::Change,
    ) -> Result<replica::Snapshot, types::LogError> {
        let change = state::Change {
            version: change.version,
            epoch: change.epoch,
            truncate_after: change.truncate_after,
            entries: change.entries.into_iter().map(Into::into).collect(),
        };
        self.state.log.write(change).await?;
        Ok(replica_state(&self.state.log))
    }
}

fn replica_state(log: &state::Log) -> replica::Snapshot {
    let state::Snapshot { epoch, last, version } = log.snapshot();
    replica::Snapshot { epoch, last: log::Position { seq: last.seq, epoch: last.epoch }, version }
}
