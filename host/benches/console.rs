//! The console's cost to a node, measured: the most lean writes a second 32 closed-loop
//! writers get from the master with no console open, with BENCH_CONSOLES (20) consoles open
//! on it, and with none again; and what one console transfers.
//!
//! `cargo bench --bench console`. An embedded cluster (a master and two secondaries, in
//! memory) is pinned to CPU 0 and this load to CPU 1 where there are two CPUs (`taskset`).
//! Each console does what the page does: it loads the page and its two files once, then reads
//! `GET /console/cluster` every second. The writes run BENCH_SECONDS (10) each time.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::load::{closed_loop, pin_apart, runtime};
use support::process::Cluster;

/// How often the page reads the cluster (`console.js`).
const READ_EVERY: Duration = Duration::from_secs(1);

fn main() {
    let seconds = support::chance::setting("BENCH_SECONDS").unwrap_or(10);
    let consoles = support::chance::setting("BENCH_CONSOLES").unwrap_or(20) as usize;
    let cluster = Cluster::start(&[0, 0], &[]);
    pin_apart(cluster.process.id());
    let runtime = runtime();
    runtime.block_on(measure(&cluster, Duration::from_secs(seconds), consoles));
}

async fn measure(cluster: &Cluster, duration: Duration, consoles: usize) {
    let master = cluster.master.clone();
    let client = support::client();

    let started = Instant::now();
    let first = load_page(&client, &master).await;
    println!(
        "the page, its two files and a first view of the cluster: {} bytes in {:.1} ms \
         (one after another, from a cold start)",
        first,
        started.elapsed().as_secs_f64() * 1000.0
    );

    let before = closed_loop(&client, &master, duration).await;
    let open = Arc::new(AtomicBool::new(true));
    let (page_bytes, view_bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..consoles {
        let (client, master, open) = (client.clone(), master.clone(), open.clone());
        let (page_bytes, view_bytes, reads) =
            (page_bytes.clone(), view_bytes.clone(), reads.clone());
        tasks.push(tokio::spawn(async move {
            page_bytes.fetch_add(load_page(&client, &master).await, Ordering::Relaxed);
            while open.load(Ordering::Relaxed) {
                tokio::time::sleep(READ_EVERY).await;
                let view = client.get(&format!("{master}/console/cluster")).await.unwrap();
                assert_eq!(view.status, 200, "{}", view.text());
                view_bytes.fetch_add(view.body.len() as u64, Ordering::Relaxed);
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let opened = Instant::now();
    let with = closed_loop(&client, &master, duration).await;
    open.store(false, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let open_for = opened.elapsed().as_secs_f64();
    let after = closed_loop(&client, &master, duration).await;
    let alone = (before + after) / 2.0;
    println!(
        "closed loop (32 writers, w=2, lean): {before:.0}/s with no console, {with:.0}/s with \
         {consoles} open, {after:.0}/s with none again: {:.1} % of the mean without",
        100.0 * with / alone
    );
    let reads = reads.load(Ordering::Relaxed);
    let page = page_bytes.load(Ordering::Relaxed) as f64 / consoles as f64;
    let view = view_bytes.load(Ordering::Relaxed) as f64 / reads.max(1) as f64;
    println!(
        "each console: {} reads of the cluster in {open_for:.1} s; the page and a first view \
         {page:.0} bytes, a view {view:.0} bytes: {:.0} bytes in its first 10 s",
        reads / consoles as u64,
        page + 10.0 * view
    );
}

/// Loads what a browser loads first: the page, its CSS and script, and one view of the
/// cluster; returns the bytes of the bodies.
async fn load_page(client: &support::Client, node: &str) -> u64 {
    let mut bytes = 0;
    for path in ["/", "/console/console.css", "/console/console.js", "/console/cluster"] {
        let reply = client.get(&format!("{node}{path}")).await.expect("an answer");
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        bytes += reply.body.len() as u64;
    }
    bytes
}
