//! Replication, one step at a time: the `replicator.step` export.
//!
//! The host runs one stream per secondary and calls `step` over and over. Until a secondary has
//! answered this master, a step asks it where its log stands (a probe) and finds where the two
//! logs agree. From there it sends what the secondary lacks, after the entry both hold (`prev`),
//! as many entries as fit in one batch; the secondary drops whatever it holds that the master
//! does not. An idle secondary gets the same request without entries every heartbeat, which
//! also tells it this master's epoch. Only an answer naming exactly the last entry sent counts
//! as an acknowledgement. Every append carries the commit point (see `commit`); an idle
//! secondary told less than the commit point gets a heartbeat at once (the host wakes the
//! streams when the commit point moves), so its readers follow within a round trip. A step
//! records what happened and says when the next should run: at
//! once while there is more to send, on the next append when all is sent, later (with jitter)
//! after a failure. Nothing is ever given up.

use std::time::Duration;

use replog_guest::host::log;
use replog_guest::log::{entries, within_bytes};
use replog_guest::wire::{Ack, AckStatus, Append, Position, WireEntry};
use wasip2::http::types::Method;

use crate::answers::{NoAck, step_answer};
use crate::bindings::exports::replog::node::replicator::Wake;
use crate::bindings::replog::node::peers::{self, Outcome, Peer};
use crate::bindings::replog::node::sequencer::{self, Mode};
use crate::commit;
use crate::pace::{self, Next};
use crate::peer_http;
use crate::policy;
use crate::settings::MasterSettings;
use replog_guest::peer::PeerUrl;
use replog_guest::wire::BATCH_BYTES;

/// One step of the stream to the secondary at `url`: what the host calls, over and over, and
/// when to call again.
pub fn step(url: &str) -> Wake {
    let settings = match MasterSettings::current() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("cannot replicate to {url}: {e}");
            return pace::later(Duration::from_secs(5));
        }
    };
    let (Some(peer), Some(known)) = (settings.peer(url), peers::get(url)) else {
        eprintln!("{url} is not one of this master's secondaries");
        return pace::later(Duration::from_secs(60));
    };
    let Mode::Open(epoch) = sequencer::status().mode else {
        // Recovering (the host starts streams after recovery) or fenced: nothing to send.
        return pace::later(settings.heartbeat);
    };
    let stream = StreamStep { settings, peer, known, epoch };
    let len = log::len();
    match pace::next(&stream.known, len, replog_guest::now_ms(), settings.heartbeat) {
        Next::Probe => stream.probe(len),
        Next::Send => stream.send(len),
        // Idle, but told less than the commit point: a heartbeat tells it, so that its
        // readers see what is committed without waiting for the next write.
        Next::Idle(_) if log::committed() > peers::told(url) => stream.send(len),
        Next::Idle(after) => Wake { after_ms: Some(pace::millis(after)), on_append: true },
    }
}

/// One step's view of the stream to one secondary.
struct StreamStep<'a> {
    settings: &'a MasterSettings,
    /// Where to send.
    peer: &'a PeerUrl,
    /// What the host knows of the secondary, as this step began.
    known: Peer,
    /// The epoch this master numbers in: every request carries it.
    epoch: u64,
}

