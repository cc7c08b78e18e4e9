//! Bindings for the `replog:node/secondary` world.

replog_guest::role_bindings!("replog:node/secondary", {
    "replog:node/replica@0.8.0": generate,
});
