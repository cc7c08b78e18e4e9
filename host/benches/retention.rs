//! Retention's cost, measured: BENCH_SECONDS (600) of lean writes into an embedded cluster on
//! disk (a master and two secondaries, each with its own data directory), first keeping
//! everything, then with `RETENTION_BYTES` of 64 MiB (BENCH_RETENTION_MB) and the default
//! 64 MiB segments (BENCH_SEGMENT_MB). The secondaries have no delay. It prints, for each run: writes a second, the write latency (p50, p99,
//! max), p99 in the seconds around each removal, each node's largest disk use against the
//! retention plus one segment, and the process's RSS over the run.
//!
//! `cargo bench --bench retention`. The cluster is pinned to CPU 0 and this load to CPU 1
//! where there are two CPUs (`taskset`). The load is 32 closed-loop writers, `w=2`, with
//! messages of about 100 bytes; every second the nodes' `/health` is read (first seq, disk
//! bytes, entries removed) and the process's RSS from `/proc`.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use replog::state::DEFAULT_SEGMENT_BYTES;
use support::load::{percentile, pin_apart, runtime};
use support::process::{Process, free_ports, replog, rss_kib};

/// One write: when it was answered (since the run began) and how long it took, in µs.
type Sample = (Duration, u64);

fn main() {
    let seconds = support::chance::setting("BENCH_SECONDS").unwrap_or(600);
    let retention_mb = support::chance::setting("BENCH_RETENTION_MB").unwrap_or(64);
    let segment =
        support::chance::setting("BENCH_SEGMENT_MB").map_or(DEFAULT_SEGMENT_BYTES, |mb| mb << 20);
    let runtime = runtime();
    let duration = Duration::from_secs(seconds);
    // BENCH_BASELINE=0 runs with retention only.
    let baseline = support::chance::setting("BENCH_BASELINE") != Some(0);
    let without = baseline.then(|| runtime.block_on(run(duration, None, segment)));
    let with = runtime.block_on(run(duration, Some(retention_mb << 20), segment));
    let Some(without) = without else { return };
    println!(
        "\nwrite p99 with retention {:.2} ms vs {:.2} ms without: {:.1} % (target: within 10 %); \
         in the seconds around removals {:.2} ms ({:.1} %)",
        with.p99,
        without.p99,
        100.0 * with.p99 / without.p99,
        with.p99_removing,
        100.0 * with.p99_removing / without.p99,
    );
}

/// What one run measured.
struct Run {
    p99: f64,
    p99_removing: f64,
}

