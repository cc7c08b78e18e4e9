//! Tails, measured: many event-stream subscribers on one secondary while writes go to the
//! master, and the long-poll round trip.
//!
//! `cargo bench --bench tails`. An embedded cluster (`replog cluster`, a master and two
//! secondaries, in memory) is pinned to CPU 0 and this load generator to CPU 1 where the
//! machine has two CPUs or more (`taskset`), so that the load does not take the nodes' CPU. It
//! prints:
//! - writes (`w=2`, lean) offered at BENCH_RATE a second (default 2,000) for BENCH_SECONDS
//!   (default 10): the rate achieved and the write latency, with no subscribers, then with
//!   BENCH_SUBSCRIBERS (default 1,000) event streams open on one secondary;
//! - for those subscribers: the time from a write's `201` to its event reaching a subscriber
//!   (every 10th seq, at every subscriber), p50/p99/max, and whether every subscriber got
//!   every entry once, in order;
//! - the node process's RSS (all three nodes) before and with the subscribers;
//! - the most writes a second 32 closed-loop writers get, without and with the subscribers;
//! - the long-poll round trip: a long-poll waiting on a secondary (and on the master), a write,
//!   and the time from the write's `201` to the long-poll's answer, over 50 writes.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use support::load::{closed_loop, percentile, pin_apart, runtime};
use support::process::{Cluster, rss_kib};

fn main() {
    let rate = support::chance::setting("BENCH_RATE").unwrap_or(2_000);
    let seconds = support::chance::setting("BENCH_SECONDS").unwrap_or(10);
    let subscribers = support::chance::setting("BENCH_SUBSCRIBERS").unwrap_or(1_000) as usize;
    let cluster = Cluster::start(
        &[0, 0],
        &["--max-instances", "4000", "--max-tails", "2000", "--max-connections", "4096"],
    );
    pin_apart(cluster.process.id());
    let runtime = runtime();
    runtime.block_on(measure(&cluster, rate, seconds, subscribers));
}

