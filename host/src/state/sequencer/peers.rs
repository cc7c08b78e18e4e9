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
    /// Answering.
    Healthy,
    /// Failing, or not contacted yet; still counted towards a majority.
    Suspected,
    /// Failed too often; not counted towards a majority until it answers again.
    Unhealthy,
}

impl PeerStatus {
    /// Every status's word, in declaration order: the one owner of these words on the host
    /// (metrics labels, logs).
    pub const WORDS: [&'static str; 3] = ["healthy", "suspected", "unhealthy"];

    /// Its word: `healthy`, `suspected` or `unhealthy`.
    pub fn word(self) -> &'static str {
        Self::WORDS[self as usize]
    }
}

/// One secondary as the master sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// Its base URL, as configured.
    pub url: String,
    /// Through which `seq` its log was checked to agree with the master's.
    pub acked: u64,
    /// Whether `acked` was established since this master started.
    pub synced: bool,
    /// How the replicator last judged it.
    pub status: PeerStatus,
    /// Contacts that failed in a row.
    pub failures: u32,
    /// When it last answered, in milliseconds since the Unix epoch.
    pub last_contact_ms: Option<u64>,
    /// Why its last contact failed, if it did.
    pub last_error: Option<String>,
    /// The `DELAY_MS` it last reported.
    pub delay_ms: Option<u64>,
    /// The commit point the last append it acknowledged carried: what it was told.
    pub told: u64,
}

impl PeerRecord {
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
            told: 0,
        }
    }
}

/// What one contact showed, as the replicator judged it; stored as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// How the replicator judges it now.
    pub status: PeerStatus,
    /// Contacts that failed in a row, this one included.
    pub failures: u32,
    /// When it last answered, in milliseconds since the Unix epoch.
    pub answered_ms: Option<u64>,
    /// Why this contact failed, if it did.
    pub error: Option<String>,
    /// The `DELAY_MS` it reported, if it answered.
    pub delay_ms: Option<u64>,
}

/// The master's secondaries, in configuration order.
#[derive(Debug)]
pub struct Peers {
    peers: Mutex<Vec<PeerRecord>>,
    /// Bumped on every acknowledgement, for writers waiting on one.
    acks: watch::Sender<u64>,
}

impl Default for Peers {
    fn default() -> Self {
        Self::new(std::iter::empty::<&str>())
    }
}

impl Peers {
    pub(crate) fn new<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            peers: Mutex::new(urls.into_iter().map(PeerRecord::new).collect()),
            acks: watch::channel(0).0,
        }
    }

    /// Starts over with `urls`, as none of them has been contacted yet (when a node learns its
    /// peers from its component).
    pub(crate) fn configure<'a>(&self, urls: impl IntoIterator<Item = &'a str>) {
        *self.lock() = urls.into_iter().map(PeerRecord::new).collect();
    }

    /// Every secondary, in configuration order.
    pub fn all(&self) -> Vec<PeerRecord> {
        self.lock().clone()
    }

    /// The secondary at `url`.
    pub fn get(&self, url: &str) -> Option<PeerRecord> {
        self.lock().iter().find(|p| p.url == url).cloned()
    }

    /// Through which `seq` `url` agrees with the master (0 for an unknown peer).
    pub fn acked(&self, url: &str) -> u64 {
        self.get(url).map_or(0, |p| p.acked)
    }

    /// Stores the position as the replicator established it, even when lower than before (the
    /// secondary lost or repaired its log). Unknown peers are ignored.
    pub(crate) fn record_ack(&self, url: &str, acked: u64, synced: bool) {
        let changed = self.update(url, |peer| {
            peer.acked = acked;
            peer.synced = synced;
        });
        if changed {
            self.acks.send_modify(|n| *n += 1);
        }
    }

    /// Records that `url` acknowledged an append that carried the commit point `seq`.
    pub(crate) fn record_told(&self, url: &str, seq: u64) {
        self.update(url, |peer| peer.told = seq);
    }

    /// Records what a contact showed, as the replicator judged it.
    pub(crate) fn record_contact(&self, url: &str, contact: Contact) {
        self.update(url, |peer| {
            peer.status = contact.status;
            peer.failures = contact.failures;
            peer.last_contact_ms = contact.answered_ms;
            peer.last_error = contact.error;
            if contact.delay_ms.is_some() {
                peer.delay_ms = contact.delay_ms;
            }
        });
    }

    /// How many peers have acknowledged `seq`.
    pub(crate) fn count_acked(&self, seq: u64) -> usize {
        self.lock().iter().filter(|p| p.acked >= seq).count()
    }

    /// Resolves once at least `count` peers have acknowledged `seq`.
    pub(crate) async fn wait_acked(&self, seq: u64, count: usize) {
        let mut acks = self.acks.subscribe();
        while self.count_acked(seq) < count {
            if acks.changed().await.is_err() {
                return;
            }
        }
    }

    fn update(&self, url: &str, change: impl FnOnce(&mut PeerRecord)) -> bool {
        let mut peers = self.lock();
        match peers.iter_mut().find(|p| p.url == url) {
            Some(peer) => {
                change(peer);
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PeerRecord>> {
        // Each update completes before the lock is released, so a poisoned lock is consistent.
        self.peers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
    fn contacts_are_stored_as_the_replicator_judged_them() {
        let peers = Peers::default();
        peers.configure(["http://a"]);
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.status, a.last_contact_ms), (PeerStatus::Suspected, None));
        let failed = Contact {
            status: PeerStatus::Unhealthy,
            failures: 3,
            answered_ms: Some(10),
            error: Some("refused".into()),
            delay_ms: None,
        };
        peers.record_contact("http://a", failed);
        let a = peers.get("http://a").unwrap();
        assert_eq!(
            (a.status, a.failures, a.last_contact_ms, a.last_error.as_deref()),
            (PeerStatus::Unhealthy, 3, Some(10), Some("refused"))
        );
        let back = Contact {
            status: PeerStatus::Healthy,
            failures: 0,
            answered_ms: Some(20),
            error: None,
            delay_ms: Some(7),
        };
        peers.record_contact("http://a", back);
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.failures, a.last_error, a.delay_ms), (0, None, Some(7)));
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
