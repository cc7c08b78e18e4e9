//! Plumbing shared by replog's components.
//!
//! Both roles speak HTTP through `wasi:http`, answer in JSON and read the same host-held log;
//! this crate keeps what is the same for both (bounded request bodies, responses, settings from
//! the environment, `GET /messages`, the master↔secondary wire format and its proof of origin)
//! so that each role's crate holds only its own logic.

#![warn(missing_docs)]

pub mod about;
pub mod auth;
pub mod host;
pub mod http;
pub mod json;
pub mod log;
pub mod peer;
pub mod settings;
pub mod tail;
pub mod wire;

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let now = wasip2::clocks::wall_clock::now();
    now.seconds.saturating_mul(1000) + u64::from(now.nanoseconds / 1_000_000)
}

/// Generates a role's bindings for its world in `wit/`, taking the WASI types from `wasip2` and
/// the interfaces every role imports (`log`, `auth`, `host-info`) from this crate, so that a
/// role's code and this crate work with the same types. `$with` maps (or `generate`s) the
/// role's own interfaces. `role_bindings!(plain "world")` is for a world that imports nothing
/// of replog's.
#[macro_export]
macro_rules! role_bindings {
    ($world:literal, { $($with:tt)* }) => {
        $crate::role_bindings!(@generate $world, {
            "replog:node/log@0.8.0": replog_guest::host::log,
            "replog:node/auth@0.8.0": replog_guest::host::auth,
            "replog:node/host-info@0.8.0": replog_guest::host::host_info,
            "replog:node/types@0.8.0": generate,
            $($with)*
        });
    };
    (plain $world:literal) => {
        $crate::role_bindings!(@generate $world, {});
    };
    (@generate $world:literal, { $($with:tt)* }) => {
        wit_bindgen::generate!({
            path: "../../wit",
            world: $world,
            with: {
                "wasi:io/poll@0.2.12": wasip2::io::poll,
                "wasi:io/error@0.2.12": wasip2::io::error,
                "wasi:io/streams@0.2.12": wasip2::io::streams,
                "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
                "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
                "wasi:random/random@0.2.12": wasip2::random::random,
                "wasi:cli/stdout@0.2.12": wasip2::cli::stdout,
                "wasi:cli/stderr@0.2.12": wasip2::cli::stderr,
                "wasi:cli/stdin@0.2.12": wasip2::cli::stdin,
                "wasi:http/types@0.2.12": wasip2::http::types,
                "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
                $($with)*
            },
            pub_export_macro: false,
            additional_derives: [PartialEq, Eq],
        });
    };
}
