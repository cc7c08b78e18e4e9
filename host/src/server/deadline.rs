//! Deadlines on a connection between requests: how long it may sit idle, and how long a request
//! may take to send its headers once it has started.
//!
//! hyper's own header timeout closes the connection without a word and does not tell an idle
//! keep-alive connection from a slow one, so the socket is wrapped instead. While no request is
//! being served, the wrapper runs a clock: the idle timeout until the first byte of the next
//! request arrives, then the header timeout. When it runs out, an idle connection is closed
//! quietly (a client may reuse a kept-alive connection at any time, and must expect that) and
//! one in the middle of its headers gets `408` before it is closed. While a request is served
//! no clock runs here: its body has a deadline of its own (see `admit`), and the answer may
//! legitimately take as long as its write concern.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::config::Edge;

/// What the requests of a connection tell its socket: how many are being served, and how many
/// have started, so that the socket knows when the wait for the next one begins.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    serving: AtomicUsize,
    started: AtomicU64,
}

impl Activity {
    /// A request has arrived; it is served until the guard is dropped (with its answer's body).
    pub(crate) fn begin(self: &Arc<Self>) -> Serving {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.serving.fetch_add(1, Ordering::AcqRel);
        Serving(self.clone())
    }
}

/// Held while a request is served.
#[derive(Debug)]
pub(crate) struct Serving(Arc<Activity>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A request is being served.
    Serving,
    /// Waiting for the next request.
    Idle,
    /// Part of a request's headers has arrived.
    Head,
}

/// A client's socket with the deadlines of the edge.
pub(crate) struct Watched {
    io: TcpStream,
    activity: Arc<Activity>,
    edge: Edge,
    phase: Phase,
    /// `Activity::started` when the current wait began.
    seen: u64,
    deadline: Pin<Box<Sleep>>,
}

/// What a client whose headers took too long gets before the connection closes.
fn timed_out(header_timeout: Duration) -> Vec<u8> {
    let body = format!(
        r#"{{"error":"the request's headers did not arrive within {} ms (the HEADER_TIMEOUT_MS setting)"}}"#,
        header_timeout.as_millis()
    );
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl Watched {
    pub(crate) fn new(io: TcpStream, activity: Arc<Activity>, edge: Edge) -> Self {
        let deadline = Box::pin(tokio::time::sleep(edge.idle_timeout));
        Self { io, activity, edge, phase: Phase::Idle, seen: 0, deadline }
    }

    fn wait(&mut self, phase: Phase, within: Duration) {
        self.phase = phase;
        self.deadline.as_mut().reset(Instant::now() + within);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.serving.load(Ordering::Acquire) > 0 {
            this.phase = Phase::Serving;
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let started = this.activity.started.load(Ordering::Acquire);
        if this.phase == Phase::Serving || this.seen != started {
            this.seen = started;
            this.wait(Phase::Idle, this.edge.idle_timeout);
        }
        let before = buf.filled().len();
        if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
            if this.phase == Phase::Idle && buf.filled().len() > before {
                this.wait(Phase::Head, this.edge.header_timeout);
            }
            return Poll::Ready(read);
        }
        if this.deadline.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.phase {
            Phase::Head => {
                // Best effort: the answer is small, and the client is about to be cut off anyway.
                let _ = this.io.try_write(&timed_out(this.edge.header_timeout));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers timed out",
                )))
            }
            // An idle connection ends as if the client had closed it.
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
