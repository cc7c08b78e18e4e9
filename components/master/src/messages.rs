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
use crate::pace::status_name;
use crate::quorum;
use crate::settings::MasterSettings;

/// A client's write, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub msg: String,
    /// Write concern: how many nodes, the master included, must hold the message before the
    /// client is answered. `None` means all of them.
    pub w: Option<u64>,
    /// The client's idempotency key (`"id"`), which makes a retry answer the original.
    pub id: Option<String>,
}

/// The longest idempotency key taken, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// Checks an idempotency key given as `what`; the error is the text of the `400`.
fn key(key: String, what: &str) -> Result<String, String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("{what} must be 1 to {MAX_KEY_BYTES} bytes, got {} bytes", key.len()));
    }
    Ok(key)
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
    let id = match fields.remove("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(key(id, r#""id" (the idempotency key)"#)?),
        Some(other) => return Err(format!(r#""id" must be a string, got {}"#, kind(&other))),
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
    Ok(NewMessage { msg, w, id })
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
/// once a newer master has fenced it, or when too few nodes are healthy. A write whose
/// idempotency key (`"id"`, or the `Idempotency-Key` header) was written already is answered
/// for the original (`200`, `"duplicate": true`, once `w` nodes hold it), or `409` when the
/// key came with another message; nothing is appended.
pub fn post(request: &Request, out: ResponseOutparam, settings: &MasterSettings) {
    let started = monotonic_clock::now();
    let body = match request.body() {
        Ok(body) => body,
        Err(refused) => return refused.send(out),
    };
    let nodes = settings.nodes();
    let new = match parse(&body, nodes).and_then(|new| with_header_key(new, request)) {
        Ok(new) => new,
        Err(why) => return Response::error(400, &why).send(out),
    };
    // Whether the master is open at all is the host's to enforce on `append`; asking first
    // would cost every write a call, so the mode is looked at only when a write is refused.
    let mut secondaries = peers::all();
    if let Err(refusal) = quorum::check(nodes, &secondaries) {
        return closed().unwrap_or_else(|| Response::json(503, &refusal)).send(out);
    }
    let w = new.w.unwrap_or(nodes);
    let (seq, duplicate) = match sequencer::append(&new.msg, new.id.as_deref()) {
        Ok(sequencer::Appended { seq, duplicate }) => (seq, duplicate),
        Err(LogError::KeyReused(seq)) => {
            #[derive(Serialize)]
            struct KeyConflict {
                error: String,
                seq: u64,
            }
            let error = format!(
                "the idempotency key was used already, for another message, at seq {seq}; \
                 nothing was appended"
            );
            return Response::json(409, &KeyConflict { error, seq }).send(out);
        }
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
        let wanted = u32::try_from(w - 1).unwrap_or(u32::MAX);
        let acked = peers::wait_acked(seq, wanted);
        let timeout = monotonic_clock::subscribe_duration(nanos(settings.replication_timeout));
        let ready = poll::poll(&[&acked, &timeout]);
        if ready.contains(&0) && wanted as usize == secondaries.len() {
            // Every secondary holds it: there is nothing more to ask the host.
            secondaries.iter_mut().for_each(|p| p.acked = p.acked.max(seq));
        } else {
            secondaries = peers::all();
        }
    }
    // Without a wait (`w` = 1) the answer names those that held it already (a retry's).
    let acks: Vec<AckFrom> = secondaries
        .iter()
        .filter(|p| p.acked >= seq)
        .map(|p| AckFrom { secondary: p.url.clone() })
        .collect();
    let held = 1 + acks.len() as u64;
    let duration_ms = monotonic_clock::now().saturating_sub(started) / 1_000_000;
    if held >= w {
        let with_log = !matches!(request.query_param("log").as_deref(), Some("false" | "0" | "no"));
        let answer = WriteReceipt { seq, w, acks, duration_ms, duplicate };
        let status = if duplicate { 200 } else { 201 };
        return match with_log {
            // The whole log goes out page by page, however long it is.
            true => log::respond_with_log(status, 1, u64::MAX, Some(&answer)),
            false => Response::json(status, &answer),
        }
        .send(out);
    }
    let missing: Vec<MissingAck> = secondaries
        .iter()
        .filter(|p| p.acked < seq)
        .map(|p| MissingAck {
            secondary: p.url.clone(),
            status: status_name(p.status),
            error: p.last_error.clone(),
        })
        .collect();
    let names: Vec<&str> = missing.iter().map(|m| m.secondary.as_str()).collect();
    let answer = ReplicationShortfall {
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
        duplicate,
    };
    eprintln!("{}", answer.error);
    Response::json(502, &answer).send(out);
}

const KEPT: &str = "the message stays in the master's log and will still be delivered: the master keeps sending it to every secondary that lacks it until it holds it";

/// The `503` for a master that takes no writes now, if it does not.
fn closed() -> Option<Response> {
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

fn describe(error: &LogError) -> String {
    match error {
        LogError::Moved(_) => "the log changed meanwhile".to_owned(),
        LogError::KeyReused(seq) => format!("its key was used at seq {seq}"),
        LogError::Invalid(why) | LogError::Closed(why) | LogError::Storage(why) => why.clone(),
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Serialize)]
struct AckFrom {
    secondary: String,
}

#[derive(Serialize)]
struct MissingAck {
    secondary: String,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The `201` answer (`200` for a retry), after the log when it is given.
#[derive(Serialize)]
struct WriteReceipt {
    seq: u64,
    w: u64,
    acks: Vec<AckFrom>,
    duration_ms: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// The `502` answer.
#[derive(Serialize)]
struct ReplicationShortfall {
    error: String,
    seq: u64,
    w: u64,
    acks: Vec<AckFrom>,
    missing: Vec<MissingAck>,
    duration_ms: u64,
    kept: &'static str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// Takes the key of an `Idempotency-Key` header, which must agree with an `"id"` in the body.
fn with_header_key(mut new: NewMessage, request: &Request) -> Result<NewMessage, String> {
    let Some(header) = request.header("idempotency-key") else { return Ok(new) };
    let header = key(header, "the Idempotency-Key header")?;
    match &new.id {
        Some(id) if *id != header => Err(format!(
            "the Idempotency-Key header and \"id\" differ ({header:?}, {id:?}): give one key"
        )),
        _ => {
            new.id = Some(header);
            Ok(new)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<NewMessage, String> {
        parse(body.as_bytes(), 3)
    }

    #[test]
    fn a_write_may_carry_an_idempotency_key_of_up_to_128_bytes() {
        assert_eq!(
            parsed(r#"{"msg": "m", "w": 2, "id": "order-17"}"#),
            Ok(NewMessage { msg: "m".into(), w: Some(2), id: Some("order-17".into()) })
        );
        assert_eq!(parsed(r#"{"msg": "m"}"#).unwrap().id, None);
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert!(parsed(&format!(r#"{{"msg": "m", "id": "{longest}"}}"#)).is_ok());
        for (body, says) in [
            (format!(r#"{{"msg": "m", "id": "{longest}k"}}"#), "1 to 128 bytes"),
            (r#"{"msg": "m", "id": ""}"#.to_owned(), "1 to 128 bytes"),
            (r#"{"msg": "m", "id": 7}"#.to_owned(), r#""id" must be a string"#),
        ] {
            let error = parsed(&body).unwrap_err();
            assert!(error.contains(says), "{error:?} should say {says:?}");
        }
    }

    #[test]
    fn a_bad_write_concern_is_named_as_such() {
        for body in
            [r#"{"msg": "m", "w": 0}"#, r#"{"msg": "m", "w": 4}"#, r#"{"msg": "m", "w": "2"}"#]
        {
            let error = parsed(body).unwrap_err();
            assert!(error.contains("write concern") && error.contains("from 1 to 3"), "{error}");
        }
        assert!(parsed(r#"{"nope": 1}"#).unwrap_err().contains(r#"missing field "msg""#));
    }
}