impl StreamStep<'_> {
    /// Asks the secondary where its log stands, and finds where it agrees with ours.
    fn probe(mut self, len: u64) -> Wake {
        let probe = Append {
            epoch: self.epoch,
            prev: None,
            entries: Vec::new(),
            end: None,
            commit: None,
            begin: false,
        };
        let ack = match self.exchange(&probe) {
            Ok(ack) => ack,
            Err(wake) => return wake,
        };
        if ack.epoch > self.epoch {
            return self.fenced(ack.epoch);
        }
        let agreed = self.agree(&ack, len);
        if ack.last.seq > agreed {
            eprintln!(
                "{} holds {} entries past seq {agreed} that this master does not have: \
                 replacing them",
                self.peer.url,
                ack.last.seq - agreed
            );
            let repairing = Outcome::Repairing(ack.last.seq - agreed);
            let contact = pace::answered(replog_guest::now_ms(), Some(ack.delay_ms), repairing);
            peers::record_contact(&self.peer.url, &contact);
            self.known.acked = agreed;
            return self.send(len);
        }
        self.answered(agreed, len, &ack, 0)
    }

    /// Sends what the secondary lacks after what it acknowledged, or a heartbeat.
    fn send(self, len: u64) -> Wake {
        let (prev, begin, entries) = batch(self.known.acked, len);
        let sent = entries.last().map_or(prev, |e| Position { seq: e.seq, epoch: e.epoch });
        let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        let committed = log::committed();
        let append = Append {
            epoch: self.epoch,
            prev: Some(prev),
            entries,
            end: Some(len),
            commit: Some(committed),
            begin,
        };
        let ack = match self.exchange(&append) {
            Ok(ack) => ack,
            Err(wake) => return wake,
        };
        if begin && ack.status == AckStatus::Ok && ack.epoch <= self.epoch {
            // Said once, when the secondary took it (a failed contact is tried again, silently).
            eprintln!(
                "{} needed entries from seq {} on, and this log starts at seq {} (retention \
                 removed the rest): it was brought to seq {}",
                self.peer.url,
                self.known.acked + 1,
                prev.seq + 1,
                prev.seq + 1
            );
        }
        if ack.status == AckStatus::Mismatch {
            // Its log changed under us (it lost or rolled back entries): start from where the
            // two logs agree now.
            let agreed = self.agree(&ack, len);
            eprintln!(
                "{} no longer holds seq {} of epoch {}: its log agrees with ours through seq \
                 {agreed} now",
                self.peer.url, prev.seq, prev.epoch
            );
            return self.answered(agreed, len, &ack, 0);
        }
        match policy::acknowledged(sent, &ack) {
            Ok(held) => {
                peers::record_ack(&self.peer.url, held, true);
                peers::record_told(&self.peer.url, committed);
                commit::advance(self.epoch);
                self.answered(held, len, &ack, count)
            }
            Err(why) => {
                peers::record_ack(&self.peer.url, self.known.acked, false);
                self.failed(why)
            }
        }
    }

    /// Records through which `seq` the secondary's log agrees with ours, from its runs.
    fn agree(&self, ack: &Ack, len: u64) -> u64 {
        let agreed = policy::common_prefix(&log::runs(), len, &ack.runs, ack.last.seq);
        peers::record_ack(&self.peer.url, agreed, true);
        commit::advance(self.epoch);
        agreed
    }

    /// Sends `append` and reads the answer; `Err` is the step's outcome when there is none to
    /// work with (a failure, or this master fenced).
    fn exchange(&self, append: &Append) -> Result<Ack, Wake> {
        let body = serde_json::to_vec(append).expect("an append always serializes");
        let timeout = self.settings.peer_timeout;
        let answer =
            peer_http::request(self.peer, Method::Post, "/replicate", Some(&body), timeout);
        match answer.map_err(NoAck::Failed).and_then(|(status, body)| step_answer(status, &body)) {
            Ok(ack) => Ok(ack),
            Err(NoAck::Fenced(theirs)) => Err(self.fenced(theirs)),
            Err(NoAck::Failed(why)) => Err(self.failed(why)),
        }
    }

    /// After a successful contact that acknowledged `sent` entries: healthy, and at once again
    /// if it still lacks entries.
    fn answered(&self, holds: u64, len: u64, ack: &Ack, sent: u32) -> Wake {
        if self.known.failures > 0 {
            eprintln!(
                "{} answers again after {} failed contacts; {} entries to send",
                self.peer.url,
                self.known.failures,
                len.saturating_sub(holds)
            );
        }
        let contact =
            pace::answered(replog_guest::now_ms(), Some(ack.delay_ms), Outcome::Acknowledged(sent));
        peers::record_contact(&self.peer.url, &contact);
        pace::after_answer(holds, len, self.settings.heartbeat)
    }

    /// A secondary follows a newer master: this one takes no more writes.
    fn fenced(&self, theirs: u64) -> Wake {
        eprintln!(
            "fenced: {} follows a master of epoch {theirs}, newer than this master's {}; this \
             master takes no more writes (restart it to recover and take over again)",
            self.peer.url, self.epoch
        );
        sequencer::fence(theirs);
        let contact = pace::answered(replog_guest::now_ms(), None, Outcome::Fenced);
        peers::record_contact(&self.peer.url, &contact);
        pace::later(self.settings.heartbeat)
    }

    /// After a failed contact: counts it, judges the secondary's status, and backs off.
    fn failed(&self, error: String) -> Wake {
        let settings = self.settings;
        let contact =
            pace::failed(&self.known, error, settings.suspect_after, settings.unhealthy_after);
        if contact.status != self.known.status {
            eprintln!(
                "{} is now {} after {} failed contacts: {}",
                self.peer.url,
                contact.status.as_str(),
                contact.failures,
                contact.error.as_deref().unwrap_or_default()
            );
        }
        peers::record_contact(&self.peer.url, &contact);
        pace::after_failure(&contact, settings.heartbeat, random_unit())
    }
}

/// The entry at `after` (where the secondary's log agrees with ours), and the entries after it
/// up to `to`, cut short once their JSON passes `BATCH_BYTES` (at least one when there are
/// any). Only the pages that hold what is sent are read (a batch cut short leaves the rest of
/// its last page unsent): the host names the client requests behind what a step reads in the
/// requests it sends (`X-Request-Id`). When the secondary needs entries before our start
/// (retention removed them), the batch starts at our start instead, and says so (`begin`): the
/// secondary is brought to our start.
fn batch(after: u64, to: u64) -> (Position, bool, Vec<WireEntry>) {
    let start = log::start();
    let begin = after + 1 < start;
    let after = if begin { start - 1 } else { after };
    let prev = Position { seq: after, epoch: log::epoch_at(after).unwrap_or_default() };
    let lacking = entries(after + 1, to.saturating_sub(after));
    let entries =
        within_bytes(lacking.map(WireEntry::from), BATCH_BYTES, |entry| json_len(entry) + 1)
            .collect();
    (prev, begin, entries)
}

/// The length of `value` as JSON, without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("an entry always serializes");
    count.0
}

/// A random number from 0 to 1, to spread retries so that streams do not fall in step.
pub fn random_unit() -> f64 {
    (wasip2::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
