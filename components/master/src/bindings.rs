//! Bindings for the `replog:node/master` world.

replog_guest::role_bindings!("replog:node/master", {
    "replog:node/sequencer@0.8.0": generate,
    "replog:node/peers@0.8.0": generate,
});