async fn measure(cluster: &Cluster, rate: u64, seconds: u64, subscribers: usize) {
    let master = cluster.master.clone();
    let secondary = cluster.secondaries[0].clone();
    let pid = cluster.process.id();
    let client = support::client();
    let duration = Duration::from_secs(seconds);

    let max_before = closed_loop(&client, &master, Duration::from_secs(seconds.min(5))).await;
    let (alone, _) = offered(&client, &master, rate, duration, None).await;
    let rss_before = rss_kib(pid);

    // The subscribers, each on a connection of its own, from the next seq on.
    let from = last_seq(&client, &master).await + 1;
    let board = Arc::new(Board::new(from, (rate * seconds * 2 + 1_000) as usize, subscribers));
    let mut tasks = Vec::new();
    for i in 0..subscribers {
        tasks.push(tokio::spawn(subscribe(secondary.clone(), from, board.clone(), i)));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while tails(&client, &secondary).await < subscribers as u64 {
        assert!(Instant::now() < deadline, "the subscribers did not all get a stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_idle = rss_kib(pid);
    let (with, last) = offered(&client, &master, rate, duration, Some(&board)).await;
    let rss_loaded = rss_kib(pid);
    // Every subscriber gets every entry through the last, once and in order.
    let deadline = Instant::now() + Duration::from_secs(60);
    let caught_up = || board.progress.iter().filter(|n| n.load(Ordering::Relaxed) > last).count();
    while caught_up() < subscribers && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = caught_up();
    let max_with = closed_loop(&client, &master, Duration::from_secs(seconds.min(5))).await;
    for task in &tasks {
        task.abort();
    }
    let mut latencies = board.latencies.lock().unwrap().clone();
    latencies.sort_unstable();
    let disorder = board.out_of_order.load(Ordering::Relaxed);

    println!(
        "writes w=2 offered at {rate}/s for {seconds} s: {:.0}/s achieved alone (p50 {:.1} ms, p99 \
         {:.1} ms), {:.0}/s with {subscribers} subscribers (p50 {:.1} ms, p99 {:.1} ms): {:.1} % of \
         alone",
        alone.rate,
        alone.p50,
        alone.p99,
        with.rate,
        with.p50,
        with.p99,
        100.0 * with.rate / alone.rate
    );
    println!(
        "delivery from a write's 201 to its event at a subscriber ({} samples): p50 {:.1} ms, p99 \
         {:.1} ms, max {:.1} ms; {caught_up} of {subscribers} subscribers got every entry \
         through seq {last}, {disorder} events out of order or repeated",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    println!(
        "RSS of the three nodes: {} MiB before, {} MiB with {subscribers} idle streams, {} MiB \
         after the writes with them",
        rss_before / 1024,
        rss_idle / 1024,
        rss_loaded / 1024
    );
    println!(
        "closed loop (32 writers, w=2): {max_before:.0}/s without subscribers, {max_with:.0}/s with \
         them ({:.1} %)",
        100.0 * max_with / max_before
    );
    for node in [&secondary, &master] {
        let (p50, p99) = long_poll_round_trip(&client, &master, node).await;
        println!(
            "long-poll round trip on {node}: from the write's 201 to the long-poll's answer, p50 \
             {p50:.2} ms, p99 {p99:.2} ms (50 writes)"
        );
    }
}

/// What the subscribers share: when each seq's write was answered, and what they measured.
struct Board {
    from: u64,
    started: Instant,
    /// Microseconds from `started` to each seq's `201` (0: not yet).
    acked_at: Vec<AtomicU64>,
    latencies: std::sync::Mutex<Vec<u64>>,
    /// The next seq each subscriber waits for.
    progress: Vec<AtomicU64>,
    out_of_order: AtomicU64,
}

impl Board {
    fn new(from: u64, room: usize, subscribers: usize) -> Self {
        Self {
            from,
            started: Instant::now(),
            acked_at: (0..room).map(|_| AtomicU64::new(0)).collect(),
            latencies: std::sync::Mutex::new(Vec::new()),
            progress: (0..subscribers).map(|_| AtomicU64::new(from)).collect(),
            out_of_order: AtomicU64::new(0),
        }
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn acked(&self, seq: u64) {
        if let Some(slot) = self.acked_at.get((seq - self.from) as usize) {
            slot.store(self.now_us().max(1), Ordering::Relaxed);
        }
    }
}

/// One subscriber: an event stream from `from`, counting what arrives.
async fn subscribe(node: String, from: u64, board: Arc<Board>, me: usize) {
    let Ok(mut body) = open_stream(&node, from).await else {
        return;
    };
    let mut next = from;
    let mut line = Vec::new();
    let mut samples = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        for &byte in data.iter() {
            if byte != b'\n' {
                line.push(byte);
                continue;
            }
            if let Some(id) = line.strip_prefix(b"id: ") {
                let seq: u64 = std::str::from_utf8(id).unwrap().parse().unwrap();
                if seq != next {
                    board.out_of_order.fetch_add(1, Ordering::Relaxed);
                }
                next = seq + 1;
                // Timed for the offered writes only: the closed-loop writes after them (with
                // the subscribers still following) go past the board.
                let slot =
                    usize::try_from(seq - board.from).ok().and_then(|i| board.acked_at.get(i));
                if seq.is_multiple_of(10)
                    && let Some(slot) = slot
                {
                    let acked = slot.load(Ordering::Relaxed);
                    if acked > 0 {
                        samples.push(board.now_us().saturating_sub(acked));
                    }
                }
            }
            line.clear();
        }
        board.progress[me].store(next, Ordering::Relaxed);
        if !samples.is_empty() {
            board.latencies.lock().unwrap().append(&mut samples);
        }
    }
}

async fn open_stream(
    node: &str,
    from: u64,
) -> Result<hyper::body::Incoming, Box<dyn std::error::Error + Send + Sync>> {
    let authority = node.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(authority).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(format!("/messages?from={from}"))
        .header("host", authority)
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    assert_eq!(response.status(), 200, "a stream was refused");
    Ok(response.into_body())
}

/// Rate, and write latency p50/p99 in ms.
struct Offered {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Writes offered at `rate` a second for `duration` (32 writers, each write at its due time
/// or as soon as a writer is free); returns what was achieved and the last seq.
async fn offered(
    client: &support::Client,
    master: &str,
    rate: u64,
    duration: Duration,
    board: Option<&Arc<Board>>,
) -> (Offered, u64) {
    let total = rate * duration.as_secs();
    let ticket = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..32 {
        let (client, ticket, board) = (client.clone(), ticket.clone(), board.cloned());
        let url = format!("{master}/messages?log=false");
        writers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut last = 0;
            loop {
                let i = ticket.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return (latencies, last);
                }
                let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let body = format!(r#"{{"msg":"bench-{i}","w":2}}"#);
                let reply = client.post(&url, body).await.expect("an answer");
                assert_eq!(reply.status, 201, "{}", reply.text());
                let seq = reply.json()["seq"].as_u64().unwrap();
                if let Some(board) = &board {
                    board.acked(seq);
                }
                latencies.push(sent.elapsed().as_micros() as u64);
                last = last.max(seq);
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut last = 0;
    for writer in writers {
        let (mut mine, their_last) = writer.await.unwrap();
        latencies.append(&mut mine);
        last = last.max(their_last);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let offered = Offered {
        rate: latencies.len() as f64 / elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    };
    (offered, last)
}

/// From a write's `201` to the answer of a long-poll waiting on `node` for it: p50, p99 in ms.
async fn long_poll_round_trip(client: &support::Client, master: &str, node: &str) -> (f64, f64) {
    let mut gaps = Vec::new();
    for i in 0..50 {
        let next = last_seq(client, master).await + 1;
        let url = format!("{node}/messages?from={next}&wait=20000");
        let waiting = {
            let client = client.clone();
            tokio::spawn(async move {
                let reply = client.get(&url).await.expect("an answer");
                assert_eq!(reply.status, 200);
                Instant::now()
            })
        };
        while tails(client, node).await == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let body = format!(r#"{{"msg":"poke-{i}","w":2}}"#);
        let reply = client.post(&format!("{master}/messages?log=false"), body).await.unwrap();
        assert_eq!(reply.status, 201);
        let acked = Instant::now();
        let answered = waiting.await.unwrap();
        gaps.push(answered.saturating_duration_since(acked).as_micros() as u64);
    }
    gaps.sort_unstable();
    (percentile(&gaps, 0.50), percentile(&gaps, 0.99))
}

async fn last_seq(client: &support::Client, node: &str) -> u64 {
    let reply = client.get(&format!("{node}/health")).await.unwrap();
    reply.json()["count"].as_u64().unwrap()
}

async fn tails(client: &support::Client, node: &str) -> u64 {
    let text = client.get(&format!("{node}/metrics")).await.unwrap().text();
    text.lines()
        .find_map(|l| l.strip_prefix("replog_tails "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}