/// One run of `duration`, keeping `retention` bytes per node (none: everything), in segments
/// of `segment` bytes.
async fn run(duration: Duration, retention: Option<u64>, segment: u64) -> Run {
    let root = std::env::temp_dir().join(format!(
        "replog-bench-retention-{}-{}",
        std::process::id(),
        retention.is_some()
    ));
    let _ = std::fs::remove_dir_all(&root);
    let base = free_ports(3);
    let mut command = replog();
    command.env_remove("IN_MEMORY");
    command.args(["cluster", "--master-port", &base.to_string(), "--num-secondaries", "2"]);
    command.args(["--secondary-delays", "0,0", "--segment-bytes", &segment.to_string()]);
    command.arg("--data-dir").arg(&root);
    if let Some(bytes) = retention {
        command.args(["--retention-bytes", &bytes.to_string()]);
    }
    let mut process = Process::spawn("cluster", command);
    let nodes: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", base + i)).collect();
    for url in &nodes[1..] {
        process.wait_healthy(&format!("{url}/health"));
    }
    process.wait_writable(&nodes[0]);
    pin_apart(process.id());
    match retention {
        Some(bytes) => println!("\nwith RETENTION_BYTES={bytes} ({} MiB)", bytes >> 20),
        None => println!("\nkeeping everything"),
    }

    let client = support::client();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..32 {
        let (client, samples) = (client.clone(), samples.clone());
        let url = format!("{}/messages?log=false", nodes[0]);
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut i = 0u64;
            while started.elapsed() < duration {
                let body =
                    format!(r#"{{"msg":"retention-{w:02}-{i:09} {}","w":2}}"#, "m".repeat(64));
                let sent = Instant::now();
                let reply = client.post(&url, body).await.expect("an answer");
                assert_eq!(reply.status, 201, "{}", reply.text());
                mine.push((started.elapsed(), sent.elapsed().as_micros() as u64));
                i += 1;
            }
            samples.lock().unwrap().extend(mine);
        }));
    }

    // Once a second: each node's disk use and removals, and the process's RSS.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (client, nodes, watching, pid) =
            (client.clone(), nodes.clone(), watching.clone(), process.id());
        tokio::spawn(async move {
            let mut most_disk = vec![0u64; nodes.len()];
            let mut removed_at: Vec<Duration> = Vec::new();
            let mut removed_before = vec![0u64; nodes.len()];
            let mut rss = Vec::new();
            while watching.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for (i, node) in nodes.iter().enumerate() {
                    let Ok(reply) = client.get(&format!("{node}/health")).await else { continue };
                    let health = reply.json();
                    let disk = health["disk_bytes"].as_u64().unwrap_or_default();
                    let removed = health["removed"].as_u64().unwrap_or_default();
                    most_disk[i] = most_disk[i].max(disk);
                    if removed > removed_before[i] {
                        removed_at.push(started.elapsed());
                        removed_before[i] = removed;
                    }
                }
                rss.push((started.elapsed(), rss_kib(pid)));
            }
            (most_disk, removed_at, removed_before, rss)
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    let elapsed = started.elapsed();
    watching.store(false, Ordering::Relaxed);
    let (most_disk, removed_at, removed, rss) = watcher.await.unwrap();

    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let mut all: Vec<u64> = samples.iter().map(|(_, us)| *us).collect();
    all.sort_unstable();
    // Writes answered within a second either side of a second in which a node removed a
    // segment (removals are seen by the once-a-second reading, so the window is that second
    // and the ones beside it).
    let near = |at: Duration| {
        removed_at
            .iter()
            .any(|r| at + Duration::from_secs(2) >= *r && at <= *r + Duration::from_secs(1))
    };
    let mut removing: Vec<u64> =
        samples.iter().filter(|(at, _)| near(*at)).map(|(_, us)| *us).collect();
    removing.sort_unstable();
    println!(
        "{} writes in {:.0} s: {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
    );
    if retention.is_some() {
        println!(
            "seconds with a removal: {} (entries removed per node: {removed:?}); {} writes near \
             them: p99 {:.2} ms, max {:.1} ms",
            removed_at.len(),
            removing.len(),
            percentile(&removing, 0.99),
            percentile(&removing, 1.0),
        );
    }
    let bound = retention.map(|bytes| bytes + segment);
    for (node, most) in nodes.iter().zip(&most_disk) {
        match bound {
            Some(bound) => println!(
                "{node}: most on disk {most} bytes ({:.2} MiB), {:.2} % of the retention plus one \
                 segment ({} MiB)",
                *most as f64 / (1 << 20) as f64,
                100.0 * *most as f64 / bound as f64,
                bound >> 20
            ),
            None => println!("{node}: most on disk {:.1} MiB", *most as f64 / (1 << 20) as f64),
        }
    }
    let eighth = |q: usize| rss.get((rss.len() * q / 8).min(rss.len().saturating_sub(1)));
    let line: Vec<String> = (1..=8)
        .filter_map(eighth)
        .map(|(at, kib)| format!("{:.0} MiB at {:.0} s", *kib as f64 / 1024.0, at.as_secs_f64()))
        .collect();
    println!("RSS of the three nodes' process: {}", line.join(", "));
    drop(process);
    let _ = std::fs::remove_dir_all(&root);
    Run {
        p99: percentile(&all, 0.99),
        p99_removing: if removing.is_empty() { f64::NAN } else { percentile(&removing, 0.99) },
    }
}
