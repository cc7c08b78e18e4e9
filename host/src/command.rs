//! `replog run`: runs a WASI command component (`wasi:cli/run`), such as the echo server and
//! client of iteration 0, with the network and this terminal's standard streams.

use std::path::Path;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

struct CommandCtx {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for CommandCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Runs the component at `path` with `args` and returns its exit code.
pub(crate) async fn run(path: &Path, args: &[String]) -> anyhow::Result<i32> {
    let engine = Engine::default();
    let component = Component::from_file(&engine, path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load {}", path.display()))?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;

    let program = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let wasi = WasiCtxBuilder::new()
        .inherit_stdio()
        .inherit_network()
        .allow_tcp(true)
        .allow_ip_name_lookup(true)
        .arg(&program)
        .args(args)
        .build();
    let mut store = Store::new(&engine, CommandCtx { wasi, table: ResourceTable::new() });
    let command = Command::instantiate_async(&mut store, &component, &linker)
        .await
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{} is not a WASI command component", path.display()))?;
    match command.wasi_cli_run().call_run(&mut store).await {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(anyhow::Error::from(e).context(format!("{} failed", path.display()))),
        },
    }
}
