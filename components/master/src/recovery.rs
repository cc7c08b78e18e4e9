//! Recovery, one round at a time: the `replicator.recover` export, which the host calls while
//! the master is recovering (from its start until it opens an epoch).
//!
//! A round asks every secondary at once where its log stands, and lets `policy::recovery`
//! decide: wait for more answers, fetch what the most advanced replica holds beyond this
//! master's log (a chunk per round), or open a new epoch above every one seen. What it waits
//! for is shown on `/health` and in the `503` writers get meanwhile. The secondaries' health
//! is the replication streams' to judge, once they run.

use replog_guest::host::log;
use replog_guest::wire::{Ack, Append, RecoveryBatch};
use wasip2::http::types::Method;

use crate::answers::recovery_answer;
use crate::bindings::replog::node::sequencer::{self, Mode};
use crate::pace::millis;
use crate::peer_http;
use crate::policy::{self, OwnLog, RecoveryStep, ReplicaLog};
use crate::settings::{FORCE_RECOVERY, MasterSettings};

/// Entries asked for at a time from a replica.
const FETCH_LIMIT: u32 = 10_000;

/// One round; `None` once the master is open (or fenced), else when to run the next.
pub fn recover() -> Option<u64> {
    let settings = match MasterSettings::current() {
        Ok(settings) => settings,
        Err(e) => {
            let why = format!("the master's settings are wrong: {e}");
            eprintln!("{why}");
            sequencer::hold(&why);
            return Some(5_000);
        }
    };
    let standing = sequencer::status();
    let Mode::Recovering(waiting_for) = standing.mode else { return None };
    let runs = log::runs();
    let own = OwnLog { epoch: standing.epoch, last: log::last(), runs: &runs };
    let heard = ask_everyone(settings, standing.epoch);
    // Those that did not answer are named with why, for the reason recovery gives.
    let labels: Vec<String> = heard.iter().map(label).collect();
    let named: Vec<(&str, Option<&ReplicaLog>)> = labels
        .iter()
        .zip(&heard)
        .map(|(label, (_, h))| (label.as_str(), h.as_ref().ok()))
        .collect();
    let again = Some(millis(settings.heartbeat));
    let elected = settings.elected_epoch.is_some();
    match policy::recovery_of(own, &named, settings.force_recovery, elected) {
        RecoveryStep::Wait(why) | RecoveryStep::Diverged(why) => {
            if why != waiting_for {
                hold(&why);
            }
            again
        }
        RecoveryStep::Fetch(i) => {
            let (url, _) = &heard[i];
            match fetch(settings, url, own.last.seq) {
                Ok(0) => again,
                // There may be more: the next round at once.
                Ok(_) => Some(0),
                Err(why) => {
                    hold(&format!("fetching the log from {url}: {why}"));
                    again
                }
            }
        }
        RecoveryStep::Open(lowest) => match policy::epoch_to_open(lowest, settings.elected_epoch) {
            Ok(epoch) if open(epoch, &heard, settings.force_recovery) => {
                let answered: Vec<&ReplicaLog> =
                    heard.iter().filter_map(|(_, h)| h.as_ref().ok()).collect();
                let nodes = settings.nodes();
                let committed = sequencer::commit(policy::inherited_commit(own, &answered, nodes));
                if committed > 0 {
                    let why = match nodes {
                        1 => "this master is the whole cluster",
                        _ => "as the secondaries knew",
                    };
                    println!("the log is committed through seq {committed}, {why}");
                }
                None
            }
            Ok(_) => again,
            Err(why) => {
                if why != waiting_for {
                    hold(&why);
                }
                again
            }
        },
    }
}

/// A secondary as recovery's reason names it: with why, when it did not answer.
fn label((url, heard): &(String, Result<ReplicaLog, String>)) -> String {
    match heard {
        Ok(_) => url.clone(),
        Err(why) => format!("{url} ({why})"),
    }
}

/// Keeps the master from taking writes, for `why`, which `/health` and writers are shown.
fn hold(why: &str) {
    eprintln!("recovering: {why}");
    sequencer::hold(why);
}

/// Opens `epoch` and says so (and, when `forced`, who was not heard from); false when the
/// host did not let it, for the next round to try again.
fn open(epoch: u64, heard: &[(String, Result<ReplicaLog, String>)], forced: bool) -> bool {
    if let Err(e) = sequencer::open(epoch) {
        eprintln!("could not open epoch {epoch}: {e:?}");
        return false;
    }
    let missing: Vec<&str> =
        heard.iter().filter(|(_, h)| h.is_err()).map(|(url, _)| url.as_str()).collect();
    if forced && !missing.is_empty() {
        eprintln!(
            "{FORCE_RECOVERY}: took writes without hearing from {}; writes only they held will \
             be dropped from them when they return",
            missing.join(", ")
        );
    }
    println!("taking writes in epoch {epoch}: the log holds {} entries", log::len());
    true
}

/// Asks every secondary at once where its log stands, or why it did not say.
fn ask_everyone(
    settings: &MasterSettings,
    epoch: u64,
) -> Vec<(String, Result<ReplicaLog, String>)> {
    let probe =
        Append { epoch, prev: None, entries: Vec::new(), end: None, commit: None, begin: false };
    let body = serde_json::to_vec(&probe).expect("a probe always serializes");
    let exchanges: Vec<_> = settings
        .secondaries
        .iter()
        .map(|peer| {
            let started = peer_http::start(
                peer,
                Method::Post,
                "/replicate",
                Some(&body),
                settings.peer_timeout,
            );
            (peer, started)
        })
        .collect();
    exchanges
        .into_iter()
        .map(|(peer, started)| {
            let answer = started
                .and_then(|exchange| exchange.finish())
                .and_then(|(status, body)| recovery_answer::<Ack>(status, &body));
            let heard = answer.map(|ack| ReplicaLog {
                epoch: ack.epoch,
                last: ack.last,
                runs: ack.runs,
                committed: ack.committed,
            });
            (peer.url.clone(), heard)
        })
        .collect()
}

/// Fetches what `url` holds after `after` and appends it; returns how many entries came.
fn fetch(settings: &MasterSettings, url: &str, after: u64) -> Result<usize, String> {
    let peer = settings.peer(url).ok_or("not a configured secondary")?;
    let endpoint = format!("/replicate?from={}&limit={FETCH_LIMIT}", after + 1);
    let (status, body) =
        peer_http::request(peer, Method::Get, &endpoint, None, settings.peer_timeout)?;
    let entries: RecoveryBatch = recovery_answer(status, &body)?;
    let count = entries.entries.len();
    let (Some(first), Some(last)) = (entries.entries.first(), entries.entries.last()) else {
        return Ok(0);
    };
    let (first, last) = (first.seq, (last.seq, last.epoch));
    if let Some(begin) = entries.begin {
        println!(
            "{url} starts after seq {} (retention removed the rest), past this log's end at \
             {after}: this log begins there too",
            begin.seq
        );
    }
    let restored: Vec<log::Entry> = entries.entries.into_iter().map(Into::into).collect();
    let len = sequencer::restore(entries.begin, &restored).map_err(|e| format!("{e:?}"))?;
    println!(
        "recovered entries {first}..={} (to epoch {}) from {url}; the log holds {len}",
        last.0, last.1
    );
    Ok(count)
}
