//! `POST /messages`, the shell around a client's write: read it, check the master takes
//! writes, append it, wait on the host for its concern, and send the answer. What a write is
//! (`new_message`), whether writes are taken (`quorum`) and what the wait came to (`concern`)
//! are decided in pure modules; this only talks to the host.

use replog_guest::http::{Request, Response};
use replog_guest::log;
use serde::Serialize;
use wasip2::clocks::monotonic_clock;
use wasip2::http::types::ResponseOutparam;
use wasip2::io::poll;

use crate::bindings::replog::node::peers::{self, Peer};
use crate::bindings::replog::node::sequencer::{self, Mode};
use crate::bindings::replog::node::types::LogError;
use crate::concern::{self, Judgement, SecondaryView, Wait, Write};
use crate::new_message::{self, NewMessage};
use crate::quorum;
use crate::settings::MasterSettings;

/// `POST /messages[?log=false]`: answers `201` once `w` nodes hold the message (with the whole
/// log, unless `log=false`), `502` when they do not within the replication timeout, and `503`
/// without appending anything when the master does not take writes: while it recovers its log,
/// once a newer master has fenced it, or when too few nodes are healthy. A write whose
/// idempotency key (`"id"`, or the `Idempotency-Key` header) was written already is answered
/// for the original (`200`, `"duplicate": true`, once `w` nodes hold it), or `409` when the
/// key came with another message; nothing is appended.
pub fn post(request: &Request, out: ResponseOutparam, settings: &MasterSettings) {
    let started = monotonic_clock::now();
    let nodes = settings.nodes();
    let new = match read(request, nodes) {
        Ok(new) => new,
        Err(refused) => return refused.send(out),
    };
    // Whether the master is open at all is the host's to enforce on `append`; asking first
    // would cost every write a call, so the mode is looked at only when a write is refused.
    let secondaries = peers::all();
    if let Err(no_majority) = quorum::check(nodes, &secondaries) {
        return not_open().unwrap_or_else(|| Response::json(503, &no_majority)).send(out);
    }
    let write = match append(&new, nodes) {
        Ok(write) => write,
        Err(refused) => return refused.send(out),
    };
    if secondaries.is_empty() {
        // A master alone is the whole cluster: what it holds is held by a majority.
        sequencer::commit(write.seq);
    }
    let wait = wait_for(&write, settings);
    let secondaries =
        if write.reread(wait, secondaries.len()) { peers::all() } else { secondaries };
    let duration_ms = monotonic_clock::now().saturating_sub(started) / 1_000_000;
    let judged = concern::judge(
        &write,
        wait,
        &replicas(&secondaries),
        duration_ms,
        settings.replication_timeout,
    );
    answer(judged, request).send(out);
}

/// The client's write, from its body and headers, or the `400` that refuses it.
fn read(request: &Request, nodes: u64) -> Result<NewMessage, Response> {
    let body = request.body()?;
    new_message::parse(&body, nodes)
        .and_then(|new| new_message::with_header_key(new, request.header("idempotency-key")))
        .map_err(|why| Response::error(400, &why))
}

/// Appends `new` (or finds the entry its key was written at), or the answer that refuses it.
fn append(new: &NewMessage, nodes: u64) -> Result<Write, Response> {
    let w = new.w.unwrap_or(nodes);
    match sequencer::append(&new.msg, new.id.as_deref()) {
        Ok(sequencer::Appended { seq, duplicate }) => Ok(Write { seq, w, nodes, duplicate }),
        Err(LogError::KeyReused(seq)) => Err(key_conflict(seq)),
        Err(LogError::Closed(why)) => Err(not_open().unwrap_or_else(|| not_taken(&why))),
        Err(error) => Err(not_taken(&describe(&error))),
    }
}

/// Waits until the host says enough secondaries hold `write`, or the replication timeout,
/// whichever comes first. The replication streams deliver the write; this only waits.
fn wait_for(write: &Write, settings: &MasterSettings) -> Wait {
    let awaited = write.awaited();
    if awaited == 0 {
        return Wait::Skipped;
    }
    let acked = peers::wait_acked(write.seq, awaited);
    let timeout = monotonic_clock::subscribe_duration(nanos(settings.replication_timeout));
    match poll::poll(&[&acked, &timeout]).contains(&0) {
        true => Wait::Met,
        false => Wait::TimedOut,
    }
}

/// The secondaries as a write's answer names them.
fn replicas(secondaries: &[Peer]) -> Vec<SecondaryView<'_>> {
    secondaries
        .iter()
        .map(|peer| SecondaryView {
            url: &peer.url,
            acked: peer.acked,
            status: peer.status.as_str(),
            last_error: peer.last_error.as_deref(),
        })
        .collect()
}

/// Sends what `concern` judged: a met concern with the whole log unless the client asked for
/// none (`?log=false`), a shortfall logged as well.
fn answer(judged: Judgement, request: &Request) -> Response {
    let status = judged.status();
    match judged {
        Judgement::Met(receipt) => {
            let with_log =
                !matches!(request.query_param("log").as_deref(), Some("false" | "0" | "no"));
            match with_log {
                // The whole log goes out page by page, however long it is.
                true => log::respond_with_log(status, 1, u64::MAX, Some(&receipt)),
                false => Response::json(status, &receipt),
            }
        }
        Judgement::Unmet(shortfall) => {
            eprintln!("{}", shortfall.error);
            Response::json(status, &shortfall)
        }
    }
}

/// The `409` for a key that came before with another message.
fn key_conflict(seq: u64) -> Response {
    #[derive(Serialize)]
    struct KeyConflict {
        error: String,
        seq: u64,
    }
    let error = format!(
        "the idempotency key was used already, for another message, at seq {seq}; nothing was \
         appended"
    );
    Response::json(409, &KeyConflict { error, seq })
}

/// The `503` for a write the log did not take, for `why`.
fn not_taken(why: &str) -> Response {
    Response::error(503, &format!("the log did not take the message: {why}"))
}

/// The `503` for a master that takes no writes now, if it does not.
fn not_open() -> Option<Response> {
    #[derive(Serialize)]
    struct NotOpen {
        error: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        recovering: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        fenced: bool,
    }
    let (error, recovering, fenced) = match sequencer::status().mode {
        Mode::Open(_) => return None,
        Mode::Recovering(why) => (
            format!("recovering: {why}. Nothing was appended; reads are served meanwhile"),
            true,
            false,
        ),
        Mode::Fenced(epoch) => (
            format!(
                "fenced: a master of epoch {epoch} has taken over, and this one takes no more \
                 writes; nothing was appended"
            ),
            false,
            true,
        ),
    };
    Some(
        Response::json(503, &NotOpen { error, recovering, fenced }).with_header("retry-after", "1"),
    )
}

/// Words for a log error, for the `503`.
fn describe(error: &LogError) -> String {
    match error {
        LogError::Moved(_) => "the log changed meanwhile".to_owned(),
        LogError::KeyReused(seq) => format!("its key was used at seq {seq}"),
        LogError::Invalid(why) | LogError::Closed(why) | LogError::Storage(why) => why.clone(),
    }
}

/// `d` in nanoseconds, as WASI clocks take it.
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
