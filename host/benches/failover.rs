//! Failover, measured: three `replog serve --role auto` processes on a real etcd (Debian's
//! `etcd-server`), four writers writing with `w=2` to any node (the others forward to the
//! master), and the master killed again and again.
//!
//! `cargo bench --bench failover`. It prints:
//! - the write outage a client sees after `kill -9` of the master (from the last `201` that
//!   arrived before the kill to the first `201`, from any node, to a write sent after it), over
//!   BENCH_FAILOVERS kills (default 20): median and worst;
//! - the same after SIGTERM (the master resigns: its key deleted, its lease revoked), over
//!   BENCH_RESIGNS (default 5);
//! - the writes acknowledged, and how many of them are missing from, or out of place in, the
//!   final log of any node (it fails if one is);
//! - first, lean `POST /messages` throughput (16 keep-alive connections to the master,
//!   BENCH_SECONDS each, default 5) on a fresh elected cluster and a fresh cluster of fixed
//!   roles, loaded in turn (elected, fixed, fixed, elected).
//!
//! Every process is started here on loopback ports and stopped by its PID; the data
//! directories are temporary. Load and nodes share this machine's cores: the throughput
//! figures compare the two clusters with each other, measured alike, not with other machines.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::elected::{Cluster, Member, Writers, assert_converged};

fn main() {
    let kills = support::chance::setting("BENCH_FAILOVERS").unwrap_or(20) as usize;
    let resigns = support::chance::setting("BENCH_RESIGNS").unwrap_or(5) as usize;
    let seconds = support::chance::setting("BENCH_SECONDS").unwrap_or(5);
    let Some(mut cluster) = Cluster::start("bench-failover") else {
        eprintln!("etcd is not installed (Debian's etcd-server): nothing measured");
        return;
    };
    // Both clusters up and fresh, loaded one at a time, in the order elected, fixed, fixed,
    // elected (a log that grows slows both alike; this order cancels that out).
    let master = cluster.members[cluster.master(Duration::from_secs(30), None)].url();
    let mut fixed = support::nodes::Cluster::new("bench-fixed", &[]);
    for node in &mut fixed.secondaries {
        node.start();
    }
    fixed.master.start();
    let (mut elected, mut fixed_rate) = (Vec::new(), Vec::new());
    elected.push(throughput(&master, seconds));
    fixed_rate.push(throughput(&fixed.master.url(), seconds));
    fixed_rate.push(throughput(&fixed.master.url(), seconds));
    elected.push(throughput(&master, seconds));
    let rates = |r: &[f64]| r.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    let sum = |r: &[f64]| r.iter().sum::<f64>();
    println!(
        "lean POST /messages, 16 connections, {seconds} s each, fresh clusters in turn: elected {}/s, fixed \
         roles {}/s ({:+.1} % in all)",
        rates(&elected),
        rates(&fixed_rate),
        (sum(&elected) / sum(&fixed_rate) - 1.0) * 100.0
    );
    let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
    let writers = Writers::start(urls, 10_000_000);

    let mut killed = Vec::new();
    for _ in 0..kills {
        killed.push(outage(&mut cluster, &writers, Stop::Kill));
    }
    let mut resigned = Vec::new();
    for _ in 0..resigns {
        resigned.push(outage(&mut cluster, &writers, Stop::Term));
    }
    let acked = writers.finish();
    assert_converged(&cluster, &acked);
    println!("writes acknowledged with w=2 (a majority of 3): {}", acked.len());
    println!("  missing, duplicated or out of place on any node afterwards: 0 (checked)");
    report("write outage after kill -9 of the master", &mut killed);
    report("write outage after SIGTERM of the master (it resigns)", &mut resigned);
}

/// How the master is stopped.
#[derive(Clone, Copy)]
enum Stop {
    Kill,
    Term,
}

/// Stops the master as `stop` says once the writers write steadily, and returns how long no
/// write was acknowledged; then starts the stopped node again and waits until it follows.
fn outage(cluster: &mut Cluster, writers: &Writers, stop: Stop) -> Duration {
    writers.wait_for(writers.acked() + 200, Duration::from_secs(60), cluster);
    let master = cluster.master(Duration::from_secs(30), None);
    let stopped_at = Instant::now();
    let process = cluster.members[master].process.take().expect("running");
    let mut terminated = match stop {
        Stop::Kill => {
            process.kill();
            None
        }
        Stop::Term => {
            // SAFETY: a signal to a child process this benchmark started and still owns.
            unsafe { libc::kill(process.id() as libc::pid_t, libc::SIGTERM) };
            Some(process)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let first_after = loop {
        if let Some(at) = writers.first_ack_sent_after(stopped_at) {
            break at;
        }
        assert!(Instant::now() < deadline, "no write acknowledged within 60 s of the stop");
        std::thread::sleep(Duration::from_millis(5));
    };
    let last_before = writers.last_ack_between(stopped_at - Duration::from_secs(60), stopped_at);
    let outage = first_after - last_before.expect("writes before the stop");
    if let Some(process) = &mut terminated {
        let deadline = Instant::now() + Duration::from_secs(30);
        while process.try_wait().is_none() {
            assert!(Instant::now() < deadline, "the master did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(terminated);
    cluster.members[master].start();
    cluster.members[master].wait_secondary(cluster);
    outage
}

fn report(what: &str, outages: &mut [Duration]) {
    if outages.is_empty() {
        return;
    }
    outages.sort();
    let ms = |d: Duration| d.as_millis();
    let all: Vec<String> = outages.iter().map(|d| ms(*d).to_string()).collect();
    println!(
        "{what}, {} times: median {} ms, worst {} ms (all, ms: {})",
        outages.len(),
        ms(outages[outages.len() / 2]),
        ms(outages[outages.len() - 1]),
        all.join(" ")
    );
}

/// Lean writes (a short message, the default write concern, `log=false`: no log in the
/// answer) per second to `master` over 16 keep-alive connections for `seconds`.
fn throughput(master: &str, seconds: u64) -> f64 {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let url = format!("{master}/messages?log=false");
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let (client, url, done) = (support::client(), url.clone(), done.clone());
                tokio::spawn(async move {
                    // Every message unique, so the final check can tell a duplicate.
                    for i in 0.. {
                        if Instant::now() >= until {
                            break;
                        }
                        let body = format!(r#"{{"msg":"lean-{run}-{task}-{i}"}}"#);
                        if let Ok(reply) = client.post(&url, body).await
                            && reply.status == 201
                        {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
