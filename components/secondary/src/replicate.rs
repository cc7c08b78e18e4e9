//! `/replicate`: what only the master may ask of a secondary. The route is declared proven
//! (`replog_guest::auth::CLUSTER_ROUTES`), so the host has checked the master's proof before a
//! request reaches this; then `POST` stores (or probes), `GET` reads entries with their epochs.

use replog_guest::host::log;
use replog_guest::http::{Request, Response};
use replog_guest::log::{entries, within_bytes};
use replog_guest::wire::{
    self, Ack, AckStatus, Append, Fencing, RecoveryBatch, Replicate, WireEntry,
};
use wasip2::clocks::monotonic_clock;

use crate::bindings::replog::node::replica;
use crate::bindings::replog::node::types::LogError;
use crate::plan::{self, Decision, LocalLog, SingleDecision};
use crate::settings::{FAULT_RATE, SecondarySettings};

/// A change decided on a log that moved meanwhile (another request wrote first) is decided
/// again, this many times at most.
const ATTEMPTS: usize = 3;
/// A `GET /replicate` answer stops growing past about this many bytes of JSON, whatever
/// `limit` asks: a master recovering fetches a batch of this size per round.
const RECOVERY_BATCH_BYTES: usize = 1024 * 1024;
/// About what an entry's JSON adds to its message: its `seq`, `epoch` and field names.
const ENTRY_JSON_OVERHEAD: usize = 48;

/// `POST /replicate`.
pub fn post(request: &Request, settings: &SecondarySettings) -> Response {
    let body = match request.body() {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let response = match wire::parse(&body) {
        Err(why) => return Response::error(400, &why),
        Ok(Replicate::Probe { epoch }) => {
            let now = replica::state();
            // The master sees our epoch in the answer and fences itself; we stop serving it.
            serving(epoch, &now);
            return Response::json(200, &state(settings, AckStatus::Ok, &now));
        }
        // Heartbeats and repairs carry no entries: no delay, no injected fault.
        Ok(Replicate::Append(append)) if append.entries.is_empty() => {
            return apply(&append, settings);
        }
        Ok(Replicate::Append(append)) => {
            delay(settings);
            apply(&append, settings)
        }
        Ok(Replicate::Single { seq, epoch, msg }) => {
            delay(settings);
            single(seq, epoch, msg, settings)
        }
    };
    // The faults a crash between storing and answering would cause, for tests.
    if response.status == 200 && fails(settings.fault_rate) {
        return Response::error(
            500,
            &format!(
                "injected fault ({FAULT_RATE}={}): the request was applied all the same",
                settings.fault_rate
            ),
        );
    }
    response
}

/// `GET /replicate?from=SEQ&limit=N`: entries with their epochs, about a megabyte at most.
pub fn get(request: &Request) -> Response {
    let number = |name: &str, default: u64| match request.query_param(name) {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| {
            Response::error(400, &format!("\"{name}\" must be a whole number, got {v:?}"))
        }),
    };
    let (from, limit) = match (number("from", 1), number("limit", u64::MAX)) {
        (Ok(from), Ok(limit)) => (from, limit),
        (Err(bad), _) | (_, Err(bad)) => return bad,
    };
    // Below this log's start (retention removed it), the batch starts at the start and names
    // the entry before it, for the master to begin after it.
    let start = log::start();
    let begin = (from < start).then(|| wire::Position {
        seq: start - 1,
        epoch: log::epoch_at(start - 1).unwrap_or_default(),
    });
    let from = from.max(start);
    let held = entries(from, limit).map(WireEntry::from);
    let entries =
        within_bytes(held, RECOVERY_BATCH_BYTES, |entry| entry.msg.len() + ENTRY_JSON_OVERHEAD)
            .collect();
    let replica::Snapshot { epoch, last, .. } = replica::state();
    Response::json(200, &RecoveryBatch { entries, epoch, last, begin })
}

fn delay(settings: &SecondarySettings) {
    if settings.delay_ms > 0 {
        monotonic_clock::subscribe_duration(settings.delay_ms.saturating_mul(1_000_000)).block();
    }
}

