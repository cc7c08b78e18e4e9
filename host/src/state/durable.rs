//! Group commit: the appends of many requests share one write and one fdatasync.
//!
//! A writer thread per node takes the records submitted since its last write, writes them all
//! at once, waits for the disk, and only then makes them visible in the node's log and tells
//! the waiting requests. Acknowledged therefore always means durable, and a request that gives
//! up waiting (a timeout) cannot leave a gap: the writer makes its records visible regardless.
//!
//! The same thread applies retention between writes (and once a second when idle): it alone
//! touches the segment files, so a removal never races an append, and a new segment's head is
//! taken from the log with every earlier write applied.

use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::watch;

use super::failpoint;
use super::retention::{Removal, Retention, Standing, next_removal};
use super::segments::{Head, Record, Segments};
use crate::metrics::LogMetrics;

/// Writes larger than this are split, so one huge batch cannot delay everything behind it.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// How often an idle writer looks at retention by age.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

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
    /// Where the log stands with everything durable applied: a new segment's head.
    fn head(&self) -> Head;
    /// Where the log stands, for retention.
    fn standing(&self) -> Standing;
    /// Removes the entries through `through` from the log's start (retention); returns how
    /// many went.
    fn retire(&self, through: u64) -> u64;
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
        retention: Retention,
    ) -> Self {
        let (jobs, incoming) = mpsc::channel::<Job>();
        let (report, progress) = watch::channel(Progress::default());
        let node = name.to_owned();
        std::thread::Builder::new()
            .name(format!("replog-log-{name}"))
            .spawn(move || {
                let mut failed: Option<String> = None;
                let mut retiring = Retiring { node: &node, sink: &*sink, metrics: &metrics, retention };
                retiring.pass(&mut segments);
                loop {
                    let first = match incoming.recv_timeout(IDLE_CHECK) {
                        Ok(job) => job,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if failed.is_none() {
                                retiring.pass(&mut segments);
                            }
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
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
                        match segments.append(&records, || sink.head()) {
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
                            retiring.pass(&mut segments);
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

/// Retention, as the writer applies it between writes: it alone touches the segment files, so
/// a removal never races an append.
struct Retiring<'a> {
    node: &'a str,
    sink: &'a dyn Sink,
    metrics: &'a LogMetrics,
    retention: Retention,
}

impl Retiring<'_> {
    /// Removes every segment that may go now, oldest first. Each removal takes the entries
    /// from the log in memory first (readers and keys no longer see them), then deletes the
    /// file, then makes the deletion durable: a crash between any two steps leaves on disk the
    /// log from the old start or from the new one, both whole.
    fn pass(&mut self, segments: &mut Segments) {
        loop {
            let standing = self.sink.standing();
            let now = std::time::SystemTime::now();
            let Some(removal) = next_removal(segments.infos(), standing, &self.retention, now)
            else {
                break;
            };
            let number = segments.infos()[0].number;
            let entries = match removal {
                Removal::Unused => 0,
                Removal::Through(through) => self.sink.retire(through),
            };
            failpoint::reached("retention-before-delete");
            if let Err(e) = segments.remove_oldest() {
                tracing::error!(node = self.node, error = %e, "retention could not delete a segment; it tries again after the next write");
                break;
            }
            failpoint::reached("retention-after-delete");
            if let Err(e) = segments.sync_dir() {
                tracing::error!(node = self.node, error = %e, "retention could not sync the data directory");
                break;
            }
            failpoint::reached("retention-after-sync");
            self.metrics.removed(entries);
            match removal {
                Removal::Through(through) => tracing::info!(
                    node = self.node,
                    segment = number,
                    entries,
                    start = through + 1,
                    "retention removed a segment: the log starts at seq {}",
                    through + 1
                ),
                Removal::Unused => tracing::info!(
                    node = self.node,
                    segment = number,
                    "removed a segment the log no longer reaches"
                ),
            }
        }
        self.metrics.on_disk(segments.infos().len(), segments.bytes());
    }
}
