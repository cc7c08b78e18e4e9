//! A client's write as `POST /messages` takes it: its message, its write concern and its
//! idempotency key, read from the body (whatever its Content-Type) and an `Idempotency-Key`
//! header. Pure, so that every refusal is tested on the native target; the errors are the
//! text of the `400`.

use serde_json::Value;

/// A client's write, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct NewMessage {
    /// The message, any text (an empty one too): the log stores what clients send.
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

/// How a JSON value of the wrong type is named in a refusal.
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

/// Takes the key of an `Idempotency-Key` header (`header`, if the request has one), which must
/// agree with an `"id"` in the body: a client may give its key either way, not two keys.
pub fn with_header_key(mut new: NewMessage, header: Option<String>) -> Result<NewMessage, String> {
    let Some(header) = header else { return Ok(new) };
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
    fn an_idempotency_key_may_come_in_a_header_that_agrees_with_the_body() {
        let keyed = |body: &str, header: Option<&str>| {
            with_header_key(parsed(body).unwrap(), header.map(str::to_owned)).map(|new| new.id)
        };
        assert_eq!(keyed(r#"{"msg": "m"}"#, None), Ok(None));
        assert_eq!(keyed(r#"{"msg": "m"}"#, Some("k1")), Ok(Some("k1".into())));
        assert_eq!(keyed(r#"{"msg": "m", "id": "k1"}"#, Some("k1")), Ok(Some("k1".into())));
        assert_eq!(keyed(r#"{"msg": "m", "id": "k1"}"#, None), Ok(Some("k1".into())));
        let two = keyed(r#"{"msg": "m", "id": "k1"}"#, Some("k2")).unwrap_err();
        assert!(two.contains("differ") && two.contains("give one key"), "{two}");
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        let refused = keyed(r#"{"msg": "m"}"#, Some(&long)).unwrap_err();
        assert!(refused.contains("Idempotency-Key header must be 1 to 128 bytes"), "{refused}");
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
