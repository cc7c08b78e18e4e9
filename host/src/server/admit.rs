//! What a request must be before a component instance is taken for it: addressed (a `Host`), in
//! a content encoding the components read (identity), with proof of membership where its route
//! takes only the cluster's members (judged on the header first, so that an unprovable body is
//! never read), and whole: its body received, within `MAX_BODY_BYTES`, the body timeout, and
//! room in the node's budget for bodies (`budget`). A slow, oversized or unprovable body is
//! answered here and never holds an instance. Then a place among the instances: client requests
//! may take all but the instances reserved for the cluster's own traffic, so that clients can
//! never starve replication or health checks.

use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::budget::{BodyBudget, Room};
use crate::node::{Node, Response, Traffic, json_error, unauthorized};

/// How long a body whose length is announced may wait for room in the budget before it is
/// refused with `503`.
const ROOM_WAIT: Duration = Duration::from_secs(5);

/// What limits a request before it reaches the component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_body_bytes: u64,
    pub(crate) body_timeout: Duration,
}

/// A request ready for a component, with its place among the instances (none for the cluster's
/// own traffic, which uses the reserve) and its body's room in the budget. Both are held until
/// its answer has been sent.
pub(crate) struct Admitted {
    pub(crate) request: http::Request<Bytes>,
    pub(crate) place: Option<OwnedSemaphorePermit>,
    pub(crate) room: Room,
}

pub(crate) async fn admit(
    request: hyper::Request<Incoming>,
    node: &Node,
    bounds: Bounds,
    budget: &BodyBudget,
    clients: &std::sync::Arc<Semaphore>,
) -> Result<Admitted, Response> {
    let (parts, body) = request.into_parts();
    let refuse = |answer: Response, body: Incoming| {
        linger(body, bounds, budget);
        answer
    };
    if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
        let answer = json_error(400, "the request has no Host header (HTTP/1.1 requires one)");
        return Err(refuse(answer, body));
    }
    if let Some(encoding) = parts.headers.get(http::header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes()).trim().to_ascii_lowercase();
        if encoding != "identity" {
            let answer = json_error(
                415,
                &format!(
                    "Content-Encoding {encoding:?} is not accepted: send the body as it is (identity)"
                ),
            );
            return Err(refuse(answer, body));
        }
    }
    let traffic = match node.screen(&parts) {
        Ok(traffic) => traffic,
        Err(refusal) => return Err(refuse(unauthorized(&refusal), body)),
    };
    let announced = body.size_hint().exact();
    if body.size_hint().lower() > bounds.max_body_bytes {
        return Err(refuse(too_large(bounds), body));
    }
    let room = match announced {
        Some(bytes) => match budget.room(bytes, traffic, ROOM_WAIT).await {
            Some(room) => room,
            None => return Err(refuse(no_room(budget), body)),
        },
        None => Room::default(),
    };
    let mut body = body;
    let receiving = whole(&mut body, announced, bounds, budget, traffic, room);
    let (body, room) = match tokio::time::timeout(bounds.body_timeout, receiving).await {
        Ok(Ok(received)) => received,
        Ok(Err(Unread::TooLarge)) => return Err(refuse(too_large(bounds), body)),
        Ok(Err(Unread::NoRoom)) => return Err(refuse(no_room(budget), body)),
        Ok(Err(Unread::Broken(e))) => {
            return Err(json_error(400, &format!("could not read the body: {e}")));
        }
        Err(_) => {
            return Err(json_error(
                408,
                &format!(
                    "the request's body did not arrive within {} ms (the BODY_TIMEOUT_MS setting)",
                    bounds.body_timeout.as_millis()
                ),
            ));
        }
    };
    // Only now, with the whole request in hand, is a place among the instances taken.
    let place = if traffic == Traffic::Client {
        let place = clients.clone().try_acquire_owned().map_err(|_| {
            json_error(
                503,
                "the node is at capacity: every instance clients may use is busy; try again shortly",
            )
        })?;
        Some(place)
    } else {
        None
    };
    Ok(Admitted { request: http::Request::from_parts(parts, body), place, room })
}

fn too_large(bounds: Bounds) -> Response {
    json_error(
        413,
        &format!(
            "body is larger than {} bytes, the most this node takes (MAX_BODY_BYTES for a \
             client's message, the largest batch on a secondary)",
            bounds.max_body_bytes
        ),
    )
}

fn no_room(budget: &BodyBudget) -> Response {
    let mut answer = json_error(
        503,
        &format!(
            "this node holds as many request bodies as it may ({} bytes, the BODY_BUDGET_BYTES \
             setting); try again shortly",
            budget.bytes()
        ),
    );
    answer.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    answer
}

/// Why a body was not received whole.
enum Unread {
    TooLarge,
    /// It came without a length, and outgrew the room the budget had.
    NoRoom,
    Broken(hyper::Error),
}

/// The body, whole, within `MAX_BODY_BYTES` and within `room`: a body of `announced` length
/// came with room for all of it; one without a length grows its room as it arrives. A body in
/// one piece, the usual case, is not copied.
async fn whole(
    body: &mut Incoming,
    announced: Option<u64>,
    bounds: Bounds,
    budget: &BodyBudget,
    traffic: Traffic,
    mut room: Room,
) -> Result<(Bytes, Room), Unread> {
    let limit = announced.unwrap_or(bounds.max_body_bytes).min(bounds.max_body_bytes);
    let mut first = Bytes::new();
    let mut rest: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Unread::Broken)?.into_data() else { continue };
        let held = rest.as_ref().map_or(first.len(), Vec::len);
        let received = held + data.len();
        if received as u64 > limit {
            return Err(Unread::TooLarge);
        }
        if held == 0 && rest.is_none() {
            if !budget.grow(&mut room, received as u64, traffic) {
                return Err(Unread::NoRoom);
            }
            first = data;
            continue;
        }
        let rest = match &mut rest {
            Some(rest) => rest,
            None => {
                let mut bytes = Vec::with_capacity(announced.map_or(0, |n| n as usize));
                bytes.extend_from_slice(&std::mem::take(&mut first));
                rest.insert(bytes)
            }
        };
        if received > rest.capacity() {
            // Doubling, as a Vec grows, but within the limit, and only into room taken first.
            let capacity = received.max(rest.capacity() * 2).min(limit as usize);
            if !budget.grow(&mut room, capacity as u64, traffic) {
                return Err(Unread::NoRoom);
            }
            rest.reserve_exact(capacity - rest.len());
        }
        rest.extend_from_slice(&data);
    }
    let body = rest.map_or(first, Bytes::from);
    Ok((body, room))
}

/// Reads and drops, in a task of its own, what the client still sends of a refused body: at
/// most `MAX_BODY_BYTES` more, within the body timeout, when the budget allows another
/// connection to drain; otherwise the body is left unread and the connection closes.
fn linger(body: Incoming, bounds: Bounds, budget: &BodyBudget) {
    if body.is_end_stream() {
        return;
    }
    let Some(slot) = budget.drain_slot() else { return };
    tokio::spawn(async move {
        let mut body = body;
        let mut left = bounds.max_body_bytes;
        let _ = tokio::time::timeout(bounds.body_timeout, async {
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else { continue };
                left = left.saturating_sub(data.len() as u64);
                if left == 0 {
                    return;
                }
            }
        })
        .await;
        drop(slot);
    });
}
