//! A bound on the memory a node holds for request bodies, across all its connections.
//!
//! `MAX_BODY_BYTES` bounds one request, `MAX_CONNECTIONS` how many there are; their product is
//! gigabytes, which anyone who reaches the port could otherwise make a node hold. So a body is
//! received only into room taken from the node's budget (`BODY_BUDGET_BYTES`), held until its
//! answer has been sent. A body whose length is announced waits for all its room at once,
//! holding none meanwhile, before a byte of it is read; one sent without a length (chunked)
//! takes room as it arrives and is refused with `503` when there is none, since waiting while
//! holding room could leave every waiter holding some. Part of the budget is reserved for the
//! cluster's own traffic, as instances are (`admit`): clients never take it.
//!
//! Refused requests whose body has not been read are drained rather than cut off (closing a
//! socket with unread data resets it, and the reset can destroy the answer before the client
//! reads it); draining drops what it reads, and only so many connections drain at once.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::node::Traffic;

/// Budget is counted in KiB: a permit per KiB keeps counts well within a semaphore's range.
const UNIT: u64 = 1024;

/// Connections that may drain a refused body at once; past that, a refused connection is
/// closed with its body unread. Each holds at most a read buffer (`READ_BUFFER_BYTES`).
const DRAINS: usize = 64;

/// Largest read buffer a connection keeps (hyper's `max_buf_size`): what one connection holds
/// besides its body's room, at most.
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A node's budget for request bodies.
pub(crate) struct BodyBudget {
    /// What any request may take: the budget less the reserve.
    shared: Arc<Semaphore>,
    /// What only the cluster's own traffic may take.
    reserve: Arc<Semaphore>,
    drains: Arc<Semaphore>,
    /// The whole budget in bytes, for error messages.
    bytes: u64,
    /// Bytes held now, for the metrics.
    held: IntGauge,
}

/// Room taken for one body; given back when dropped.
#[derive(Debug, Default)]
pub(crate) struct Room {
    shared: Option<OwnedSemaphorePermit>,
    reserve: Option<OwnedSemaphorePermit>,
    /// Bytes it covers.
    bytes: u64,
    /// Where those bytes are counted while it is held.
    held: Option<IntGauge>,
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.sub(i64::try_from(self.bytes).unwrap_or(i64::MAX));
        }
    }
}

impl Room {
    /// Bytes it covers.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.bytes
    }

    fn add(&mut self, permit: OwnedSemaphorePermit, from_reserve: bool, held: &IntGauge) {
        let bytes = permit.num_permits() as u64 * UNIT;
        self.bytes += bytes;
        held.add(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.held.get_or_insert_with(|| held.clone());
        let held = if from_reserve { &mut self.reserve } else { &mut self.shared };
        match held {
            Some(held) => held.merge(permit),
            None => *held = Some(permit),
        }
    }
}

/// A connection's leave to drain a refused body.
pub(crate) struct DrainSlot {
    _held: OwnedSemaphorePermit,
}

impl BodyBudget {
    /// A budget of `bytes`, of which `reserved` only the cluster's own traffic may take; what
    /// is held is counted in `held`.
    pub(crate) fn new(bytes: u64, reserved: u64, held: IntGauge) -> Self {
        let units = |bytes: u64| usize::try_from(bytes / UNIT).unwrap_or(usize::MAX);
        let reserve = units(reserved.min(bytes));
        Self {
            shared: Arc::new(Semaphore::new(units(bytes).saturating_sub(reserve))),
            reserve: Arc::new(Semaphore::new(reserve)),
            drains: Arc::new(Semaphore::new(DRAINS)),
            bytes,
            held,
        }
    }

    /// The whole budget in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Room for a body of `bytes`, announced before it is read: from the reserve at once if
    /// `traffic` may use it and it has room, else from what is shared, waiting up to `wait`
    /// in turn (first come, first served). `None` when it did not come in time.
    pub(crate) async fn room(&self, bytes: u64, traffic: Traffic, wait: Duration) -> Option<Room> {
        let mut room = Room::default();
        let units = permits(bytes);
        if units == 0 {
            return Some(room);
        }
        if traffic != Traffic::Client
            && let Ok(permit) = self.reserve.clone().try_acquire_many_owned(units)
        {
            room.add(permit, true, &self.held);
            return Some(room);
        }
        let shared = self.shared.clone().acquire_many_owned(units);
        let permit = tokio::time::timeout(wait, shared).await.ok()?.ok()?;
        room.add(permit, false, &self.held);
        Some(room)
    }

