//! What the benchmarks share: pinning a process to CPUs, and closed-loop writers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Sets the CPU affinity of every thread of `pid` (`taskset -a`).
pub fn pin(pid: u32, cpus: &str) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-pc", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status();
    assert!(status.is_ok_and(|s| s.success()), "taskset -a -pc {cpus} {pid}");
}

/// Pins the nodes' process `nodes` to CPU 0 and this load to CPU 1 where there are two CPUs
/// or more, so that the load does not take the nodes' CPU, and says which it did.
pub fn pin_apart(nodes: u32) {
    // The CPUs online, not those this process may use: a load pinned once already may use one.
    // SAFETY: sysconf reads a system setting and has no preconditions.
    let cpus = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(1);
    if cpus >= 2 {
        pin(nodes, "0");
        pin(std::process::id(), "1");
        println!("pinned: the nodes on CPU 0, this load on CPU 1 (of {cpus})");
    } else {
        println!("one CPU: nodes and load share it");
    }
}

/// The load's runtime: two threads (on the one CPU it is pinned to).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Writes a second that 32 writers get, each sending its next lean `w=2` write at its last's
/// answer, for `duration`.
pub async fn closed_loop(client: &super::Client, master: &str, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..32 {
        let (client, done) = (client.clone(), done.clone());
        let url = format!("{master}/messages?log=false");
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while started.elapsed() < duration {
                let body = format!(r#"{{"msg":"loop-{w}-{i}","w":2}}"#);
                let reply = client.post(&url, body).await.expect("an answer");
                assert_eq!(reply.status, 201, "{}", reply.text());
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// The `q` quantile of `sorted` microseconds, in milliseconds.
pub fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[at] as f64 / 1000.0
}
