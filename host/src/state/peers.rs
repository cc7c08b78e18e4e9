//! What the master knows of its secondaries: how far each one's log agrees with the master's,
//! and whether it answers. The master component's replicator writes it; writers wait on it.
//!
//! It lives in memory only. After a restart the master asks each secondary where its log
//! stands before sending anything (its first contact compares the two logs epoch by epoch), so
//! a saved position would only be a guess to check; there is none to go stale.

use std::sync::Mutex;

use tokio::sync::watch;

/// Whether a secondary answers, as the replicator last judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStatus {
    Healthy,
    /// Failing, or not contacted yet; still counted towards a majority.
    Suspected,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub url: String,
    /// Through which `seq` its log was checked to agree with the master's.
    pub acked: u64,
    /// Whether `acked` was established since this master started.
    pub synced: bool,
    pub status: PeerStatus,
    /// Contacts that failed in a row.
    pub failures: u32,
    /// When it last answered, in milliseconds since the Unix epoch.
    pub last_contact_ms: Option<u64>,
    pub last_error: Option<String>,
    /// The `DELAY_MS` it last reported.
    pub delay_ms: Option<u64>,
}

impl Peer {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            acked: 0,
            synced: false,
            status: PeerStatus::Suspected,
            failures: 0,
            last_contact_ms: None,
            last_error: Some("not contacted yet".to_owned()),
            delay_ms: None,
        }
    }
}

/// The outcome of one contact, as the replicator judged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub ok: bool,
    pub status: PeerStatus,
    pub error: Option<String>,
    pub delay_ms: Option<u64>,
}

/// The master's secondaries, in configuration order.
#[derive(Debug)]
pub struct Peers {
    peers: Mutex<Vec<Peer>>,
    /// Bumped on every acknowledgement, for writers waiting on one.
    acks: watch::Sender<u64>,
}

impl Default for Peers {
    fn default() -> Self {
        Self::new(std::iter::empty::<&str>())
    }
}

impl Peers {
    pub fn new<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            peers: Mutex::new(urls.into_iter().map(Peer::new).collect()),
            acks: watch::channel(0).0,
        }
    }

    pub fn all(&self) -> Vec<Peer> {
        self.lock().clone()
    }

    pub fn get(&self, url: &str) -> Option<Peer> {
        self.lock().iter().find(|p| p.url == url).cloned()
    }

    /// Through which `seq` `url` agrees with the master (0 for an unknown peer).
    pub fn acked(&self, url: &str) -> u64 {
        self.get(url).map_or(0, |p| p.acked)
    }

    /// Stores the position as the replicator established it, even when lower than before (the
    /// secondary lost or repaired its log). Unknown peers are ignored.
    pub fn record_ack(&self, url: &str, acked: u64, synced: bool) {
        let changed = self.update(url, |peer| {
            peer.acked = acked;
            peer.synced = synced;
        });
        if changed {
            self.acks.send_modify(|n| *n += 1);
        }
    }

    /// Records a contact's outcome and the status judged from it.
    pub fn record_contact(&self, url: &str, contact: Contact) {
        self.update(url, |peer| {
            peer.status = contact.status;
            if contact.delay_ms.is_some() {
                peer.delay_ms = contact.delay_ms;
            }
            if contact.ok {
                peer.failures = 0;
                peer.last_contact_ms = Some(now_ms());
                peer.last_error = None;
            } else {
                peer.failures = peer.failures.saturating_add(1);
                peer.last_error = contact.error;
            }
        });
    }

    /// How many peers have acknowledged `seq`.
    pub fn count_acked(&self, seq: u64) -> usize {
        self.lock().iter().filter(|p| p.acked >= seq).count()
    }

    /// Resolves once at least `count` peers have acknowledged `seq`.
    pub async fn wait_acked(&self, seq: u64, count: usize) {
        let mut acks = self.acks.subscribe();
        while self.count_acked(seq) < count {
            if acks.changed().await.is_err() {
                return;
            }
        }
    }

    fn update(&self, url: &str, change: impl FnOnce(&mut Peer)) -> bool {
        let mut peers = self.lock();
        match peers.iter_mut().find(|p| p.url == url) {
            Some(peer) => {
                change(peer);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Peer>> {
        // Each update completes before the lock is released, so a poisoned lock is consistent.
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn contact(ok: bool, status: PeerStatus) -> Contact {
        Contact { ok, status, error: (!ok).then(|| "refused".to_owned()), delay_ms: None }
    }

    #[test]
    fn positions_are_stored_as_established() {
        let peers = Peers::new(["http://a", "http://b"]);
        peers.record_ack("http://a", 5, true);
        peers.record_ack("http://a", 2, false);
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.acked, a.synced), (2, false), "a peer that lost its log is believed");
        peers.record_ack("http://nobody", 9, true);
        assert_eq!(peers.all().len(), 2, "unknown peers are not added");
        assert_eq!(peers.count_acked(2), 1);
    }

    #[test]
    fn contacts_count_failures_until_one_succeeds() {
        let peers = Peers::new(["http://a"]);
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.status, a.last_contact_ms), (PeerStatus::Suspected, None));
        peers.record_contact("http://a", contact(false, PeerStatus::Suspected));
        peers.record_contact("http://a", contact(false, PeerStatus::Unhealthy));
        let a = peers.get("http://a").unwrap();
        assert_eq!(
            (a.status, a.failures, a.last_error.as_deref()),
            (PeerStatus::Unhealthy, 2, Some("refused"))
        );
        peers.record_contact(
            "http://a",
            Contact { delay_ms: Some(7), ..contact(true, PeerStatus::Healthy) },
        );
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.status, a.failures, a.last_error), (PeerStatus::Healthy, 0, None));
        assert_eq!(a.delay_ms, Some(7));
        assert!(a.last_contact_ms.is_some());
    }

    #[tokio::test]
    async fn waiting_for_acknowledgements_ends_when_enough_peers_have_one() {
        let peers = std::sync::Arc::new(Peers::new(["http://a", "http://b"]));
        let waiter = tokio::spawn({
            let peers = peers.clone();
            async move { peers.wait_acked(3, 2).await }
        });
        peers.record_ack("http://a", 3, true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one of two is not enough");
        peers.record_ack("http://b", 4, true);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }
}
