//! Bindings for the `replog:node/secondary` world.

replog_guest::role_bindings!("replog:node/secondary", {
    "replog:node/replica@0.7.0": generate,
});
