//! Why a call into a component got no answer, and how the host answers for it: JSON errors,
//! like the components' own.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::metrics::{RuntimeMetrics, Stopped};
use crate::runtime::LimitExceeded;

/// The response type nodes produce.
pub type Response = hyper::Response<ResponseBody>;

/// The body of a node's answer.
pub type ResponseBody = HyperOutgoingBody;

/// Why a call into the component (a request, a replication step) got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The call passed its CPU budget or its memory limit, and was stopped.
    #[error("{0}; the request was stopped")]
    Limit(LimitExceeded),
    /// The call took longer than its timeout, and was stopped.
    #[error("the request took longer than {} ms and was stopped", .0.as_millis())]
    Timeout(Duration),
    /// No instance could be had: the pool is at its limit.
    #[error("the node is at capacity: {0}")]
    Busy(String),
    /// The component trapped (panicked, or failed in the runtime); the text names the trap.
    #[error("the component failed: {0}")]
    Trap(String),
    /// The component set its response to a `wasi:http` error code instead of a response.
    #[error("the component answered with an error: {0:?}")]
    ErrorCode(ErrorCode),
    /// The call ended without the component setting its response.
    #[error("the component finished without answering")]
    NoResponse,
    /// The host failed to set up or pass the call.
    #[error("host error: {0}")]
    Host(String),
}

impl Failure {
    pub(crate) fn host(e: wasmtime::Error) -> Self {
        Self::Host(format!("{e:#}"))
    }

    pub(crate) fn from_guest(e: wasmtime::Error) -> Self {
        if let Some(limit) = e.downcast_ref::<LimitExceeded>() {
            return Self::Limit(limit.clone());
        }
        if let Some(busy) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return Self::Busy(busy.to_string());
        }
        // The first line names the trap; the wasm backtrace that follows is for debugging.
        let text = format!("{e:#}");
        Self::Trap(text.lines().next().unwrap_or_default().to_owned())
    }

    /// Counts a call the host stopped, by the limit it passed.
    pub(crate) fn count(&self, metrics: &RuntimeMetrics) {
        let stopped = match self {
            Failure::Limit(LimitExceeded::Cpu { .. }) => Stopped::Cpu,
            Failure::Limit(LimitExceeded::Memory { .. }) => Stopped::Memory,
            Failure::Timeout(_) => Stopped::WallClock,
            _ => return,
        };
        metrics.stopped(stopped);
    }

    fn status(&self) -> u16 {
        match self {
            Failure::Timeout(_) => 504,
            Failure::Busy(_) => 503,
            _ => 500,
        }
    }

    pub(crate) fn into_response(self) -> Response {
        json_error(self.status(), &self.to_string())
    }
}

/// `status` with `{"error": message}`: how the host itself answers, as the components do.
pub fn json_error(status: u16, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    whole(status, "application/json", body.into())
}

/// `status` with `body`, of `content_type`, in one piece.
pub(crate) fn whole(status: u16, content_type: &'static str, body: Bytes) -> Response {
    hyper::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(body).map_err(|never| match never {}).boxed_unsync())
        .expect("a valid status and a static header make a valid response")
}
