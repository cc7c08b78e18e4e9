//! The host-held log, as both roles read it, and the `GET /messages` endpoint built on it.

use serde::Serialize;

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package replog:guest;
            world shared {
                import replog:node/log@0.4.0;
                import replog:node/auth@0.4.0;
                import replog:node/host-info@0.4.0;
            }
        ",
        world: "replog:guest/shared",
        generate_all,
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq, Default],
    });
}

pub use bindings::replog::node::log::{self as host, Entry, Position, Run};
pub use bindings::replog::node::{auth, host_info};

use crate::http::{Request, Response};

/// `{"messages": [...]}`, the original project's shape.
#[derive(Serialize)]
pub struct Messages {
    pub messages: Vec<String>,
}

/// Every message of the gap-free prefix, in order.
pub fn all_messages() -> Vec<String> {
    host::read(1, u32::MAX).into_iter().map(|Entry { msg, .. }| msg).collect()
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
    let (from, limit) = match (number("from"), number("limit")) {
        (Ok(from), Ok(limit)) => (from.unwrap_or(1), limit.map_or(u32::MAX, clamp_u32)),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let messages = host::read(from, limit).into_iter().map(|Entry { msg, .. }| msg).collect();
    Response::json(200, &Messages { messages })
}

fn clamp_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
