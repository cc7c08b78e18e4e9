//! Group commit: the appends of many requests share one write and one fdatasync.
//!
//! A writer thread per node takes the records submitted since its last write, writes them all
//! at once, waits for the disk, and only then makes them visible in the node's log and tells
//! the waiting requests. Acknowledged therefore always means durable, and a request that gives
//! up waiting (a timeout) cannot leave a gap: the writer makes its records visible regardless.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::watch;

use super::segments::{Record, Segments};
use crate::metrics::LogMetrics;

/// Writes larger than this are split, so one huge batch cannot delay everything behind it.
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Where the writer stands: every ticket up to `done` is on disk; after a failure, none after
/// it will be.
#[derive(Debug, Clone, Default)]
struct Progress {
    done: u64,
    failed: Option<String>,
}

/// What the writer does with records once they are on disk, or could not be written.
pub(crate) trait Sink: Send + Sync + 'static {
    fn durable(&self, records: Vec<Record>);
    fn lost(&self, records: Vec<Record>);
}

struct Job {
    ticket: u64,
    records: Vec<Record>,
}

/// The handle to a node's writer thread. Dropping it lets the thread finish and exit.
pub(crate) struct Durable {
    jobs: mpsc::Sender<Job>,
    progress: watch::Receiver<Progress>,
}

impl Durable {
    pub(crate) fn start(
        mut segments: Segments,
        name: &str,
        sink: Arc<dyn Sink>,
        metrics: LogMetrics,
    ) -> Self {
        let (jobs, incoming) = mpsc::channel::<Job>();
        let (report, progress) = watch::channel(Progress::default());
        let node = name.to_owned();
        std::thread::Builder::new()
            .name(format!("replog-log-{name}"))
            .spawn(move || {
                let mut failed: Option<String> = None;
                while let Ok(first) = incoming.recv() {
                    let mut last = first.ticket;
                    let mut bytes: usize = first.records.iter().map(Record::size).sum();
                    let mut records = first.records;
                    while bytes < MAX_BATCH_BYTES {
                        let Ok(job) = incoming.try_recv() else { break };
                        last = job.ticket;
                        bytes += job.records.iter().map(Record::size).sum::<usize>();
                        records.extend(job.records);
                    }
                    if failed.is_none() {
                        let started = std::time::Instant::now();
                        match segments.append(&records) {
                            Ok(()) => metrics.committed(records.len(), started.elapsed()),
                            Err(e) => {
                                tracing::error!(%node, error = %e, "the log could not be written: this node takes no more writes");
                                failed = Some(e.to_string());
                            }
                        }
                    }
                    match &failed {
                        None => {
                            sink.durable(records);
                            report.send_modify(|p| p.done = last);
                        }
                        Some(why) => {
                            sink.lost(records);
                            report.send_modify(|p| p.failed = Some(why.clone()));
                        }
                    }
                }
            })
            .expect("spawning the log writer thread");
        Self { jobs, progress }
    }

    /// Hands `records` to the writer under `ticket`; tickets must be submitted in increasing
    /// order (the log submits under its lock).
    pub(crate) fn submit(&self, ticket: u64, records: Vec<Record>) {
        // The writer only stops when this handle is dropped.
        let _ = self.jobs.send(Job { ticket, records });
    }

    /// Resolves once the records of `ticket` are on disk (and visible), or with why they never
    /// will be.
    pub(crate) async fn wait(&self, ticket: u64) -> Result<(), String> {
        let mut progress = self.progress.clone();
        loop {
            {
                let now = progress.borrow_and_update();
                if now.done >= ticket {
                    return Ok(());
                }
                if let Some(why) = &now.failed {
                    return Err(why.clone());
                }
            }
            if progress.changed().await.is_err() {
                return Err("the log writer stopped".to_owned());
            }
        }
    }
}
