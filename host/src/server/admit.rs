//! What a request must be before a component instance is taken for it: addressed (a `Host`), in
//! a content encoding the components read (identity), and whole: its body received, within
//! `MAX_BODY_BYTES` and the body timeout. A slow or oversized body is answered here and never
//! holds an instance. Then a place among the instances: client requests may take all but the
//! instances reserved for the cluster's own traffic (`/replicate`, `/health`), so that clients
//! can never starve replication or health checks.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::node::{Response, json_error};

/// What limits a request before it reaches the component.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_body_bytes: u64,
    pub body_timeout: Duration,
}

/// A request ready for a component, with its place among the instances (none for the cluster's
/// own traffic, which uses the reserve).
pub(crate) struct Admitted {
    pub request: hyper::Request<Full<Bytes>>,
    pub place: Option<OwnedSemaphorePermit>,
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
    let limit = usize::try_from(bounds.max_body_bytes).unwrap_or(usize::MAX);
    let body = match tokio::time::timeout(bounds.body_timeout, Limited::new(body, limit).collect())
        .await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(json_error(
                413,
                &format!("body is larger than {limit} bytes (the MAX_BODY_BYTES setting)"),
            ));
        }
        Ok(Err(e)) => return Err(json_error(400, &format!("could not read the body: {e}"))),
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
