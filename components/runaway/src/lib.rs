//! A component that misbehaves on request, so the host's tests can show that limits and the
//! outbound allow-list hold and that the node keeps serving afterwards. Never deployed.
//!
//! - `GET /ok`: answers `200 {"status": "ok"}`.
//! - `GET /spin`: loops for ever without answering.
//! - `GET /hog`: allocates (and touches) memory until something stops it.
//! - `GET /fetch?url=http://host:port/path`: makes an outbound request and answers with what
//!   happened (`200` with the status it got, or `502` with the error code).
//! - `GET /env`: answers its whole environment, to show which settings reached it.
//! - `GET /calls`: how many calls this instance has served, this one included (`{"calls": n}`):
//!   it counts in its own memory, which is how the host's tests tell a kept instance from a
//!   new one.
//!
//! It says what it is, which settings it reads (`SECONDARIES`, `RUNAWAY_NOTE`, and, to show
//! the host never passes it, `CLUSTER_SECRET`) and names its peers (from `SECONDARIES`) as any
//! component a replog host serves may, through `about`.

#![warn(missing_docs)]

mod bindings;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use replog_guest::http::{Request, Response};
use replog_guest::settings::SECONDARIES;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingRequest, ResponseOutparam, Scheme,
};

/// The runaway component: what its exports are implemented on.
struct Runaway;

/// Calls this instance has served (answered, so `/spin` and `/hog` never count).
static CALLS: AtomicU64 = AtomicU64::new(0);

#[derive(serde::Serialize)]
struct Calls {
    calls: u64,
}

impl bindings::exports::wasi::http::incoming_handler::Guest for Runaway {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let response = match request.path.as_str() {
            "/ok" => Response::json(200, &Liveness { status: "ok" }),
            "/calls" => Response::json(200, &Calls { calls: CALLS.load(Ordering::Relaxed) + 1 }),
            "/spin" => spin(),
            "/hog" => hog(),
            "/fetch" => fetch(&request.query_param("url").unwrap_or_default()),
            "/env" => Response::json(200, &std::env::vars().collect::<BTreeMap<_, _>>()),
            path => Response::not_found(path),
        };
        CALLS.fetch_add(1, Ordering::Relaxed);
        response.send(out);
    }
}

/// The settings it declares: one the host has no flag for, and one it must never pass.
const SETTINGS: [&str; 3] = [SECONDARIES, "RUNAWAY_NOTE", "CLUSTER_SECRET"];

/// Its peers, from `SECONDARIES`; no call of it legitimately waits long.
fn needs() -> Result<replog_guest::about::Needs, replog_guest::settings::BadSetting> {
    let peers = replog_guest::peer::list(&std::env::var(SECONDARIES).unwrap_or_default())
        .map_err(replog_guest::settings::BadSetting)?;
    Ok(replog_guest::about::Needs {
        longest_call: std::time::Duration::from_secs(5),
        peers,
        cluster_routes: Vec::new(),
        largest_request: None,
    })
}

replog_guest::export_about!(
    Runaway, "replog-runaway", SETTINGS, needs, with_types_in bindings
);

bindings::export!(Runaway with_types_in bindings);

#[derive(serde::Serialize)]
struct Liveness {
    status: &'static str,
}

fn spin() -> Response {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn hog() -> Response {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}

fn fetch(url: &str) -> Response {
    let Some((authority, path)) =
        url.strip_prefix("http://").map(|r| r.split_once('/').unwrap_or((r, "")))
    else {
        return Response::error(400, "url must start with http://");
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(&format!("/{path}")));
    let result = outgoing_handler::handle(request, None).and_then(|response| {
        response.subscribe().block();
        match response.get() {
            Some(Ok(result)) => result,
            _ => unreachable!("a ready response is there exactly once"),
        }
    });
    match result {
        Ok(response) => {
            Response::json(200, &FetchResult { status: response.status(), error: None })
        }
        Err(code) => {
            Response::json(502, &FetchResult { status: 0, error: Some(format!("{code:?}")) })
        }
    }
}

#[derive(serde::Serialize)]
struct FetchResult {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}
