//! What a secondary imports: `replica`, whole changes to its log on its master's word. The
//! rules are `state::Replica`'s; this only translates.

use super::NodeView;
use super::replog::node::{log, replica, types};
use crate::state;

impl replica::Host for NodeView<'_> {
    fn state(&mut self) -> wasmtime::Result<replica::Snapshot> {
        Ok(self.replica()?.standing().into())
    }

    async fn write(
        &mut self,
        change: replica::Change,
    ) -> wasmtime::Result<Result<replica::Snapshot, types::LogError>> {
        let (first, last) = match (change.entries.first(), change.entries.last()) {
            (Some(first), Some(last)) => (first.seq, last.seq),
            _ => (0, 0),
        };
        let (epoch, truncate_after) = (change.epoch, change.truncate_after);
        let change_begin =
            change.begin.map(|log::Position { seq, epoch }| state::Position { seq, epoch });
        let change = state::Change {
            version: change.version,
            epoch: change.epoch,
            truncate_after: change.truncate_after,
            begin: change_begin,
            entries: change.entries.into_iter().map(Into::into).collect(),
        };
        let standing = match self.replica()?.write(change).await {
            Ok(standing) => standing,
            Err(error) => return Ok(Err(error.into())),
        };
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
        Ok(Ok(standing.into()))
    }

    fn set_refusal(&mut self, reason: Option<String>) -> wasmtime::Result<()> {
        self.replica()?.refuse(reason);
        Ok(())
    }

    fn commit(&mut self, seq: u64) -> wasmtime::Result<u64> {
        self.replica()?;
        Ok(self.state.log().commit(seq))
    }
}

impl NodeView<'_> {
    /// The node's state as a secondary's, or a trap: a component called a secondary's import
    /// on a node that is not one.
    fn replica(&self) -> wasmtime::Result<&state::Replica> {
        self.state.replica().ok_or_else(|| {
            wasmtime::format_err!("node {} is not a secondary: it has no replica", self.node)
        })
    }
}

impl From<state::ReplicaStanding> for replica::Snapshot {
    fn from(standing: state::ReplicaStanding) -> Self {
        let state::Snapshot { epoch, last, version } = standing.log;
        Self {
            epoch,
            last: log::Position { seq: last.seq, epoch: last.epoch },
            version,
            refusal: standing.refusal,
        }
    }
}
