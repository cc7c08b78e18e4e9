//! A replog secondary: stores what the master replicates, in the master's order, and serves
//! reads of the gap-free prefix.
//!
//! The host keeps an instance for many requests, one after another; the component keeps
//! nothing between them: the log lives in the host (`replog:node/replica` and `log`), and each
//! request reads the settings from the environment (two variables, the same for the instance's
//! whole life).

#![warn(missing_docs)]

mod bindings;
mod plan;
mod replicate;
mod settings;

use replog_guest::http::{Request, Response};
use replog_guest::{about, log};
use serde::Serialize;
use wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

use crate::bindings::replog::node::replica;
use crate::settings::SecondarySettings;

/// The secondary component: what its exports are implemented on. It holds nothing: see above.
struct Secondary;

impl bindings::exports::wasi::http::incoming_handler::Guest for Secondary {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let settings = match SecondarySettings::from_env() {
            Ok(settings) => settings,
            Err(e) => return Response::error(500, &e.to_string()).send(out),
        };
        let response = match (request.path.as_str(), &request.method) {
            ("/replicate", Method::Post) => replicate::post(&request, &settings),
            ("/replicate", Method::Get) => replicate::get(&request),
            ("/replicate", _) => Response::method_not_allowed("/replicate", "GET, POST"),
            ("/messages", Method::Get) => replog_guest::tail::get_messages(&request),
            ("/messages", Method::Post) => Response::method_not_allowed(
                "/messages on a secondary (writes go to the master)",
                "GET",
            ),
            ("/messages", _) => Response::method_not_allowed("/messages", "GET"),
            ("/health", Method::Get) => health(&settings),
            ("/health", _) => Response::method_not_allowed("/health", "GET"),
            ("/ready", Method::Get) => {
                about::ready("secondary", replica::state().refusal.map_or(Ok(()), Err))
            }
            ("/ready", _) => Response::method_not_allowed("/ready", "GET"),
            (path, _) => Response::not_found(path),
        };
        response.send(out);
    }
}

/// What the secondary's settings need of its host, once read and checked.
fn needs() -> Result<about::Needs, replog_guest::settings::BadSetting> {
    SecondarySettings::from_env().map(|settings| settings.needs())
}

replog_guest::export_about!(
    Secondary, "replog-secondary", settings::NAMES, needs, with_types_in bindings
);

bindings::export!(Secondary with_types_in bindings);

/// `GET /health`: liveness, the log's length, epoch and end, the configured delay, and which
/// component version answers.
fn health(settings: &SecondarySettings) -> Response {
    #[derive(Serialize)]
    struct SecondaryHealth {
        /// The highest master epoch this node has recorded.
        epoch: u64,
        last: log::Position,
        delay_ms: u64,
    }
    let replica::Snapshot { epoch, last, .. } = replica::state();
    about::health("secondary", &SecondaryHealth { epoch, last, delay_ms: settings.delay_ms })
}
