//! Loading a component file: read, fingerprint, compile, and check it fits a role.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::bindings::described::DescribedPre;
use super::bindings::replicating::ReplicatingPre;
use super::bindings::replog::node::{auth, host_info, log, peers, replica, sequencer};
use super::ctx::{ReplogNode, RequestCtx, node_view};
use crate::config::Role;

/// Why a component version cannot serve: unreadable, invalid, unfit for the role, or
/// refusing its settings.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The component file could not be read.
    #[error("cannot read component {path}: {error}")]
    Read {
        /// The component file.
        path: PathBuf,
        /// What reading it failed with.
        error: std::io::Error,
    },
    /// The file's bytes did not compile as a WebAssembly component.
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Compile {
        /// The component file.
        path: PathBuf,
        /// What the compiler said, on one line.
        reason: String,
    },
    /// The component imports what the role does not offer, or does not export
    /// `wasi:http/incoming-handler`.
    #[error("{path} does not fit the {role} role: {reason}")]
    WrongWorld {
        /// The component file.
        path: PathBuf,
        /// The role it was linked for.
        role: Role,
        /// What linking or instantiating it reported.
        reason: String,
    },
    /// The host's own interfaces could not be added to the linker.
    #[error("could not set up the host interfaces: {0}")]
    Linker(String),
    /// Its `about.describe` failed, or its answer could not be used.
    #[error("{path} failed to describe itself: {reason}")]
    Describe {
        /// The component file.
        path: PathBuf,
        /// Why its description could not be had.
        reason: String,
    },
    /// The version refused the settings it was given, or needs ones the running node cannot
    /// give it without a restart.
    #[error("{path} refuses its settings: {message}")]
    Settings {
        /// The component file.
        path: PathBuf,
        /// Which settings, and why.
        message: String,
    },
}

/// A component compiled for this process's engine, with what identifies it in logs.
#[derive(Clone)]
pub struct CompiledComponent {
    pub(crate) path: PathBuf,
    /// Hex sha256 of the file's bytes.
    pub(crate) sha256: String,
    pub(crate) component: Component,
    /// How long reading and compiling took.
    pub(crate) compile_time: Duration,
}

impl CompiledComponent {
    /// Reads and compiles `path`. Compiling takes a moment: do it once per file, not per node.
    pub fn load(engine: &Engine, path: &Path) -> Result<Self, LoadError> {
        Self::compile(engine, path, &read(path)?)
    }

    /// Compiles `bytes`, read from `path`.
    pub(crate) fn compile(engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Self, LoadError> {
        let started = Instant::now();
        let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: one_line(&format!("{e:#}")),
        })?;
        Ok(Self {
            path: path.to_owned(),
            sha256: sha256(bytes),
            component,
            compile_time: started.elapsed(),
        })
    }

    /// Links the component against what `role` offers (WASI, `wasi:http`, and that role's
    /// `replog:node` interfaces only) and checks it exports `wasi:http/incoming-handler`.
    pub(crate) fn link(&self, role: Role) -> Result<RoleWorlds, LoadError> {
        let linker = role_linker(self.component.engine(), role)?;
        let wrong = |e: wasmtime::Error| LoadError::WrongWorld {
            path: self.path.clone(),
            role,
            reason: format!("{e:#}"),
        };
        let instance = linker.instantiate_pre(&self.component).map_err(wrong)?;
        // `about` is optional: any wasi:http component can be served, only replog's describe
        // themselves.
        let described = DescribedPre::new(instance.clone()).ok();
        let replicator = ReplicatingPre::new(instance.clone()).ok();
        Ok(RoleWorlds { proxy: ProxyPre::new(instance).map_err(wrong)?, described, replicator })
    }
}

/// Parser errors can spread over many lines (byte dumps); a log line wants one.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The bytes of the component file at `path`.
pub fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|error| LoadError::Read { path: path.to_owned(), error })
}

/// Hex sha256 of `bytes`: how logs and `/health` name a component version.
pub fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The worlds of a component linked for a role, ready to instantiate.
pub(crate) struct RoleWorlds {
    pub(crate) proxy: ProxyPre<RequestCtx>,
    pub(crate) described: Option<DescribedPre<RequestCtx>>,
    /// The master's `replicator`, which the replication streams call.
    pub(crate) replicator: Option<ReplicatingPre<RequestCtx>>,
}

fn role_linker(engine: &Engine, role: Role) -> Result<Linker<RequestCtx>, LoadError> {
    let failed = |e: wasmtime::Error| LoadError::Linker(format!("{e:#}"));
    let mut linker = Linker::new(engine);
    // Rust's standard library imports wasi:cli and friends even in a proxy world.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(failed)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(failed)?;
    log::add_to_linker::<_, ReplogNode>(&mut linker, node_view).map_err(failed)?;
    host_info::add_to_linker::<_, ReplogNode>(&mut linker, node_view).map_err(failed)?;
    auth::add_to_linker::<_, ReplogNode>(&mut linker, node_view).map_err(failed)?;
    match role {
        Role::Master => {
            sequencer::add_to_linker::<_, ReplogNode>(&mut linker, node_view).map_err(failed)?;
            peers::add_to_linker::<_, ReplogNode>(&mut linker, node_view).map_err(failed)?;
        }
        Role::Secondary => {
            replica::add_to_linker::<_, ReplogNode>(&mut linker, node_view).map_err(failed)?;
        }
    }
    Ok(linker)
}
