//! What a secondary imports: `replica`, whole changes to its log on its master's word.

use super::NodeView;
use super::replog::node::{log, replica, types};
use crate::state;

impl replica::Host for NodeView<'_> {
    fn state(&mut self) -> replica::Snapshot {
        replica_state(self.state)
    }

    async fn write(
        &mut self,
        change: replica::Change,
    ) -> Result<replica::Snapshot, types::LogError> {
        let (first, last) = match (change.entries.first(), change.entries.last()) {
            (Some(first), Some(last)) => (first.seq, last.seq),
            _ => (0, 0),
        };
        let (epoch, truncate_after) = (change.epoch, change.truncate_after);
        let change = state::Change {
            version: change.version,
            epoch: change.epoch,
            truncate_after: change.truncate_after,
            entries: change.entries.into_iter().map(Into::into).collect(),
        };
        self.state.log.write(change).await?;
        if first > 0 || truncate_after.is_some() {
            let request_id = self.request_id.map(|id| &**id);
            tracing::debug!(
                node = self.node,
                first,
                last,
                epoch,
                truncate_after,
                request_id,
                "stored"
            );
        }
        Ok(replica_state(self.state))
    }

    fn set_refusal(&mut self, reason: Option<String>) {
        self.state.set_refusal(reason);
    }
}

fn replica_state(state: &state::NodeState) -> replica::Snapshot {
    let state::Snapshot { epoch, last, version } = state.log.snapshot();
    replica::Snapshot {
        epoch,
        last: log::Position { seq: last.seq, epoch: last.epoch },
        version,
        refusal: state.refusal(),
    }
}
