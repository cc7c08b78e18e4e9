//! Whether a master takes writes: the mode its component set. A master starts recovering and
//! takes writes once its component has checked its log against the replicas and opened an
//! epoch; a secondary reporting a newer master closes it for good.

use tokio::sync::watch;

/// What a master may do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Not yet; the text says what recovery waits for.
    Recovering(String),
    /// Writes are numbered in this epoch.
    Open(u64),
    /// A master with this epoch has taken over.
    Fenced(u64),
}

impl Mode {
    /// Every mode's word: the one owner of these words on the host (metrics labels).
    pub const WORDS: [&'static str; 3] = ["recovering", "open", "fenced"];

    /// Its word: `recovering`, `open` or `fenced`.
    pub fn word(&self) -> &'static str {
        match self {
            Mode::Recovering(_) => Self::WORDS[0],
            Mode::Open(_) => Self::WORDS[1],
            Mode::Fenced(_) => Self::WORDS[2],
        }
    }
}

/// The master's mode, with a way to wait for recovery to end.
#[derive(Debug)]
pub(crate) struct Gate {
    mode: watch::Sender<Mode>,
}

impl Default for Gate {
    fn default() -> Self {
        Self { mode: watch::channel(Mode::Recovering("starting".to_owned())).0 }
    }
}

impl Gate {
    /// Whether the master recovers, takes writes, or was fenced.
    pub(crate) fn mode(&self) -> Mode {
        self.mode.borrow().clone()
    }

    /// Says what recovery waits for; ignored once it is over.
    pub(crate) fn hold(&self, reason: String) {
        self.mode.send_if_modified(|mode| match mode {
            Mode::Recovering(now) if *now != reason => {
                *now = reason;
                true
            }
            _ => false,
        });
    }

    pub(crate) fn open(&self, epoch: u64) {
        self.mode.send_replace(Mode::Open(epoch));
    }

    /// Closes writes, unless already fenced by a newer epoch.
    pub(crate) fn fence(&self, epoch: u64) {
        self.mode.send_if_modified(|mode| match mode {
            Mode::Fenced(by) if *by >= epoch => false,
            _ => {
                *mode = Mode::Fenced(epoch);
                true
            }
        });
    }

    /// Resolves once the master is no longer recovering.
    pub(crate) async fn settled(&self) {
        let mut mode = self.mode.subscribe();
        // The sender lives as long as `self`, which this borrows.
        let _ = mode.wait_for(|mode| !matches!(mode, Mode::Recovering(_))).await;
    }
}
