//! A replog secondary: stores what the master replicates, in the master's order, and serves
//! reads of the gap-free prefix.
//!
//! Runs once per HTTP request; the log lives in the host (`replog:node/replica` and `log`),
//! settings come from the environment.

mod bindings;
mod plan;
mod replicate;

use replog_guest::http::{Request, Response};
use replog_guest::settings::{self, BadSetting};
use replog_guest::{about, log};
use serde::Serialize;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

use crate::bindings::exports::replog::node::about::Description;

/// Largest `/replicate` body unless `MAX_BODY_BYTES` says otherwise. Larger than the master's
/// client limit: a batch carries many messages, and JSON escaping can grow each one.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

struct Secondary;

pub struct Settings {
    pub delay_ms: u64,
    pub max_body_bytes: u64,
    /// Share of replications answered `500` after storing: fault injection for tests.
    pub fault_rate: f64,
}

impl Settings {
    fn from_env() -> Result<Self, BadSetting> {
        Ok(Self {
            delay_ms: settings::number("DELAY_MS", 0)?,
            max_body_bytes: settings::number("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?,
            fault_rate: settings::fraction("FAULT_RATE")?,
        })
    }
}

impl bindings::exports::wasi::http::incoming_handler::Guest for Secondary {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let settings = match Settings::from_env() {
            Ok(settings) => settings,
            Err(e) => return Response::error(500, &e.to_string()).send(out),
        };
        let response = match (request.path.as_str(), &request.method) {
            ("/replicate", Method::Post) => replicate::post(&request, &settings),
            ("/replicate", Method::Get) => replicate::get(&request, &settings),
            ("/replicate", _) => Response::method_not_allowed("/replicate", "GET, POST"),
            ("/messages", Method::Get) => log::get_messages(&request),
            ("/messages", Method::Post) => Response::method_not_allowed(
                "/messages on a secondary (writes go to the master)",
                "GET",
            ),
            ("/messages", _) => Response::method_not_allowed("/messages", "GET"),
            ("/health", Method::Get) => health(&settings),
            ("/health", _) => Response::method_not_allowed("/health", "GET"),
            (path, _) => Response::not_found(path),
        };
        response.send(out);
    }
}

impl bindings::exports::replog::node::about::Guest for Secondary {
    fn describe() -> Description {
        Description { name: "replog-secondary".into(), version: about::version() }
    }
}

bindings::export!(Secondary with_types_in bindings);

/// `GET /health`: liveness, the log's length and epoch, the configured delay, and which
/// component version answers.
fn health(settings: &Settings) -> Response {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        role: &'static str,
        count: u64,
        /// The highest master epoch this node has recorded.
        epoch: u64,
        last: replog_guest::wire::Position,
        delay_ms: u64,
        /// Whether it checks the master's proof (false: started `--insecure`).
        authenticated: bool,
        component: about::Running,
    }
    let bindings::replog::node::replica::Snapshot { epoch, last, .. } =
        bindings::replog::node::replica::state();
    Response::json(
        200,
        &Health {
            status: "ok",
            role: "secondary",
            count: last.seq,
            epoch,
            last,
            delay_ms: settings.delay_ms,
            authenticated: replog_guest::auth::enabled(),
            component: about::running(),
        },
    )
}
