//! A component that misbehaves on request, so the host's tests can show that limits and the
//! outbound allow-list hold and that the node keeps serving afterwards. Never deployed.
//!
//! - `GET /ok`: answers `200 {"status": "ok"}`.
//! - `GET /spin`: loops for ever without answering.
//! - `GET /hog`: allocates (and touches) memory until something stops it.
//! - `GET /fetch?url=http://host:port/path`: makes an outbound request and answers with what
//!   happened (`200` with the status it got, or `502` with the error code).

use replog_guest::http::{Request, Response};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingRequest, ResponseOutparam, Scheme,
};

struct Runaway;

impl wasip2::exports::http::incoming_handler::Guest for Runaway {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let response = match request.path.as_str() {
            "/ok" => Response::json(200, &Status { status: "ok" }),
            "/spin" => spin(),
            "/hog" => hog(),
            "/fetch" => fetch(&request.query_param("url").unwrap_or_default()),
            path => Response::not_found(path),
        };
        response.send(out);
    }
}

wasip2::http::proxy::export!(Runaway);

#[derive(serde::Serialize)]
struct Status {
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
        Ok(response) => Response::json(200, &Fetched { status: response.status(), error: None }),
        Err(code) => Response::json(502, &Fetched { status: 0, error: Some(format!("{code:?}")) }),
    }
}

#[derive(serde::Serialize)]
struct Fetched {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}