    /// Grows `room` to cover `bytes`, now or not at all: for a body whose length was not
    /// announced, which may not wait while it holds room.
    pub(crate) fn grow(&self, room: &mut Room, bytes: u64, traffic: Traffic) -> bool {
        let units = permits(bytes.saturating_sub(room.bytes));
        if units == 0 {
            return true;
        }
        if traffic != Traffic::Client
            && let Ok(permit) = self.reserve.clone().try_acquire_many_owned(units)
        {
            room.add(permit, true, &self.held);
            return true;
        }
        match self.shared.clone().try_acquire_many_owned(units) {
            Ok(permit) => {
                room.add(permit, false, &self.held);
                true
            }
            Err(_) => false,
        }
    }

    /// Leave to drain a refused body, if fewer than `DRAINS` connections are draining.
    pub(crate) fn drain_slot(&self) -> Option<DrainSlot> {
        self.drains.clone().try_acquire_owned().ok().map(|held| DrainSlot { _held: held })
    }

    /// Bytes not taken now, reserve included.
    #[cfg(test)]
    fn free(&self) -> u64 {
        (self.shared.available_permits() + self.reserve.available_permits()) as u64 * UNIT
    }
}

/// Permits covering `bytes`, rounded up; more than a semaphore can give at once saturates
/// (and never comes: `MAX_BODY_BYTES` is checked against the budget at start).
fn permits(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const NOW: Duration = Duration::ZERO;

    fn gauge() -> IntGauge {
        IntGauge::new("held", "held").unwrap()
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    #[test]
    fn clients_never_take_the_reserve_and_the_cluster_takes_it_first() {
        block_on(async {
            let budget = BodyBudget::new(4 * MIB, MIB, gauge());
            let clients = budget.room(3 * MIB, Traffic::Client, NOW).await.expect("3 MiB shared");
            assert_eq!(clients.bytes(), 3 * MIB);
            assert!(budget.room(1, Traffic::Client, NOW).await.is_none(), "the reserve is kept");
            let cluster = budget.room(MIB, Traffic::Proven, NOW).await.expect("the reserve");
            assert_eq!(budget.free(), 0);
            assert!(budget.room(1, Traffic::Cluster, NOW).await.is_none());
            assert_eq!(budget.held.get(), 4 * MIB as i64, "counted while held");
            drop((clients, cluster));
            assert_eq!(budget.free(), 4 * MIB, "everything given back");
            assert_eq!(budget.held.get(), 0);
            let first = budget.room(MIB, Traffic::Cluster, NOW).await.unwrap();
            assert_eq!(budget.free(), 3 * MIB);
            assert!(budget.room(3 * MIB, Traffic::Client, NOW).await.is_some(), "shared untouched");
            drop(first);
        });
    }

    #[test]
    fn a_waiting_body_gets_its_room_when_another_gives_it_back() {
        block_on(async {
            let budget = Arc::new(BodyBudget::new(2 * MIB, 0, gauge()));
            let held = budget.room(2 * MIB, Traffic::Client, NOW).await.unwrap();
            let waiter = tokio::spawn({
                let budget = budget.clone();
                async move { budget.room(MIB, Traffic::Client, Duration::from_secs(30)).await }
            });
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished());
            drop(held);
            let room = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
            assert_eq!(room.map(|r| r.bytes()), Some(MIB));
        });
    }

    #[test]
    fn an_unannounced_body_grows_its_room_or_is_refused_without_waiting() {
        let budget = BodyBudget::new(2 * MIB, MIB, gauge());
        let mut room = Room::default();
        assert!(budget.grow(&mut room, 1000, Traffic::Client));
        assert_eq!(room.bytes(), UNIT, "rounded up to whole KiB");
        assert!(budget.grow(&mut room, MIB, Traffic::Client));
        assert!(!budget.grow(&mut room, MIB + 1, Traffic::Client), "the rest is the reserve");
        assert_eq!(room.bytes(), MIB, "a refused growth takes nothing");
        let mut cluster = Room::default();
        assert!(budget.grow(&mut cluster, MIB, Traffic::Proven));
        assert!(!budget.grow(&mut cluster, MIB + 1, Traffic::Proven));
        drop((room, cluster));
        assert_eq!(budget.free(), 2 * MIB);
    }

    #[test]
    fn only_so_many_connections_drain_at_once() {
        let budget = BodyBudget::new(MIB, 0, gauge());
        let slots: Vec<_> = (0..DRAINS).map(|_| budget.drain_slot().expect("a slot")).collect();
        assert!(budget.drain_slot().is_none());
        drop(slots);
        assert!(budget.drain_slot().is_some());
    }
}
