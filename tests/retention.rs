//! Retention, on real processes with data directories and small segments: the log keeps a
//! bounded number of messages, bytes or an age; a reader below the start is told where it is;
//! a secondary stopped past the retention is brought to its master's start; the start survives
//! a restart; and a crash at each step of a removal (the process stopped there by a failpoint,
//! then `kill -9`) leaves a log that starts at the old or the new start, whole.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::nodes::{Cluster, Node};
use support::*;

/// Small segments (the unit retention removes), so that a few thousand messages make many.
const SEGMENT: &str = "4096";

/// What a node's `/health` says of its log: first `seq`, last `seq`, bytes on disk, removed.
async fn kept(client: &Client, node: &str) -> (u64, u64, u64, u64) {
    let (status, health) = get_json(client, &format!("{node}/health")).await;
    assert_eq!(status, 200, "{health}");
    let number = |name: &str| health[name].as_u64().unwrap_or_else(|| panic!("{name}: {health}"));
    (number("first_seq"), number("count"), number("disk_bytes"), number("removed"))
}

/// Writes `count` messages named `prefix-N` with concern `w`, each with its own idempotency
/// key; returns what was acknowledged, by `seq`.
async fn write(
    client: &Client,
    master: &str,
    prefix: &str,
    count: usize,
    w: u64,
) -> BTreeMap<u64, String> {
    let mut acked = BTreeMap::new();
    let url = format!("{master}/messages?log=false");
    for n in 0..count {
        let msg = format!("{prefix}-{n:05} {}", "r".repeat(100));
        let body = format!(r#"{{"msg":"{msg}","w":{w},"id":"{prefix}-{n}"}}"#);
        let reply = client.post(&url, body).await.unwrap_or_else(|e| panic!("POST: {e}"));
        assert_eq!(reply.status, 201, "{}", reply.text());
        acked.insert(reply.json()["seq"].as_u64().unwrap(), msg);
    }
    acked
}

/// The node's log from its start, by `seq`.
async fn log_of(client: &Client, node: &str) -> BTreeMap<u64, String> {
    let (status, page) = get_json(client, &format!("{node}/messages")).await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    let next = page["next"].as_u64().unwrap();
    let first = next - messages.len() as u64;
    (first..).zip(messages.iter().map(|m| m.as_str().unwrap().to_owned())).collect()
}

/// Every acknowledged write the node still holds (at or after its start) is there, at its seq;
/// the log has no hole.
fn holds_what_it_kept(log: &BTreeMap<u64, String>, acked: &BTreeMap<u64, String>, node: &str) {
    let first = *log.keys().next().unwrap_or(&u64::MAX);
    for (seq, msg) in acked.range(first..) {
        assert_eq!(log.get(seq), Some(msg), "{node}: acknowledged seq {seq} lost or replaced");
    }
    let seqs: Vec<u64> = log.keys().copied().collect();
    assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1), "{node}: a hole in the log");
}

