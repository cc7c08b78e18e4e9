//! `POST /replicate`: what the master sends, in any of its three forms.

use replog_guest::http::{BodyError, Request, Response};
use replog_guest::log::{self, Entry};
use replog_guest::wire::ReplicateAck;
use serde_json::Value;
use wasip2::clocks::monotonic_clock;

use crate::Settings;
use crate::bindings::replog::node::replica;
use crate::bindings::replog::node::types::LogError;

/// A `/replicate` body, validated.
#[derive(Debug)]
pub enum Replication {
    /// `{"entries": [{"seq": 7, "msg": "..."}, ...]}`
    Batch(Vec<Entry>),
    /// `{"msg": "...", "seq": 7}`
    Numbered(Entry),
    /// `{"msg": "..."}`, the original project's form: appended after what this node holds.
    Unnumbered(String),
}

pub fn parse(body: &[u8]) -> Result<Replication, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(r#"body is not JSON ({e}): expected {{"entries": [{{"seq": 1, "msg": "text"}}]}} or {{"msg": "text"}}"#)
    })?;
    let Value::Object(mut fields) = value else {
        return Err("expected a JSON object".into());
    };
    if let Some(entries) = fields.remove("entries") {
        let Value::Array(entries) = entries else {
            return Err(r#""entries" must be an array"#.into());
        };
        return entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| match entry {
                Value::Object(mut entry) => entry_from(entry.remove("seq"), entry.remove("msg"))
                    .map_err(|why| format!("entries[{i}]: {why}")),
                _ => Err(format!("entries[{i}] must be an object")),
            })
            .collect::<Result<_, _>>()
            .map(Replication::Batch);
    }
    match fields.remove("seq") {
        Some(seq) => entry_from(Some(seq), fields.remove("msg")).map(Replication::Numbered),
        None => match fields.remove("msg") {
            Some(Value::String(msg)) => Ok(Replication::Unnumbered(msg)),
            Some(_) => Err(r#""msg" must be a string"#.into()),
            None => Err(r#"expected "entries" or "msg""#.into()),
        },
    }
}

fn entry_from(seq: Option<Value>, msg: Option<Value>) -> Result<Entry, String> {
    let seq = match seq.as_ref().and_then(Value::as_u64) {
        Some(seq) if seq >= 1 => seq,
        _ => return Err(r#""seq" must be a whole number from 1"#.into()),
    };
    match msg {
        Some(Value::String(msg)) => Ok(Entry { seq, msg }),
        _ => Err(r#""msg" must be a string"#.into()),
    }
}

/// Waits `DELAY_MS` on the WASI monotonic clock, stores, and acknowledges with the length of
/// the gap-free prefix (the master counts the message as held once that reaches its `seq`).
/// With `FAULT_RATE`, that share of calls is answered `500` after storing, as a secondary
/// that crashes between writing and answering would, so tests can show retries are safe.
pub fn post(request: &Request, settings: &Settings) -> Response {
    let body = match request.read_body(settings.max_body_bytes) {
        Ok(body) => body,
        Err(BodyError::TooLarge(limit)) => {
            let why = format!("body is larger than {limit} bytes (the MAX_BODY_BYTES setting)");
            return Response::error(413, &why);
        }
        Err(BodyError::Io(e)) => {
            return Response::error(400, &format!("could not read the body: {e}"));
        }
    };
    let replication = match parse(&body) {
        Ok(replication) => replication,
        Err(why) => return Response::error(400, &why),
    };
    if settings.delay_ms > 0 {
        monotonic_clock::subscribe_duration(settings.delay_ms.saturating_mul(1_000_000)).block();
    }
    let stored = match replication {
        Replication::Batch(entries) => replica::store(&entries),
        Replication::Numbered(entry) => replica::store(std::slice::from_ref(&entry)),
        Replication::Unnumbered(msg) => replica::append(&msg).map(|_| replica::Stored {
            added: 1,
            duplicates: 0,
            len: log::host::len(),
        }),
    };
    match stored {
        Ok(_) if fails(settings.fault_rate) => Response::error(
            500,
            &format!(
                "injected fault (FAULT_RATE={}): the entries were stored all the same",
                settings.fault_rate
            ),
        ),
        Ok(stored) => Response::json(
            200,
            &ReplicateAck {
                status: "ok".into(),
                count: stored.len,
                added: stored.added,
                duplicates: stored.duplicates,
            },
        ),
        Err(LogError::OutOfWindow(max)) => Response::error(
            409,
            &format!("sequence number too far ahead: this node accepts up to {max} now"),
        ),
        Err(LogError::Conflict(seq)) => Response::error(
            409,
            &format!(
                "this node already holds a different message at seq {seq}: its log did not come from this master"
            ),
        ),
        Err(LogError::Storage(why)) => Response::error(503, &format!("could not store: {why}")),
    }
}

/// True with probability `rate`.
fn fails(rate: f64) -> bool {
    rate > 0.0
        && ((wasip2::random::random::get_random_u64() >> 11) as f64) < rate * (1u64 << 53) as f64
}
