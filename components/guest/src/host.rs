//! The `replog:node` interfaces both roles import: the log, the cluster key, and what the host
//! knows of the running version. Generated once here so that each role's bindings and this
//! crate share their types.

// Generated from the WIT, whose comments are its documentation where it has them.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        inline: "
            package replog:guest;
            world shared {
                import replog:node/log@0.8.0;
                import replog:node/auth@0.8.0;
                import replog:node/host-info@0.8.0;
            }
        ",
        world: "replog:guest/shared",
        with: {
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
        },
        generate_all,
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq],
    });
}

pub use bindings::replog::node::{auth, host_info, log};

/// Where an empty log ends. (The bindings derive no `Default`: the WIT has enums, which have
/// none.)
impl Default for log::Position {
    fn default() -> Self {
        Self { seq: 0, epoch: 0 }
    }
}