/// A master and two secondaries, each with small segments and `retention`, started.
fn started(name: &str, retention: [&str; 2]) -> Cluster {
    let mut cluster = Cluster::new(name, &[]);
    for node in std::iter::once(&mut cluster.master).chain(&mut cluster.secondaries) {
        let args = ["--segment-bytes", SEGMENT].into_iter().chain(retention);
        node.args.extend(args.map(str::to_owned));
    }
    for node in &mut cluster.secondaries {
        node.start();
    }
    cluster.master.start();
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_keeps_a_bounded_log_and_a_reader_below_it_is_told_where_it_starts() {
    let client = client();
    let mut cluster = started("retention-messages", ["--retention-messages", "300"]);
    let master = cluster.master.url();
    let acked = write(&client, &master, "m", 1_500, 3).await;
    // Every node removes what it may on its own, as the commit point reaches it.
    for node in cluster.nodes() {
        let url = node.url();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (first, last, disk, removed) = kept(&client, &url).await;
            assert_eq!(last, 1_500, "{}: numbers never restart", node.name);
            assert!(last + 1 - first >= 300, "{}: at least 300 kept, from {first}", node.name);
            // Less than 300 messages and one segment of them more: each is ~150 bytes on disk.
            if first > 1 && last + 1 - first < 300 + 4096 / 100 {
                assert_eq!(removed, first - 1, "{}", node.name);
                assert!(disk < (300 + 2 * 4096 / 100) * 160, "{}: {disk} bytes", node.name);
                break;
            }
            assert!(Instant::now() < deadline, "{}: keeps {first}..={last}", node.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        holds_what_it_kept(&log_of(&client, &url).await, &acked, &node.name);
    }
    let (first, ..) = kept(&client, &master).await;

    // A reader below the start: 410 with the first seq, for a page, a long-poll and a stream.
    for query in ["from=1", "from=1&wait=100"] {
        let reply = client.get(&format!("{master}/messages?{query}")).await.unwrap();
        assert_eq!(reply.status, 410, "{query}: {}", reply.text());
        assert_eq!(reply.json()["first_seq"], first, "{query}");
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("seq 1 is no longer held"), "{error}");
    }
    let stream = [("accept", "text/event-stream"), ("last-event-id", "5")];
    let reply = client.get_with(&format!("{master}/messages"), &stream).await.unwrap();
    assert_eq!(reply.status, 410, "a stream resuming below the start: {}", reply.text());
    let reply = client.get(&format!("{master}/messages?from={first}&limit=1")).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["messages"][0], Value::from(acked[&first].clone()));

    // The client command: from the start by default; below it, told plainly.
    let secondary = cluster.secondaries[0].url();
    let out = replog().args(["tail", &secondary, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (their_first, ..) = kept(&client, &secondary).await;
    assert_eq!(printed.first().map(|l| l["seq"].clone()), Some(Value::from(their_first)));
    assert_eq!(printed.last().map(|l| l["seq"].clone()), Some(Value::from(1_500)));
    let out = replog().args(["tail", &secondary, "--from", "1"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && out.stdout.is_empty(), "{said}");
    assert!(
        said.contains("seq 1 is no longer held by any node")
            && said.contains(&format!("--from {their_first}")),
        "{said}"
    );

    // The key of a removed write is forgotten with it: its retry is a new write. A kept one's
    // retry is answered with the original.
    let retry = |n: usize| {
        let msg = format!("m-{n:05} {}", "r".repeat(100));
        format!(r#"{{"msg":"{msg}","w":3,"id":"m-{n}"}}"#)
    };
    let url = format!("{master}/messages?log=false");
    let (status, again, _) = post_json(&client, &url, &retry(1_499)).await;
    assert_eq!((status, again["seq"].as_u64()), (200, Some(1_500)), "{again}");
    assert_eq!(again["duplicate"], true, "{again}");
    let (status, new, _) = post_json(&client, &url, &retry(0)).await;
    assert_eq!((status, new["seq"].as_u64()), (201, Some(1_501)), "a new write: {new}");

    let (_, metrics) = get_text(&client, &format!("{master}/metrics")).await;
    let sample = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name}:\n{metrics}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let (first, _, disk, removed) = kept(&client, &master).await;
    assert_eq!(sample("replog_log_first_seq"), first);
    assert_eq!(sample("replog_log_retention_removed_entries_total"), removed);
    assert!(sample("replog_log_retention_removed_segments_total") > 0);
    assert!(sample("replog_log_disk_bytes") > 0 && disk > 0);

    // `replog status` shows each node's first seq, its bytes on disk and what was removed.
    let out = replog().args(["status", &master, "--timeout-ms", "3000"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header[..4], ["NODE", "ROLE", "FIRST", "COUNT"], "{text}");
    for node in cluster.nodes() {
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with(&node.url()))
            .unwrap_or_else(|| panic!("{}:\n{text}", node.name))
            .split_whitespace()
            .collect();
        let (first, ..) = kept(&client, &node.url()).await;
        assert_eq!(row[2], first.to_string(), "{text}");
        assert!(row.iter().any(|cell| cell.ends_with("KiB")), "{text}");
    }

    // The start survives a restart.
    let (first, last, ..) = kept(&client, &master).await;
    cluster.master.kill();
    cluster.master.start();
    let (again_first, again_last, ..) = kept(&client, &master).await;
    assert_eq!(again_last, last);
    assert!(again_first == first, "the master started again at {again_first}, not {first}");
}

/// `GET url` as text.
async fn get_text(client: &Client, url: &str) -> (u16, String) {
    let reply = client.get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    (reply.status, reply.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_stopped_past_the_retention_is_brought_to_its_masters_start() {
    let client = client();
    let mut cluster = started("retention-catch-up", ["--retention-bytes", "16384"]);
    let master = cluster.master.url();
    let mut acked = write(&client, &master, "before", 300, 3).await;
    let behind_url = cluster.secondaries[1].url();
    let (_, left_at, ..) = kept(&client, &behind_url).await;
    cluster.secondaries[1].kill();
    acked.extend(write(&client, &master, "while-down", 1_200, 2).await);
    let (first, last, ..) = kept(&client, &master).await;
    assert!(first > left_at + 1, "the master no longer holds what the secondary lacks: {first}");
    cluster.secondaries[1].start();
    let behind = &cluster.secondaries[1];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if kept(&client, &behind_url).await.1 == last {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up:\n{}", behind.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let theirs = log_of(&client, &behind_url).await;
    let ours = log_of(&client, &master).await;
    holds_what_it_kept(&theirs, &acked, "the secondary brought to the start");
    for (seq, msg) in &theirs {
        assert!(ours.get(seq).is_none_or(|m| m == msg), "seq {seq} differs from the master's");
    }
    assert!(
        behind.output().contains("begins there too"),
        "it says so in its log:\n{}",
        behind.output()
    );
    // It goes on replicating as any other.
    acked.extend(write(&client, &master, "after", 50, 3).await);
    let theirs = log_of(&client, &behind_url).await;
    holds_what_it_kept(&theirs, &acked, "the secondary after");
    assert_eq!(theirs.keys().last(), acked.keys().last());

    // A master that lost its disk recovers from its replicas, which start past 1: it begins
    // its log where the replica it fetches from starts, and loses nothing they kept.
    cluster.master.wipe();
    cluster.master.start();
    let recovered = log_of(&client, &master).await;
    assert!(*recovered.keys().next().unwrap() > 1, "it starts where its replicas do");
    holds_what_it_kept(&recovered, &acked, "the recovered master");
    assert_eq!(recovered.keys().last(), acked.keys().last());
    assert!(
        cluster.master.output().contains("this log begins there too"),
        "{}",
        cluster.master.output()
    );
    acked.extend(write(&client, &master, "recovered", 20, 3).await);
    for node in cluster.nodes() {
        holds_what_it_kept(&log_of(&client, &node.url()).await, &acked, &node.name);
    }
}

/// The seq the log started at when `output`'s node read its directory back.
fn read_back_start(output: &str) -> u64 {
    let line = output.lines().find(|line| line.contains("log read back")).expect(output);
    let start = line.split_whitespace().find_map(|word| word.strip_prefix("start="));
    start.and_then(|start| start.parse().ok()).expect(line)
}

/// A master alone on `port` (no secondaries: it commits what it holds), with small segments
/// and `retention`, stopped at `failpoint` during its first removal.
fn alone(
    root: &std::path::Path,
    port: u16,
    retention: [&str; 2],
    failpoint: Option<&str>,
) -> (Node, Process) {
    let args = ["serve", "--role", "master", "--secondaries", "", "--segment-bytes", SEGMENT];
    let mut node = Node::new(root, "alone", port, &args);
    node.args.extend(retention.map(str::to_owned));
    let mut command = replog();
    command.env_remove("IN_MEMORY").args(&node.args).arg("--data-dir").arg(&node.data);
    if let Some(failpoint) = failpoint {
        command.env("REPLOG_FAILPOINT", failpoint);
    }
    let process = Process::spawn("alone", command);
    (node, process)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_of_a_removal_leaves_the_old_or_the_new_start_whole() {
    let client = client();
    for failpoint in ["retention-before-delete", "retention-after-delete", "retention-after-sync"] {
        let root =
            std::env::temp_dir().join(format!("replog-crash-{failpoint}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let port = free_ports(1);
        let (node, mut process) =
            alone(&root, port, ["--retention-messages", "100"], Some(failpoint));
        let url = node.url();
        process.wait_writable(&url);
        let post = format!("{url}/messages?log=false");
        let mut acked = BTreeMap::new();
        let reached = format!("REPLOG_FAILPOINT {failpoint} reached");
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in 0..5_000 {
            if process.output().contains(&reached) {
                break;
            }
            assert!(Instant::now() < deadline, "{failpoint} never reached:\n{}", process.output());
            let msg = format!("c-{n:05} {}", "c".repeat(100));
            let body = format!(r#"{{"msg":"{msg}"}}"#);
            // Once the writer stops, writes wait: each is bounded, and not acknowledged.
            let reply =
                tokio::time::timeout(Duration::from_secs(2), client.post(&post, body)).await;
            if let Ok(Ok(reply)) = reply
                && reply.status == 201
            {
                acked.insert(reply.json()["seq"].as_u64().unwrap(), msg);
            }
        }
        assert!(process.output().contains(&reached), "{failpoint}:\n{}", process.output());
        process.kill(); // SIGKILL, stopped at the failpoint
        let (_, mut again) = alone(&root, port, ["--retention-messages", "100"], None);
        // The same directory, the same port: started again without the failpoint.
        again.wait_writable(&url);
        // The first removal stopped: before the file went, the log reads back from the old
        // start; once it went, from the new one.
        let read_back = read_back_start(&again.output());
        if failpoint == "retention-before-delete" {
            assert_eq!(read_back, 1, "{failpoint}: the old start");
        } else {
            assert!(read_back > 1, "{failpoint}: the new start ({read_back})");
        }
        // The restarted master commits what it holds at once, so its retention may finish the
        // removal the crash stopped: wait for the start to stand still, never below the start
        // read back.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (first, last, log) = loop {
            let (first, last, ..) = kept(&client, &url).await;
            let log = log_of(&client, &url).await;
            if log.keys().next() == Some(&first) && kept(&client, &url).await.0 == first {
                break (first, last, log);
            }
            assert!(Instant::now() < deadline, "{failpoint}: the start keeps moving");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(first >= read_back, "{failpoint}: {first} below the start read back");
        assert_eq!(log.keys().last().copied(), Some(last), "{failpoint}");
        assert!(last >= *acked.keys().last().unwrap(), "{failpoint}: acknowledged writes lost");
        holds_what_it_kept(&log, &acked, failpoint);
        let (status, next, _) = post_json(&client, &post, r#"{"msg":"after the crash"}"#).await;
        assert_eq!((status, next["seq"].as_u64()), (201, Some(last + 1)), "{failpoint}: {next}");
        drop(again);
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_older_than_the_age_go_even_while_no_one_writes() {
    let client = client();
    let root = std::env::temp_dir().join(format!("replog-age-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let port = free_ports(1);
    let (node, mut process) = alone(&root, port, ["--retention-ms", "1500"], None);
    let url = node.url();
    process.wait_writable(&url);
    let acked = write(&client, &url, "aged", 200, 1).await;
    let written = Instant::now();
    let (first, ..) = kept(&client, &url).await;
    assert_eq!(first, 1, "nothing older than 1.5 s yet");
    // Nothing is written from here: the age alone removes every segment but the last.
    let deadline = Instant::now() + Duration::from_secs(30);
    let segments = node.data.join("log");
    while std::fs::read_dir(&segments).unwrap().count() > 1 {
        assert!(Instant::now() < deadline, "old segments stay:\n{}", process.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written.elapsed() >= Duration::from_millis(1500), "none went before its age");
    let (first, last, _, removed) = kept(&client, &url).await;
    assert!(first > 150 && last == 200 && removed == first - 1, "{first}..={last}, {removed}");
    holds_what_it_kept(&log_of(&client, &url).await, &acked, "aged");
    drop(process);
    let _ = std::fs::remove_dir_all(&root);
}
