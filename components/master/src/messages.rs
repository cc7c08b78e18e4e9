//! `POST /messages`: validate, check the majority, append, wait for the write concern, answer.

use replog_guest::http::{Request, Response};
use replog_guest::log;
use serde::Serialize;
use serde_json::Value;
use wasip2::clocks::monotonic_clock;
use wasip2::http::types::ResponseOutparam;
use wasip2::io::poll;

use crate::bindings::replog::node::peers;
use crate::bindings::replog::node::sequencer::{self, Mode};
use crate::bindings::replog::node::types::LogError;
use crate::policy::status_name;
use crate::quorum;
use crate::settings::Settings;

/// A client's write, validated.
#[derive(Debug)]
pub struct NewMessage {
    pub msg: String,
    /// Write concern: how many nodes, the master included, must hold the message before the
    /// client is answered. `None` means all of them.
    pub w: Option<u64>,
}

const EXPECTED: &str = r#"expected a JSON object like {"msg": "text"}"#;

/// Parses a `POST /messages` body, whatever its Content-Type. Errors are the text of the `400`.
pub fn parse(body: &[u8], nodes: u64) -> Result<NewMessage, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("empty body: {EXPECTED}"));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| format!("body is not valid UTF-8 ({e}): {EXPECTED}"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("body is not valid JSON ({e}): {EXPECTED}"))?;
    let Value::Object(mut fields) = value else {
        return Err(format!("{EXPECTED}, got {}", kind(&value)));
    };
    let msg = match fields.remove("msg") {
        Some(Value::String(msg)) => msg,
        Some(other) => return Err(format!(r#""msg" must be a string, got {}"#, kind(&other))),
        None => return Err(format!(r#"missing field "msg": {EXPECTED}"#)),
    };
    let w = match fields.remove("w") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|w| (1..=nodes).contains(&w)) => {
            n.as_u64()
        }
        Some(other) => {
            return Err(format!(
                r#""w" (the write concern: how many nodes must hold the message) must be a whole number from 1 to {nodes} (the master and {} secondaries), got {other}"#,
                nodes - 1
            ));
        }
    };
    Ok(NewMessage { msg, w })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `POST /messages[?log=false]`: answers `201` once `w` nodes hold the message (with the whole
/// log, unless `log=false`), `502` when they do not within the replication timeout, and `503`
/// without appending anything when the master does not take writes: while it recovers its log,
/// once a newer master has fenced it, or when too few nodes are healthy.
pub fn post(request: &Request, out: ResponseOutparam, settings: &Settings) {
    let started = monotonic_clock::now();
    let body = match request.read_body(settings.max_body_bytes) {
        Ok(body) => body,
        Err(e) => return Response::body_error(e).send(out),
    };
    let nodes = settings.nodes();
    let new = match parse(&body, nodes) {
        Ok(new) => new,
        Err(why) => return Response::error(400, &why).send(out),
    };
    // Whether the master is open at all is the host's to enforce on `append`; asking first
    // would cost every write a call, so the mode is looked at only when a write is refused.
    if let Err(refusal) = quorum::check(nodes) {
        return closed().unwrap_or_else(|| Response::json(503, &refusal)).send(out);
    }
    let w = new.w.unwrap_or(nodes);
    let seq = match sequencer::append(&new.msg) {
        Ok(seq) => seq,
        Err(e) => {
            if let (LogError::Closed(_), Some(closed)) = (&e, closed()) {
                return closed.send(out);
            }
            let why = format!("the log did not take the message: {}", describe(&e));
            return Response::error(503, &why).send(out);
        }
    };
    if w > 1 {
        // The replication streams deliver the message; this request only waits for enough
        // of them, or for the timeout.
        let acked = peers::wait_acked(seq, u32::try_from(w - 1).unwrap_or(u32::MAX));
        let timeout = monotonic_clock::subscribe_duration(nanos(settings.replication_timeout));
        poll::poll(&[&acked, &timeout]);
    }
    let all = peers::all();
    let acks: Vec<Ack> =
        all.iter().filter(|p| p.acked >= seq).map(|p| Ack { secondary: p.url.clone() }).collect();
    let held = 1 + acks.len() as u64;
    let duration_ms = monotonic_clock::now().saturating_sub(started) / 1_000_000;
    if held >= w {
        let with_log = !matches!(request.query_param("log"), Some("false" | "0" | "no"));
        let answer =
            Written { messages: with_log.then(log::all_messages), seq, w, acks, duration_ms };
        return Response::json(201, &answer).send(out);
    }
    let missing: Vec<Missing> = all
        .iter()
        .filter(|p| p.acked < seq)
        .map(|p| Missing {
            secondary: p.url.clone(),
            status: status_name(p.status),
            error: p.last_error.clone(),
        })
        .collect();
    let names: Vec<&str> = missing.iter().map(|m| m.secondary.as_str()).collect();
    let answer = NotReplicated {
        error: format!(
            "message {seq} is held by {held} of {nodes} nodes after {} ms, fewer than w={w}: no acknowledgement from {}",
            settings.replication_timeout.as_millis(),
            names.join(", ")
        ),
        seq,
        w,
        acks,
        missing,
        duration_ms,
        kept: KEPT,
    };
    eprintln!("{}", answer.error);
    Response::json(502, &answer).send(out);
}

const KEPT: &str = "the message stays in the master's log and will still be delivered: the master keeps sending it to every secondary that lacks it until it holds it";

/// The `503` for a master that takes no writes now, if it does not.
fn closed() -> Option<Response> {
    #[derive(Serialize)]
    struct Closed {
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
    Some(Response::json(503, &Closed { error, recovering, fenced }).with_header("retry-after", "1"))
}

fn describe(error: &LogError) -> String {
    match error {
        LogError::Moved(_) => "the log changed meanwhile".to_owned(),
        LogError::Invalid(why) | LogError::Closed(why) | LogError::Storage(why) => why.clone(),
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Serialize)]
struct Ack {
    secondary: String,
}

#[derive(Serialize)]
struct Missing {
    secondary: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The `201` answer.
#[derive(Serialize)]
struct Written {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<String>>,
    seq: u64,
    w: u64,
    acks: Vec<Ack>,
    duration_ms: u64,
}

/// The `502` answer.
#[derive(Serialize)]
struct NotReplicated {
    error: String,
    seq: u64,
    w: u64,
    acks: Vec<Ack>,
    missing: Vec<Missing>,
    duration_ms: u64,
    kept: &'static str,
}
