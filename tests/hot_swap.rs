//! Hot swap in a running `replog cluster`: new component versions land in the components
//! folder (copied over the old file, or renamed into place) while clients keep writing and
//! reading, and the process is neither rebuilt nor restarted.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::variant::{variant_dir, variant_version};
use support::*;

/// Load bounds: each client stops at whichever comes first.
const LOAD_REQUESTS_PER_CLIENT: usize = 50_000;
const LOAD_SECONDS: u64 = 30;

#[derive(Default)]
struct Tally {
    acked: Vec<(u64, String)>,
    failed: Vec<String>,
    reads: usize,
}

async fn version(client: &Client, node: &str) -> Option<String> {
    let reply = client.get(&format!("{node}/health")).await.ok()?;
    let health: serde_json::Value = serde_json::from_slice(&reply.body).ok()?;
    health["component"]["version"].as_str().map(str::to_owned)
}

/// Puts `bytes` at `file` the way `cp` does (rewriting the file in place) or the way `mv`
/// does (renaming a finished file over it).
fn install(file: &Path, bytes: &[u8], by_rename: bool) {
    if by_rename {
        let staging = file.with_extension("incoming");
        std::fs::write(&staging, bytes).unwrap();
        std::fs::rename(&staging, file).unwrap();
    } else {
        std::fs::write(file, bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_swap_under_load_without_losing_a_request_or_a_message() {
    let dir = std::env::temp_dir().join(format!("replog-hot-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let regular_dir = repo_root().join("target/components/wasm32-wasip2/release");
    let files = ["replog_master.wasm", "replog_secondary.wasm"];
    for file in files {
        std::fs::copy(regular_dir.join(file), dir.join(file)).unwrap();
    }
    let regular: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(dir.join(f)).unwrap()).collect();
    let variant: Vec<Vec<u8>> =
        files.iter().map(|f| std::fs::read(variant_dir().join(f)).unwrap()).collect();

    let cluster = Cluster::start(&[0, 0], &["--components", dir.to_str().unwrap()]);
    let client = client();
    let regular_version = version(&client, &cluster.master).await.unwrap();
    let swapped_version = variant_version(&regular_version);

    // Swaps, each timed from the file landing to the first request the new version answers.
    // The first, before any load, brings a version this process has never compiled; under
    // load, a new secondary version, then versions seen before (kept compiled).
    let mut timings = Vec::new();
    let mut swap = async |which: usize, to_variant: bool, by_rename: bool, what: &'static str| {
        let node = if which == 0 { &cluster.master } else { &cluster.secondaries[0] };
        let (bytes, expected) = if to_variant {
            (&variant[which], &swapped_version)
        } else {
            (&regular[which], &regular_version)
        };
        install(&dir.join(files[which]), bytes, by_rename);
        let landed = Instant::now();
        while version(&client, node).await.as_ref() != Some(expected) {
            assert!(
                landed.elapsed() < Duration::from_secs(10),
                "{what} never served:\n{}",
                cluster.process.output()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        timings.push((what, landed.elapsed()));
    };
    swap(0, true, false, "master, new version, idle, cp").await;

    // Clients: writers on the master, readers on every node, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(LOAD_SECONDS);
    let mut clients = Vec::new();
    for writer in 0..6 {
        let (client, master, stop) = (client.clone(), cluster.master.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for n in 0..LOAD_REQUESTS_PER_CLIENT {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                let msg = format!("w{writer}-{n}");
                let url = format!("{master}/messages?log=false");
                let body = format!(r#"{{"msg":"{msg}"}}"#);
                match client.post(&url, body).await {
                    Ok(reply) if reply.status == 201 => {
                        tally.acked.push((reply.json()["seq"].as_u64().unwrap(), msg));
                    }
                    Ok(reply) => {
                        tally.failed.push(format!("POST {}: {}", reply.status, reply.text()))
                    }
                    Err(e) => tally.failed.push(format!("POST: {e}")),
                }
            }
            tally
        }));
    }
    for reader in 0..3 {
        let (client, stop) = (client.clone(), stop.clone());
        let node = cluster.all()[reader].to_owned();
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for _ in 0..LOAD_REQUESTS_PER_CLIENT {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                match client.get(&format!("{node}/messages?from=1&limit=50")).await {
                    Ok(reply) if reply.status == 200 => tally.reads += 1,
                    Ok(reply) => tally.failed.push(format!("GET {node}: {}", reply.status)),
                    Err(e) => tally.failed.push(format!("GET {node}: {e}")),
                }
            }
            tally
        }));
    }

    for (which, to_variant, by_rename, what) in [
        (0, false, true, "master, seen before, under load, mv"),
        (1, true, false, "secondaries, new version, under load, cp"),
        (0, true, false, "master, seen before, under load, cp"),
        (1, false, true, "secondaries, seen before, under load, mv"),
        (0, false, true, "master, seen before, under load, mv"),
    ] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        swap(which, to_variant, by_rename, what).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for client in clients {
        let tally = client.await.unwrap();
        total.acked.extend(tally.acked);
        total.failed.extend(tally.failed);
        total.reads += tally.reads;
    }
    assert!(
        total.failed.is_empty(),
        "{} requests failed during swaps: {:?}",
        total.failed.len(),
        &total.failed[..total.failed.len().min(5)]
    );
    assert!(
        total.acked.len() > 100 && total.reads > 100,
        "the load ran: {} writes, {} reads",
        total.acked.len(),
        total.reads
    );

    // Every acknowledged write is in every node's log exactly once, in the master's order.
    let master_log = messages(&client, &cluster.master).await;
    let unique: HashSet<&String> = master_log.iter().collect();
    assert_eq!(unique.len(), master_log.len(), "no message twice");
    for (seq, msg) in &total.acked {
        assert_eq!(master_log.get(*seq as usize - 1), Some(msg), "acknowledged {msg} at seq {seq}");
    }
    assert_eq!(master_log.len(), total.acked.len(), "nothing but acknowledged writes");
    for secondary in &cluster.secondaries {
        assert_eq!(
            messages(&client, secondary).await,
            master_log,
            "{secondary} holds the master's log"
        );
    }
    assert_eq!(version(&client, &cluster.master).await.unwrap(), regular_version);
    assert_eq!(version(&client, &cluster.secondaries[1]).await.unwrap(), regular_version);

    eprintln!("hot swap: file landing to first request answered by the new version");
    for (what, took) in &timings {
        eprintln!("  {:>5} ms  {what}", took.as_millis());
    }
    eprintln!(
        "  during the swaps under load: {} writes and {} reads, {} failed",
        total.acked.len(),
        total.reads,
        total.failed.len()
    );
    let log = cluster.process.output();
    assert!(log.contains("component swapped in"), "the swaps are logged:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
