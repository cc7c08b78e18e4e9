//! A component's stdout and stderr, turned into log lines tagged with the node.
//!
//! Components report what the operator should know (a secondary that did not acknowledge,
//! a response that could not be sent) by printing; several nodes may share a process, so each
//! line goes through `tracing` with the node's name rather than to the raw stdout.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Which of the component's output streams.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OutputStream {
    Stdout,
    Stderr,
}

/// The client request the call running on an instance serves, if any: set for each call
/// (an instance may serve several), read by its output streams.
pub(crate) type ServedRequest = Arc<Mutex<Option<Arc<str>>>>;

/// A `StdoutStream` for `WasiCtxBuilder::stdout` / `stderr`.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    node: Arc<str>,
    stream: OutputStream,
    /// The client request the call serves, named on each line.
    served: ServedRequest,
}

impl GuestOutput {
    pub(crate) fn new(node: Arc<str>, stream: OutputStream, served: ServedRequest) -> Self {
        Self { node, stream, served }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineLogger { output: self.clone(), pending: Vec::new() })
    }
}

/// Collects bytes and logs each complete line; a last unterminated line is logged on drop.
struct LineLogger {
    output: GuestOutput,
    pending: Vec<u8>,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let node = &*self.output.node;
        let served = self.output.served.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let request_id = served.as_deref();
        match self.output.stream {
            OutputStream::Stdout => {
                tracing::info!(target: "replog::guest", node, request_id, "{line}")
            }
            OutputStream::Stderr => {
                tracing::warn!(target: "replog::guest", node, request_id, "{line}")
            }
        }
    }
}

impl AsyncWrite for LineLogger {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.pending.extend_from_slice(buf);
        while let Some(end) = this.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = this.pending.drain(..=end).collect();
            this.emit(&line);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.emit(&rest);
    }
}
