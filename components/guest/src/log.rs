//! The host-held log as both roles answer with it: `GET /messages`, and any answer that carries
//! the log. However long the log, it goes out page by page: the component holds one page at a
//! time, and the host one buffer of the stream.

use std::io::Write;

use serde::Serialize;

pub use crate::host::log::{self as host, Entry, Position, Run, TextPage};
use crate::http::{Request, Response};

/// Entries read from the host at a time while writing the log out...
const PAGE_ENTRIES: u32 = 4096;
/// ... and at most about this many bytes of messages (a message may be up to a megabyte).
const PAGE_BYTES: u32 = 256 * 1024;

/// Writes `[...]`: the messages of the log from `seq` = `from`, at most `limit` of them, as a
/// JSON array.
pub fn write_messages(out: &mut dyn Write, from: u64, limit: u64) -> std::io::Result<()> {
    out.write_all(b"[")?;
    let mut next = from.max(1);
    let mut left = limit;
    let mut json = Vec::new();
    while left > 0 {
        let want = u32::try_from(left).unwrap_or(u32::MAX).min(PAGE_ENTRIES);
        let TextPage { text, ends } = host::read_text(next, want, PAGE_BYTES);
        if ends.is_empty() {
            break;
        }
        json.clear();
        page_json(&mut json, &text, &ends, next > from.max(1))?;
        out.write_all(&json)?;
        next += ends.len() as u64;
        left -= ends.len() as u64;
    }
    out.write_all(b"]")
}

/// Appends the messages of a page (`text` cut at `ends`) as JSON strings separated by commas,
/// with a comma first unless it is the first page.
fn page_json(json: &mut Vec<u8>, text: &str, ends: &[u32], after: bool) -> std::io::Result<()> {
    json.reserve(text.len() + 3 * ends.len());
    let mut start = 0;
    for (i, end) in ends.iter().enumerate() {
        if after || i > 0 {
            json.push(b',');
        }
        let end = *end as usize;
        let msg = text.get(start..end).ok_or_else(|| bad_page(start, end))?;
        crate::json::push_string(json, msg);
        start = end;
    }
    Ok(())
}

/// A host whose page does not cut its text where it says: better an error than a wrong log.
fn bad_page(start: usize, end: usize) -> std::io::Error {
    std::io::Error::other(format!("the host's page of messages is not cut at {start}..{end}"))
}

/// `status` with `{"messages": [the log from `from`, at most `limit`], ...rest}`, where `rest`
/// is an object whose fields follow the messages. Written page by page.
pub fn respond_with_log(
    status: u16,
    from: u64,
    limit: u64,
    rest: Option<&impl Serialize>,
) -> Response {
    let rest = match rest.map(serde_json::to_vec).transpose() {
        Ok(rest) => rest,
        Err(e) => return Response::error(500, &format!("could not encode the response: {e}")),
    };
    Response::streamed(
        status,
        Box::new(move |out| {
            out.write_all(br#"{"messages":"#)?;
            write_messages(out, from, limit)?;
            match rest.as_deref() {
                // `{"a":1}` joins as `,"a":1}`; an empty object adds nothing.
                Some([b'{', fields @ .., b'}']) if !fields.is_empty() => {
                    out.write_all(b",")?;
                    out.write_all(fields)?;
                    out.write_all(b"}")
                }
                _ => out.write_all(b"}"),
            }
        }),
    )
}

/// `GET /messages[?from=SEQ][&limit=N]`: the whole log, or the page that starts at `seq` =
/// `from` and holds at most `limit` messages.
pub fn get_messages(request: &Request) -> Response {
    let number = |name: &str| -> Result<Option<u64>, Response> {
        request
            .query_param(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Response::error(400, &format!("\"{name}\" must be a whole number, got {v:?}"))
                })
            })
            .transpose()
    };
    match (number("from"), number("limit")) {
        (Ok(from), Ok(limit)) => {
            respond_with_log(200, from.unwrap_or(1), limit.unwrap_or(u64::MAX), None::<&()>)
        }
        (Err(response), _) | (_, Err(response)) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_its_messages_as_json_strings_and_a_bad_cut_is_an_error() {
        let mut json = Vec::new();
        page_json(&mut json, "a\"b\u{e9}", &[1, 1, 5], false).unwrap();
        assert_eq!(String::from_utf8(json.clone()).unwrap(), "\"a\",\"\",\"\\\"b\u{e9}\"");
        json.clear();
        page_json(&mut json, "xy", &[2], true).unwrap();
        assert_eq!(json, br#","xy""#);
        // A cut inside a character, or past the end, is the host's mistake: not sent on.
        assert!(page_json(&mut Vec::new(), "\u{e9}", &[1], false).is_err());
        assert!(page_json(&mut Vec::new(), "ab", &[3], false).is_err());
    }
}
