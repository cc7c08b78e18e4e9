//! What a request must be before a component instance is taken for it: addressed (a `Host`), in
//! a content encoding the components read (identity), and whole: its body received, within
//! `MAX_BODY_BYTES` and the body timeout. A slow or oversized body is answered here and never
//! holds an instance. Then a place among the instances: client requests may take all but the
//! instances reserved for the cluster's own traffic (`/replicate`, `/health`), so that clients
//! can never starve replication or health checks.

use std::time::Duration;

use bytes::Bytes;
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::node::{Response, json_error};

/// What limits a request before it reaches the component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_body_bytes: u64,
    pub(crate) body_timeout: Duration,
}

/// A request ready for a component, with its place among the instances (none for the cluster's
/// own traffic, which uses the reserve).
pub(crate) struct Admitted {
    pub(crate) request: hyper::Request<Full<Bytes>>,
    pub(crate) place: Option<OwnedSemaphorePermit>,
}

/// Whether `path` is the cluster's own traffic, which may use the reserved instances.
fn internal(path: &str) -> bool {
    path == "/health" || path == "/replicate"
}

pub(crate) async fn admit(
    request: hyper::Request<Incoming>,
    bounds: Bounds,
    clients: &std::sync::Arc<Semaphore>,
) -> Result<Admitted, Response> {
    let (parts, body) = request.into_parts();
    if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
        return Err(json_error(400, "the request has no Host header (HTTP/1.1 requires one)"));
    }
    if let Some(encoding) = parts.headers.get(http::header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes()).trim().to_ascii_lowercase();
        if encoding != "identity" {
            return Err(json_error(
                415,
                &format!(
                    "Content-Encoding {encoding:?} is not accepted: send the body as it is (identity)"
                ),
            ));
        }
    }
    let mut body = body;
    let body = match tokio::time::timeout(bounds.body_timeout, whole(&mut body, bounds)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Unread::TooLarge)) => {
            // Read on, and drop, what the client still sends: closing a socket with unread
            // data resets it, and the reset would destroy the answer before the client read it.
            tokio::spawn(drain(body, bounds));
            return Err(json_error(
                413,
                &format!(
                    "body is larger than {} bytes (the MAX_BODY_BYTES setting)",
                    bounds.max_body_bytes
                ),
            ));
        }
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
    let place = if internal(parts.uri.path()) {
        None
    } else {
        let place = clients.clone().try_acquire_owned().map_err(|_| {
            json_error(
                503,
                "the node is at capacity: every instance clients may use is busy; try again shortly",
            )
        })?;
        Some(place)
    };
    Ok(Admitted { request: hyper::Request::from_parts(parts, Full::new(body)), place })
}

/// Why a body was not received whole.
enum Unread {
    TooLarge,
    Broken(hyper::Error),
}

/// The body, whole, if it stays within `MAX_BODY_BYTES` (checked against its announced length
/// first, then as it arrives). A body in one piece, the usual case, is not copied.
async fn whole(body: &mut Incoming, bounds: Bounds) -> Result<Bytes, Unread> {
    let limit = bounds.max_body_bytes;
    if body.size_hint().lower() > limit {
        return Err(Unread::TooLarge);
    }
    let mut first = Bytes::new();
    let mut rest: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Unread::Broken)?.into_data() else { continue };
        let received = rest.as_ref().map_or(first.len(), Vec::len) + data.len();
        if received as u64 > limit {
            return Err(Unread::TooLarge);
        }
        match &mut rest {
            Some(rest) => rest.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => rest = Some([first.as_ref(), data.as_ref()].concat()),
        }
    }
    Ok(rest.map_or(first, Bytes::from))
}

/// Reads and drops the rest of a refused body: at most `MAX_BODY_BYTES` more, within the
/// body timeout. A client that sends more than that is cut off.
async fn drain(mut body: Incoming, bounds: Bounds) {
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
}