/// Where this node's log stands (`state`), as an answer; callers add what their request did.
fn standing(settings: &SecondarySettings, status: AckStatus, state: &replica::Snapshot) -> Ack {
    let last = state.last;
    Ack {
        status,
        epoch: state.epoch,
        last,
        count: last.seq,
        matched: None,
        runs: Vec::new(),
        added: 0,
        duplicates: 0,
        truncated: 0,
        duplicate: None,
        delay_ms: settings.delay_ms,
        committed: log::committed(),
    }
}

/// The answer to a probe, and to an append that did not match: with the log's runs, so that
/// the master finds where the two logs agree.
fn state(settings: &SecondarySettings, status: AckStatus, state: &replica::Snapshot) -> Ack {
    Ack { runs: log::runs(), ..standing(settings, status, state) }
}

/// An append: decided by log matching on what this node holds where the request looks, then
/// written as one change.
fn apply(append: &Append, settings: &SecondarySettings) -> Response {
    for _ in 0..ATTEMPTS {
        let now = replica::state();
        let (held_from, held) = held(plan::needed(append, now.last), &now);
        let local = LocalLog { epoch: now.epoch, last: now.last, held_from, held: &held };
        let decision = plan::decide(append, &local);
        if decision != Decision::Fenced {
            serving(append.epoch, &now);
        }
        let attempt = match decision {
            Decision::Fenced => return fenced(append.epoch, &now),
            // Record a newer master's epoch all the same: older ones are refused from now on.
            Decision::Mismatch => {
                attempt(&change(&now, append.epoch, None, None, Vec::new()), |after| {
                    Response::json(200, &state(settings, AckStatus::Mismatch, &after))
                })
            }
            Decision::Apply(apply) => store(apply, append, &now, settings),
        };
        if let Attempt::Answered(response) = attempt {
            return response;
        }
    }
    busy()
}

/// Writes what log matching decided, says what a repair dropped, and takes the master's commit
/// point as far as this log now agrees with the master's.
fn store(
    apply: plan::Apply,
    append: &Append,
    now: &replica::Snapshot,
    settings: &SecondarySettings,
) -> Attempt {
    let epoch = append.epoch;
    let commit = append.commit.map(|commit| commit.min(apply.matched.seq));
    let dropped = apply.truncate_after.map(|after| (after, log::read(after + 1, 1, 0), now.last));
    let entries: Vec<log::Entry> = apply.entries.into_iter().map(Into::into).collect();
    let added = entries.len() as u32;
    attempt(&change(now, epoch, apply.truncate_after, apply.begin, entries), |after| {
        if let Some((after, first, last)) = dropped {
            report_repair(after, first.first(), last, epoch);
        }
        if let Some(begin) = apply.begin {
            eprintln!(
                "the master's log starts after seq {} (retention removed the rest), and this log \
                 (through seq {}) does not hold that entry: it dropped what it held and begins \
                 there too",
                begin.seq, now.last.seq
            );
        }
        if let Some(commit) = commit {
            replica::commit(commit);
        }
        let ack = Ack {
            matched: Some(apply.matched),
            added,
            duplicates: apply.duplicates,
            truncated: apply.truncated,
            ..standing(settings, AckStatus::Ok, &after)
        };
        Response::json(200, &ack)
    })
}

/// The original project's single entry: stored if it continues the log, a duplicate if held.
fn single(seq: u64, epoch: Option<u64>, msg: String, settings: &SecondarySettings) -> Response {
    for _ in 0..ATTEMPTS {
        let now = replica::state();
        let (held_from, held) = held(plan::single_needed(seq, now.last), &now);
        let local = LocalLog { epoch: now.epoch, last: now.last, held_from, held: &held };
        let attempt = match plan::decide_single(seq, epoch, &msg, &local) {
            SingleDecision::Fenced(theirs) => return fenced(theirs, &now),
            SingleDecision::Duplicate => return single_ack(settings, &now, false),
            SingleDecision::Conflict => {
                return Response::error(
                    409,
                    &format!("this node holds a different message at seq {seq}"),
                );
            }
            SingleDecision::Gap => {
                let last = now.last.seq;
                let why = format!(
                    "seq {seq} leaves a gap: this node holds up to {last}; send from there"
                );
                return Response::error(409, &why);
            }
            SingleDecision::Append { entry, epoch } => {
                attempt(&change(&now, epoch, None, None, vec![entry.into()]), |after| {
                    single_ack(settings, &after, true)
                })
            }
        };
        if let Attempt::Answered(response) = attempt {
            return response;
        }
    }
    busy()
}

