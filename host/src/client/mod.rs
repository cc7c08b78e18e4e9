//! The client commands, `replog append` and `replog tail`: what a user or a script needs to
//! write to the log and follow it from the shell, as Unix tools do (output on stdout, errors
//! on stderr with a non-zero exit, and a quiet end when the reader of a pipe goes away).

mod append;
mod http;
mod tail;

use std::io::Write;

pub(crate) use self::append::{AppendOptions, append};
pub(crate) use self::http::{Connection, Node};
pub(crate) use self::tail::{TailOptions, tail};

/// Why a client command ended before doing all it was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ended {
    /// The reader of its output went away (`| head`): the normal end of a follower in a pipe.
    #[error("the reader of the output went away")]
    ReaderGone,
    /// It failed: why, for standard error.
    #[error("{0}")]
    Failed(String),
}

impl From<String> for Ended {
    fn from(why: String) -> Self {
        Self::Failed(why)
    }
}

/// A command's end.
pub(crate) type Outcome<T> = Result<T, Ended>;

/// Writes `text` on `out` and flushes it, so that a reader of a pipe sees each line at once.
fn print(out: &mut dyn Write, text: &str) -> Outcome<()> {
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    written.map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ended::ReaderGone,
        _ => Ended::Failed(format!("could not write the output: {e}")),
    })
}

/// Resolves once standard output can take nothing more: the reader of a pipe went away, or a
/// terminal closed. A follower that waits for the log writes nothing for long stretches, so
/// it would notice only at its next line; `replog tail --follow | head -3` ends at once
/// instead. Watched on a thread of its own, which the process does not wait for at exit.
pub(crate) async fn output_closed() {
    let (closed, watch) = tokio::sync::oneshot::channel::<()>();
    let watching = std::thread::Builder::new().name("stdout-watch".into()).spawn(move || {
        loop {
            let mut stdout = libc::pollfd { fd: libc::STDOUT_FILENO, events: 0, revents: 0 };
            // SAFETY: one valid `pollfd`, which outlives the call.
            let ready = unsafe { libc::poll(&mut stdout, 1, -1) };
            if ready > 0 && stdout.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                let _ = closed.send(());
                return;
            }
            if ready < 0
                && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                // Nothing to watch: never resolve.
                std::mem::forget(closed);
                return;
            }
        }
    });
    if watching.is_err() || watch.await.is_err() {
        std::future::pending::<()>().await;
    }
}
