//! Durability: nodes as real processes with data directories, killed with SIGKILL in the
//! middle of writes and started again. Nothing acknowledged may be lost or duplicated, and a
//! restarted node resumes instead of starting over.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::nodes::Cluster;
use support::*;

/// Writers sending `w`s in turn until stopped (or a bound is reached); each returns the
/// writes that were acknowledged, with their sequence numbers.
fn load(
    client: &Client,
    master: &str,
    ws: &'static [u64],
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(u64, String)>>> {
    (0..6)
        .map(|writer| {
            let (client, url, stop) =
                (client.clone(), format!("{master}/messages?log=false"), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let msg = format!("w{writer}-{n}");
                    let body = format!(r#"{{"msg":"{msg}","w":{}}}"#, ws[n % ws.len()]);
                    match client.post(&url, body).await {
                        Ok(reply) if reply.status == 201 => {
                            acked.push((reply.json()["seq"].as_u64().unwrap(), msg));
                        }
                        // Refused or cut off by the kill: not acknowledged, so not checked.
                        Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                acked
            })
        })
        .collect()
}

async fn collect(writers: Vec<tokio::task::JoinHandle<Vec<(u64, String)>>>) -> Vec<(u64, String)> {
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    acked
}

/// Every acknowledged write is in the master's log at its sequence number, exactly once, and
/// every secondary ends up with the master's log.
async fn check(client: &Client, cluster: &Cluster, acked: &[(u64, String)]) {
    let master = messages(client, &cluster.master.url()).await;
    let distinct: std::collections::HashSet<&String> = master.iter().collect();
    assert_eq!(distinct.len(), master.len(), "no message twice");
    for (seq, msg) in acked {
        assert_eq!(master.get(*seq as usize - 1), Some(msg), "acknowledged {msg} at {seq}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for secondary in &cluster.secondaries {
        while messages(client, &secondary.url()).await != master {
            assert!(
                Instant::now() < deadline,
                "{} never caught up:\n{}",
                secondary.name,
                cluster.master.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_killing_the_master_mid_load() {
    let mut cluster = Cluster::new("durability-master", &[]);
    for secondary in &mut cluster.secondaries {
        secondary.start();
    }
    cluster.master.start();
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = load(&client, &cluster.master.url(), &[1, 2, 3], &stop);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.master.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = collect(writers).await;
    assert!(acked.len() > 50, "the load ran: {} writes", acked.len());

    cluster.master.start();
    let output = cluster.master.output();
    assert!(output.contains("log read back"), "{output}");
    check(&client, &cluster, &acked).await;

    // Numbering goes on from the log it read back.
    let len = messages(&client, &cluster.master.url()).await.len() as u64;
    let (status, json, _) =
        post_json(&client, &format!("{}/messages", cluster.master.url()), r#"{"msg":"after"}"#)
            .await;
    assert_eq!((status, json["seq"].as_u64()), (201, Some(len + 1)), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_killed_mid_load_keeps_its_log_and_is_resumed_not_restarted() {
    let mut cluster = Cluster::new("durability-secondary", &["--replication-timeout-ms", "3000"]);
    for secondary in &mut cluster.secondaries {
        secondary.start();
    }
    cluster.master.start();
    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = load(&client, &cluster.master.url(), &[1, 2], &stop);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.secondaries[0].kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let mut restarted = cluster.secondaries[0].spawn();
    restarted.wait_healthy(&format!("{}/health", cluster.secondaries[0].url()));
    let (_, health) = get_json(&client, &format!("{}/health", cluster.secondaries[0].url())).await;
    assert!(health["count"].as_u64().unwrap() > 0, "it read its log back: {health}");
    cluster.secondaries[0].process = Some(restarted);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = collect(writers).await;
    check(&client, &cluster, &acked).await;
    let master_output = cluster.master.output();
    assert!(
        !master_output.contains("no longer holds"),
        "the master resumed from what the secondary kept:\n{master_output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_resumes_pending_replication() {
    let mut cluster = Cluster::new("durability-pending", &[]);
    cluster.secondaries[1].start();
    cluster.master.start();
    let client = client();
    let url = format!("{}/messages?log=false", cluster.master.url());
    for i in 0..5 {
        let (status, json, _) =
            post_json(&client, &url, &format!(r#"{{"msg":"m{i}","w":2}}"#)).await;
        assert_eq!(status, 201, "{json}");
    }
    cluster.master.kill();
    cluster.secondaries[0].start();
    cluster.master.start();
    check(&client, &cluster, &[]).await;
    assert_eq!(
        messages(&client, &cluster.secondaries[0].url()).await,
        ["m0", "m1", "m2", "m3", "m4"]
    );
}

/// A master alone (no secondaries) holding `count` messages, then stopped.
async fn lone_master_with(name: &str, count: usize) -> (Cluster, Client) {
    let mut cluster = Cluster::new(&format!("durability-{name}"), &[]);
    cluster.master.args.retain(|a| !a.starts_with("http://"));
    if let Some(i) = cluster.master.args.iter().position(|a| a == "--secondaries") {
        cluster.master.args.remove(i);
    }
    cluster.master.start();
    let client = client();
    for i in 0..count {
        let url = format!("{}/messages?log=false", cluster.master.url());
        assert_eq!(post_json(&client, &url, &format!(r#"{{"msg":"message {i}"}}"#)).await.0, 201);
    }
    cluster.master.kill();
    (cluster, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_cut_in_half_by_a_crash_is_dropped_and_reported() {
    let (mut cluster, client) = lone_master_with("torn", 10).await;
    let segment = cluster.master.segment();
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(len - 6).unwrap();

    cluster.master.start();
    let output = cluster.master.output();
    assert!(output.contains("cut it off") && output.contains("000000000001.seg"), "{output}");
    let log = messages(&client, &cluster.master.url()).await;
    assert_eq!(log, (0..9).map(|i| format!("message {i}")).collect::<Vec<_>>());
    let url = format!("{}/messages", cluster.master.url());
    let (_, json, _) = post_json(&client, &url, r#"{"msg":"written again"}"#).await;
    assert_eq!(json["seq"], 10, "the torn message's place is taken again: {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_middle_stops_the_node_with_a_clear_message() {
    let (mut cluster, _client) = lone_master_with("flipped", 10).await;
    let segment = cluster.master.segment();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();

    let mut process = cluster.master.spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = process.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a damaged log must stop the node:\n{}",
            process.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let output = process.output();
    assert!(
        output.contains("000000000001.seg") && output.contains("is damaged at byte"),
        "{output}"
    );
    assert!(output.contains("refusing to start"), "{output}");
    assert_eq!(std::fs::read(&segment).unwrap(), bytes, "nothing was cut or rewritten");
}
