//! Replication, one step at a time: the `replicator` export.
//!
//! The host runs one stream per secondary and calls `step` over and over. A step looks at
//! what the host knows of the secondary: if it lacks messages, it sends them (every message
//! from just past what the secondary acknowledged, as many as fit in one batch); if not, and
//! it has not been heard from for a heartbeat, it checks on it. It records what happened and
//! says when the next step should run: at once while there is more to send, on the next
//! append when all is sent, later (with jitter) after a failure. Nothing is ever given up:
//! a failing secondary is retried until it takes everything.

use std::time::Duration;

use replog_guest::log;
use replog_guest::wire::ReplicateAck;
use wasip2::clocks::wall_clock;
use wasip2::http::types::Method;

use crate::bindings::exports::replog::node::replicator::Wake;
use crate::bindings::replog::node::peers::{self, Peer as Known, Status};
use crate::peer_http;
use crate::settings::{Peer, Settings};

/// A batch stops growing past this many bytes of JSON (it always holds at least one entry).
const BATCH_BYTES: usize = 1024 * 1024;
/// Entries read from the host at a time while building a batch.
const READ_CHUNK: u32 = 1024;
/// The first retry after a failure waits about this long; each further failure doubles it,
/// up to the heartbeat interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

pub fn step(url: &str) -> Wake {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("cannot replicate to {url}: {e}");
            return later(Duration::from_secs(5));
        }
    };
    let (Some(peer), Some(known)) = (settings.peer(url), peers::get(url)) else {
        eprintln!("{url} is not one of this master's secondaries");
        return later(Duration::from_secs(60));
    };
    let len = log::host::len();
    // Until a secondary has answered this master, what is recorded of it may be stale (the
    // master restarted): ask it what it holds before sending anything.
    if known.acked < len && known.last_contact_ms.is_some() {
        return send(&settings, peer, &known, len);
    }
    let since = known.last_contact_ms.map(|at| now_ms().saturating_sub(at));
    match since {
        Some(since) if since < millis(settings.heartbeat) => {
            Wake { after_ms: Some(millis(settings.heartbeat) - since), on_append: true }
        }
        _ => check(&settings, peer, &known, len),
    }
}

/// Sends the secondary every message it lacks that fits in one batch.
fn send(settings: &Settings, peer: &Peer, known: &Known, len: u64) -> Wake {
    let body = batch(known.acked + 1, len);
    let answer =
        peer_http::request(peer, Method::Post, "/replicate", Some(&body), settings.peer_timeout);
    match answer {
        Ok((200, body)) => match serde_json::from_slice::<ReplicateAck>(&body) {
            Ok(ack) => {
                peers::record_ack(&peer.url, ack.count);
                answered(settings, peer, known, ack.count, len)
            }
            Err(e) => {
                failed(settings, peer, known, format!("answered 200 with an unreadable body ({e})"))
            }
        },
        Ok((status, body)) => {
            let text = String::from_utf8_lossy(&body);
            failed(settings, peer, known, format!("answered {status}: {}", text.trim()))
        }
        Err(e) => failed(settings, peer, known, e),
    }
}

/// Checks on an idle secondary: is it there, and does it still hold what it acknowledged?
fn check(settings: &Settings, peer: &Peer, known: &Known, len: u64) -> Wake {
    #[derive(serde::Deserialize)]
    struct Health {
        count: u64,
    }
    match peer_http::request(peer, Method::Get, "/health", None, settings.peer_timeout) {
        Ok((200, body)) => match serde_json::from_slice::<Health>(&body) {
            Ok(health) => {
                if health.count < known.acked {
                    eprintln!(
                        "{} holds {} messages but had acknowledged {}: it lost its log, sending it again",
                        peer.url, health.count, known.acked
                    );
                } else if health.count > len {
                    eprintln!(
                        "{} holds {} messages, more than this master's {len}: its log did not come from this master",
                        peer.url, health.count
                    );
                }
                let holds = health.count.min(len);
                if holds != known.acked {
                    peers::record_ack(&peer.url, holds);
                }
                answered(settings, peer, known, holds, len)
            }
            Err(e) => failed(settings, peer, known, format!("unreadable /health ({e})")),
        },
        Ok((status, _)) => failed(settings, peer, known, format!("/health answered {status}")),
        Err(e) => failed(settings, peer, known, e),
    }
}

/// After a successful contact: healthy, and at once again if it still lacks messages.
fn answered(settings: &Settings, peer: &Peer, known: &Known, holds: u64, len: u64) -> Wake {
    if known.failures > 0 {
        eprintln!(
            "{} answers again after {} failed contacts; {} messages to send",
            peer.url,
            known.failures,
            len.saturating_sub(holds)
        );
    }
    peers::record_contact(&peer.url, true, Status::Healthy, None);
    if holds < len {
        later(Duration::ZERO)
    } else {
        Wake { after_ms: Some(millis(settings.heartbeat)), on_append: true }
    }
}

/// After a failed contact: counts it, judges the secondary's status, and backs off.
fn failed(settings: &Settings, peer: &Peer, known: &Known, error: String) -> Wake {
    let failures = known.failures.saturating_add(1);
    let status = status_after(failures, settings.suspect_after, settings.unhealthy_after);
    if status != known.status {
        let status = crate::quorum::status_name(status);
        eprintln!("{} is now {status} after {failures} failed contacts: {error}", peer.url);
    }
    peers::record_contact(&peer.url, false, status, Some(error.as_str()));
    later(backoff(failures, status, settings.heartbeat, random_unit()))
}

/// The status of a secondary whose last `failures` contacts failed.
pub fn status_after(failures: u32, suspect_after: u32, unhealthy_after: u32) -> Status {
    if failures >= unhealthy_after {
        Status::Unhealthy
    } else if failures >= suspect_after {
        Status::Suspected
    } else {
        Status::Healthy
    }
}

/// How long to wait after the `failures`-th failure in a row: doubling from `FIRST_BACKOFF`
/// up to the heartbeat interval, which is also the pace for an unhealthy secondary; `jitter`
/// (0 to 1) spreads retries over the upper half of that so that they do not fall in step.
pub fn backoff(failures: u32, status: Status, heartbeat: Duration, jitter: f64) -> Duration {
    let ceiling = match status {
        Status::Unhealthy => heartbeat,
        _ => FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(heartbeat),
    };
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// `{"entries": [...]}` holding `from..=to`, cut short past `BATCH_BYTES`.
fn batch(from: u64, to: u64) -> Vec<u8> {
    let mut body = br#"{"entries":["#.to_vec();
    let mut next = from;
    'fill: while next <= to {
        let want = u32::try_from(to - next + 1).unwrap_or(u32::MAX).min(READ_CHUNK);
        let entries = log::host::read(next, want);
        if entries.is_empty() {
            break;
        }
        for entry in &entries {
            if next > from {
                if body.len() >= BATCH_BYTES {
                    break 'fill;
                }
                body.push(b',');
            }
            serde_json::to_writer(&mut body, entry).expect("an entry always serializes");
            next = entry.seq + 1;
        }
    }
    body.extend_from_slice(b"]}");
    body
}

fn later(after: Duration) -> Wake {
    Wake { after_ms: Some(millis(after)), on_append: false }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    let now = wall_clock::now();
    now.seconds.saturating_mul(1000) + u64::from(now.nanoseconds / 1_000_000)
}

fn random_unit() -> f64 {
    (wasip2::random::random::get_random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