/// The answer to a single entry: stored now (`added`), or held already.
fn single_ack(settings: &SecondarySettings, after: &replica::Snapshot, added: bool) -> Response {
    let ack = Ack {
        added: u32::from(added),
        duplicates: u32::from(!added),
        duplicate: Some(!added),
        ..standing(settings, AckStatus::Ok, after)
    };
    Response::json(200, &ack)
}

/// What this node holds of the range a decision looks at (`needed`), read from the host: where
/// it starts, and the entries.
fn held(needed: Option<(u64, u32)>, now: &replica::Snapshot) -> (u64, Vec<WireEntry>) {
    match needed {
        Some((start, count)) => (start, read_all(start, count)),
        None => (now.last.seq + 1, Vec::new()),
    }
}

/// A change to the log as it stands in `now`: record `epoch`, drop after `truncate_after` (or
/// everything, to begin after `begin`), append `entries`. It applies only while the log is
/// still at `now`'s version.
fn change(
    now: &replica::Snapshot,
    epoch: u64,
    truncate_after: Option<u64>,
    begin: Option<wire::Position>,
    entries: Vec<log::Entry>,
) -> replica::Change {
    replica::Change { version: now.version, epoch, truncate_after, begin, entries }
}

/// What one attempt at a change came to.
enum Attempt {
    /// The answer to send: the change was written, or refused.
    Answered(Response),
    /// The log moved since the decision (another request wrote first): decide again.
    Moved,
}

/// Writes `change`, answering with `answer(the log after it)`.
fn attempt(
    change: &replica::Change,
    answer: impl FnOnce(replica::Snapshot) -> Response,
) -> Attempt {
    match replica::write(change) {
        Ok(after) => Attempt::Answered(answer(after)),
        Err(LogError::Moved(_)) => Attempt::Moved,
        Err(e) => Attempt::Answered(refused(&e)),
    }
}

/// Records whether this node serves a master of epoch `theirs` while it follows `now.epoch`,
/// for `GET /ready`: a host call only when that changes.
fn serving(theirs: u64, now: &replica::Snapshot) {
    let refusal = plan::refusal(theirs, now.epoch);
    if refusal != now.refusal {
        match &refusal {
            Some(why) => eprintln!("not ready: {why}"),
            None => eprintln!("ready: serving a master of epoch {theirs}"),
        }
        replica::set_refusal(refusal.as_deref());
    }
}

fn fenced(theirs: u64, now: &replica::Snapshot) -> Response {
    serving(theirs, now);
    let ours = now.epoch;
    Response::json(
        409,
        &Fencing {
            error: format!(
                "fenced: this node follows a master of epoch {ours}; a master of epoch {theirs} \
                 has been replaced"
            ),
            fenced: true,
            epoch: ours,
        },
    )
}

fn refused(error: &LogError) -> Response {
    match error {
        LogError::Storage(why) => Response::error(503, &format!("could not store: {why}")),
        LogError::Moved(_) => busy(),
        LogError::Invalid(why) | LogError::Closed(why) => {
            Response::error(409, &format!("the log refused the change: {why}"))
        }
        // Only a master's appends carry keys to check.
        LogError::KeyReused(seq) => {
            Response::error(409, &format!("the log refused the change: a key reused at {seq}"))
        }
    }
}

fn busy() -> Response {
    Response::error(503, "the log kept changing under this request; send it again")
        .with_header("retry-after", "1")
}

/// Says in the node's log what a repair dropped: the entries a master did not have.
fn report_repair(after: u64, first: Option<&log::Entry>, last: wire::Position, epoch: u64) {
    let Some(first) = first else { return };
    eprintln!(
        "repaired the log on the word of the master of epoch {epoch}: dropped {} entries after \
         seq {after} that it does not have (seq {}..={}, epochs {}..={})",
        last.seq - after,
        first.seq,
        last.seq,
        first.epoch,
        last.epoch
    );
}

/// Every entry from `start`, `count` of them at most: the whole range, read a page at a time.
fn read_all(start: u64, count: u32) -> Vec<WireEntry> {
    entries(start, u64::from(count)).map(WireEntry::from).collect()
}

/// True with probability `rate`.
fn fails(rate: f64) -> bool {
    rate > 0.0
        && ((wasip2::random::random::get_random_u64() >> 11) as f64) < rate * (1u64 << 53) as f64
}
