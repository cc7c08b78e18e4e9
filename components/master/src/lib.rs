//! The replog master: numbers client writes, and replicates them to every secondary through
//! the host's replication streams (one per secondary, each calling `replicator.step`).
//!
//! The host keeps an instance for many calls (HTTP requests, replication steps, recovery
//! rounds), one after another; the component keeps no state of its own between them: the log
//! and what is known of each secondary live in the host (`replog:node/sequencer`, `log` and
//! `peers`). Only its settings are kept, read from the environment once per instance (an
//! instance's environment never changes).

#![warn(missing_docs)]

mod answers;
mod bindings;
mod commit;
mod concern;
mod messages;
mod new_message;
mod pace;
mod peer_http;
mod policy;
mod quorum;
mod recovery;
mod replicator;
mod settings;

use replog_guest::about;
use replog_guest::http::{Request, Response};
use serde::Serialize;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

use crate::bindings::exports::replog::node::replicator::Wake;
use crate::bindings::replog::node::peers;
use crate::bindings::replog::node::sequencer::{self, Mode};
use crate::settings::MasterSettings;

/// The master component: what its exports are implemented on. It holds nothing: see above.
struct Master;

impl bindings::exports::wasi::http::incoming_handler::Guest for Master {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let settings = match MasterSettings::current() {
            Ok(settings) => settings,
            Err(e) => return Response::error(500, &e.to_string()).send(out),
        };
        match (request.path.as_str(), &request.method) {
            ("/messages", Method::Post) => messages::post(&request, out, settings),
            ("/messages", Method::Get) => replog_guest::tail::get_messages(&request).send(out),
            ("/messages", _) => Response::method_not_allowed("/messages", "GET, POST").send(out),
            ("/health", Method::Get) => health(settings).send(out),
            ("/health", _) => Response::method_not_allowed("/health", "GET").send(out),
            ("/ready", Method::Get) => {
                about::ready("master", writes(settings).reason.map_or(Ok(()), Err)).send(out)
            }
            ("/ready", _) => Response::method_not_allowed("/ready", "GET").send(out),
            (path, _) => Response::not_found(path).send(out),
        }
    }
}

impl bindings::exports::replog::node::replicator::Guest for Master {
    fn step(peer: String) -> Wake {
        replicator::step(&peer)
    }

    fn recover() -> Option<u64> {
        recovery::recover()
    }
}

/// What the master's settings need of its host, once read and checked.
fn needs() -> Result<replog_guest::about::Needs, replog_guest::settings::BadSetting> {
    MasterSettings::from_env().map(|settings| {
        replog_guest::about::Needs::node(settings.longest_call(), settings.secondaries)
    })
}

replog_guest::export_about!(
    Master, "replog-master", settings::NAMES, needs, with_types_in bindings
);

bindings::export!(Master with_types_in bindings);

/// `GET /health`: liveness, the log's length and epoch, whether writes are taken (and if not,
/// why, as `GET /ready` says it), each secondary's state as the replicator judges it, and which
/// component version answers.
fn health(settings: &MasterSettings) -> Response {
    #[derive(Serialize)]
    struct MasterHealth {
        /// The epoch this master numbers in (the highest recorded while not open).
        epoch: u64,
        /// `open`, `recovering` or `fenced`.
        state: &'static str,
        writable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        secondaries: Vec<SecondaryStanding>,
    }
    let count = replog_guest::host::log::len();
    let Writes { state, epoch, reason } = writes(settings);
    let secondaries =
        peers::all().into_iter().map(|peer| standing(peer, count, settings)).collect();
    let writable = reason.is_none();
    about::health("master", &MasterHealth { epoch, state, writable, reason, secondaries })
}

/// A secondary on `GET /health`: the host's record of it, how far it lags a log of `count`
/// entries, and a warning when its delay cannot fit this master's `PEER_TIMEOUT_MS`.
#[derive(Serialize)]
struct SecondaryStanding {
    url: String,
    status: &'static str,
    acked: u64,
    lag: u64,
    failures: u32,
    last_contact_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// How `peer` stands, for `GET /health`, beside a log of `count` entries.
fn standing(peer: peers::Peer, count: u64, settings: &MasterSettings) -> SecondaryStanding {
    let warning = peer.delay_ms.and_then(|delay| {
        settings::delay_warning(std::time::Duration::from_millis(delay), settings.peer_timeout)
    });
    SecondaryStanding {
        status: peer.status.as_str(),
        lag: count.saturating_sub(peer.acked),
        warning,
        url: peer.url,
        acked: peer.acked,
        failures: peer.failures,
        last_contact_ms: peer.last_contact_ms,
        last_error: peer.last_error,
        delay_ms: peer.delay_ms,
    }
}

/// Whether this master takes writes now, and if not, why.
struct Writes {
    /// `open`, `recovering` or `fenced`.
    state: &'static str,
    /// The epoch it numbers in (the highest recorded while not open).
    epoch: u64,
    /// Why it takes no writes (none: it takes them): recovering, fenced, or too few
    /// secondaries for any write to be acknowledged.
    reason: Option<String>,
}

fn writes(settings: &MasterSettings) -> Writes {
    let standing = sequencer::status();
    let (state, epoch, reason) = match standing.mode {
        Mode::Open(epoch) => ("open", epoch, None),
        Mode::Recovering(why) => ("recovering", standing.epoch, Some(why)),
        Mode::Fenced(by) => (
            "fenced",
            standing.epoch,
            Some(format!(
                "a master of epoch {by} has taken over; restart this one to take over again"
            )),
        ),
    };
    let reason =
        reason.or_else(|| quorum::check(settings.nodes(), &peers::all()).err().map(|r| r.error));
    Writes { state, epoch, reason }
}
