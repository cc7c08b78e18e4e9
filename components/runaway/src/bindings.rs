//! Bindings for the `replog:node/plain` world: plain `wasi:http`, and `about`.

replog_guest::role_bindings!(plain "replog:node/plain");
