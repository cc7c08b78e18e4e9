//! What the master knows of its secondaries: how much of the log each holds, and whether it
//! answers. The master component's replicator keeps this up to date; writers wait on it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
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
    /// Length of the gap-free prefix it last reported.
    pub acked: u64,
    pub status: PeerStatus,
    /// Contacts that failed in a row.
    pub failures: u32,
    /// When it last answered, in milliseconds since the Unix epoch.
    pub last_contact_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl Peer {
    fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            acked: 0,
            status: PeerStatus::Suspected,
            failures: 0,
            last_contact_ms: None,
            last_error: Some("not contacted yet".to_owned()),
        }
    }
}

/// The master's secondaries, in configuration order.
#[derive(Debug)]
pub struct Peers {
    peers: Mutex<Vec<Peer>>,
    /// Bumped on every acknowledgement, for writers waiting on one.
    acks: watch::Sender<u64>,
    /// Where the acknowledged positions are kept across restarts, if anywhere.
    file: Option<PathBuf>,
    /// Whether positions changed since they were last written.
    dirty: AtomicBool,
}

/// The on-disk form of the positions: `{"format": 1, "acked": {"<url>": n}}`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    format: u32,
    acked: BTreeMap<String, u64>,
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
            file: None,
            dirty: AtomicBool::new(false),
        }
    }

    /// Peers whose acknowledged positions are kept in `file`, starting from what it holds.
    /// The positions are hints: a stale one only means resending what a secondary already has
    /// (it keeps each message once), and the master checks with each secondary on first
    /// contact. So they are written every so often (`flush`), not on every acknowledgement.
    pub fn open<'a>(
        urls: impl IntoIterator<Item = &'a str>,
        file: PathBuf,
    ) -> std::io::Result<Self> {
        let mut peers = Self::new(urls);
        match std::fs::read(&file) {
            Ok(bytes) => {
                let saved: Saved = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                for peer in peers.peers.get_mut().unwrap_or_else(|p| p.into_inner()) {
                    peer.acked = saved.acked.get(&peer.url).copied().unwrap_or(0);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        peers.file = Some(file);
        Ok(peers)
    }

    /// Writes the positions if they changed since the last write: to a temporary file, then
    /// renamed over the old one, so a crash leaves one or the other whole.
    pub fn flush(&self) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let saved = Saved {
            format: 1,
            acked: self.lock().iter().map(|p| (p.url.clone(), p.acked)).collect(),
        };
        let temp = file.with_extension("json.tmp");
        let written = std::fs::write(&temp, serde_json::to_vec(&saved).expect("serializable"))
            .and_then(|()| std::fs::rename(&temp, file));
        if written.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        written
    }

    pub fn all(&self) -> Vec<Peer> {
        self.lock().clone()
    }

    pub fn get(&self, url: &str) -> Option<Peer> {
        self.lock().iter().find(|p| p.url == url).cloned()
    }

    /// The gap-free prefix length `url` last reported (0 for an unknown peer).
    pub fn acked(&self, url: &str) -> u64 {
        self.get(url).map_or(0, |p| p.acked)
    }

    /// Stores the length as reported, even when lower than before: a secondary that lost its
    /// log must be sent it again from where it really is. Unknown peers are ignored.
    pub fn record_ack(&self, url: &str, len: u64) {
        let changed = self.update(url, |peer| peer.acked = len);
        if changed {
            self.dirty.store(true, Ordering::Release);
            self.acks.send_modify(|n| *n += 1);
        }
    }

    /// Records a contact's outcome and the status judged from it.
    pub fn record_contact(&self, url: &str, ok: bool, status: PeerStatus, error: Option<String>) {
        self.update(url, |peer| {
            peer.status = status;
            if ok {
                peer.failures = 0;
                peer.last_contact_ms = Some(now_ms());
                peer.last_error = None;
            } else {
                peer.failures = peer.failures.saturating_add(1);
                peer.last_error = error;
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

    #[test]
    fn acknowledgements_are_stored_as_reported() {
        let peers = Peers::new(["http://a", "http://b"]);
        peers.record_ack("http://a", 5);
        peers.record_ack("http://a", 2);
        assert_eq!(peers.acked("http://a"), 2, "a peer that lost its log is believed");
        peers.record_ack("http://nobody", 9);
        assert_eq!(peers.all().len(), 2, "unknown peers are not added");
        assert_eq!(peers.count_acked(2), 1);
    }

    #[test]
    fn contacts_count_failures_until_one_succeeds() {
        let peers = Peers::new(["http://a"]);
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.status, a.last_contact_ms), (PeerStatus::Suspected, None));
        peers.record_contact("http://a", false, PeerStatus::Suspected, Some("refused".into()));
        peers.record_contact("http://a", false, PeerStatus::Unhealthy, Some("refused".into()));
        let a = peers.get("http://a").unwrap();
        assert_eq!(
            (a.status, a.failures, a.last_error.as_deref()),
            (PeerStatus::Unhealthy, 2, Some("refused"))
        );
        peers.record_contact("http://a", true, PeerStatus::Healthy, None);
        let a = peers.get("http://a").unwrap();
        assert_eq!((a.status, a.failures, a.last_error), (PeerStatus::Healthy, 0, None));
        assert!(a.last_contact_ms.is_some());
    }

    #[test]
    fn positions_survive_in_their_file() {
        let dir = std::env::temp_dir().join(format!("replog-peers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("peers.json");
        let peers = Peers::open(["http://a", "http://b"], file.clone()).unwrap();
        peers.record_ack("http://a", 7);
        peers.flush().unwrap();
        let again = Peers::open(["http://a", "http://c"], file).unwrap();
        assert_eq!((again.acked("http://a"), again.acked("http://c")), (7, 0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn waiting_for_acknowledgements_ends_when_enough_peers_have_one() {
        let peers = std::sync::Arc::new(Peers::new(["http://a", "http://b"]));
        let waiter = tokio::spawn({
            let peers = peers.clone();
            async move { peers.wait_acked(3, 2).await }
        });
        peers.record_ack("http://a", 3);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one of two is not enough");
        peers.record_ack("http://b", 4);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }
}
