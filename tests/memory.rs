//! Nobody without the cluster secret can make a node hold more than a bounded amount of memory:
//! floods of large bodies, unauthenticated or forged, against a secondary and a master (every
//! node a process of its own, measured from `/proc`), while the cluster's own writes go on; and
//! after a burst of large bodies, proven or not, the memory goes back.
//!
//! The bound each node must keep (README, "Memory"): its peak RSS during a flood stays below its
//! idle RSS plus twice `BODY_BUDGET_BYTES` (a body held by the host, and its copy in the
//! instance that reads it) plus 128 KiB for each connection (hyper's read and write buffers);
//! 5 s after the flood its RSS is back within twice its idle figure.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::nodes::Cluster;
use support::{SECRET, blocking_get};

const MIB: usize = 1 << 20;
/// The nodes' default budget for bodies (both roles: 32 MiB, or twice a 16 MiB body limit).
const BUDGET: usize = 32 * MIB;
/// What besides the bodies a flood may make a node hold: 128 KiB of buffers for each of its
/// connections and each connection draining a refused body, and the allocator's slack.
const BUFFERS: usize = 2 * FLOOD * 128 * 1024 + 8 * MIB;
/// Concurrent connections of each flood.
const FLOOD: usize = 64;

/// Resident and peak resident memory of process `pid`, in bytes.
fn memory(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Makes the kernel count the peak from now on (`VmHWM` reset to the current RSS).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

/// How a flood's request sends its body.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// With a `Content-Length`, as fast as it goes.
    Announced(usize),
    /// Chunked, without a length.
    Chunked(usize),
    /// With a `Content-Length`, 64 KiB every 100 ms.
    Slow(usize),
}

/// One request of a flood on a connection of its own; the status it was answered with.
fn flood_one(
    port: u16,
    path: &str,
    authorization: Option<&str>,
    body: Body,
) -> Result<u16, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    if let Some(authorization) = authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    match body {
        Body::Announced(n) | Body::Slow(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        Body::Chunked(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let chunk = vec![b'x'; 64 * 1024];
    let (Body::Announced(n) | Body::Chunked(n) | Body::Slow(n)) = body;
    let mut sent = 0;
    // The node may answer before the body is sent whole (and then reads on and drops it, or
    // closes): a failed write ends the sending, and the answer is read all the same.
    while sent < n {
        let piece = &chunk[..chunk.len().min(n - sent)];
        let written = match body {
            Body::Chunked(_) => stream
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .and_then(|()| stream.write_all(piece))
                .and_then(|()| stream.write_all(b"\r\n")),
            _ => stream.write_all(piece),
        };
        if written.is_err() {
            break;
        }
        sent += piece.len();
        if let Body::Slow(_) = body {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if let (Body::Chunked(_), true) = (body, sent == n) {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).map_err(|e| format!("no answer after {sent} bytes: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("answer {text:?}"))
}

/// A flood of requests, all at once; the statuses they were answered with.
fn flood(requests: Vec<(u16, String, Option<String>, Body)>) -> Vec<Result<u16, String>> {
    let threads: Vec<_> = requests
        .into_iter()
        .map(|(port, path, authorization, body)| {
            std::thread::spawn(move || flood_one(port, &path, authorization.as_deref(), body))
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// A well-formed, timely proof whose signature is wrong: it can be refused only once the
/// body is in.
fn forged() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("Replog-HMAC-SHA256 t={},sig={}", now.as_millis(), "ab".repeat(32))
}

/// Writes with `w=3` through the master, one after another, until `stop`; each answer's status.
fn writer(master: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let mut statuses = Vec::new();
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(300) {
            let body = format!(r#"{{"msg":"during the flood {}","w":3}}"#, statuses.len());
            statuses.push(post(&master, &body));
            std::thread::sleep(Duration::from_millis(20));
        }
        statuses
    })
}

/// A write's status, on a connection of its own, waiting as long as a write concern may take.
fn post(base: &str, body: &str) -> u16 {
    let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let request = format!(
        "POST /messages?log=false HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Runs `requests` against the node of `pid` while the writer writes; checks every answer is
/// one of `allowed`, the node's peak RSS, its RSS 5 s later, and that it holds no room for
/// bodies any more (`port` serves its metrics).
fn survive(
    what: &str,
    (pid, port): (u32, u16),
    idle: usize,
    requests: Vec<(u16, String, Option<String>, Body)>,
    allowed: &[u16],
    master: &str,
) {
    reset_peak(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(master.to_owned(), stop.clone());
    let started = Instant::now();
    let answers = flood(requests);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let writes = writes.join().unwrap();
    let (_, peak) = memory(pid);
    let mut counts = std::collections::BTreeMap::new();
    for answer in &answers {
        *counts.entry(answer.clone().map_err(|_| "no answer")).or_insert(0) += 1;
    }
    println!(
        "{what}: {} requests in {took:.1?}, answers {counts:?}; peak RSS {} MiB (idle {} MiB); \
         {} w=3 writes meanwhile",
        answers.len(),
        peak / MIB,
        idle / MIB,
        writes.len()
    );
    for answer in &answers {
        match answer {
            Ok(status) if allowed.contains(status) => {}
            other => panic!("{what}: answered {other:?}, expected one of {allowed:?}"),
        }
    }
    assert!(!writes.is_empty(), "{what}: no write was made during the flood");
    assert!(writes.iter().all(|&s| s == 201), "{what}: writes during the flood: {writes:?}");
    let bound = idle + 2 * BUDGET + BUFFERS;
    assert!(peak < bound, "{what}: peak RSS {peak} over the bound {bound}");
    // Memory given back: within twice the idle figure, 5 s after the flood.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (rss, _) = memory(pid);
        if rss <= 2 * idle {
            println!("{what}: RSS back to {} MiB", rss / MIB);
            break;
        }
        assert!(Instant::now() < deadline, "{what}: RSS still {rss} 5 s after (idle {idle})");
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = |line: &str| line.strip_prefix("replog_http_body_bytes_held ").map(str::to_owned);
    let (status, metrics) = blocking_get(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
    assert_eq!(status, 200);
    assert_eq!(metrics.lines().find_map(held).as_deref(), Some("0"), "{what}: room still held");
}

#[test]
fn floods_of_large_bodies_without_the_secret_leave_memory_bounded_and_writes_going() {
    let mut cluster = Cluster::new("memory", &[]);
    for node in &mut cluster.secondaries {
        node.start();
    }
    cluster.master.start();
    let master = cluster.master.url();
    // Warm: some writes, so that the idle figure is that of a node that has served.
    for i in 0..50 {
        assert_eq!(post(&master, &format!(r#"{{"msg":"warm {i}","w":3}}"#)), 201);
    }
    let secondary = &cluster.secondaries[0];
    let secondary_pid = secondary.process.as_ref().unwrap().id();
    let master_pid = cluster.master.process.as_ref().unwrap().id();
    std::thread::sleep(Duration::from_secs(2));
    let (secondary_idle, _) = memory(secondary_pid);
    let (master_idle, _) = memory(master_pid);
    let (s, m) = (secondary.port, cluster.master.port);
    let replicate = || "/replicate".to_owned();

    // Without any proof: refused before the body is read.
    let unproven = (0..FLOOD).map(|_| (s, replicate(), None, Body::Announced(8 * MIB))).collect();
    survive(
        "secondary, unauthenticated",
        (secondary_pid, s),
        secondary_idle,
        unproven,
        &[401],
        &master,
    );
    let unproven = (0..FLOOD)
        .map(|i| {
            let path = if i % 2 == 0 { replicate() } else { "/messages".to_owned() };
            (m, path, None, Body::Announced(8 * MIB))
        })
        .collect();
    survive(
        "master, unauthenticated",
        (master_pid, m),
        master_idle,
        unproven,
        &[401, 413],
        &master,
    );

    // A proof that looks right: the body must be read (into the budget) to refuse it.
    let forgeries =
        (0..FLOOD).map(|_| (s, replicate(), Some(forged()), Body::Announced(16 * MIB))).collect();
    survive(
        "secondary, forged",
        (secondary_pid, s),
        secondary_idle,
        forgeries,
        &[401, 503],
        &master,
    );
    let forgeries =
        (0..FLOOD).map(|_| (m, replicate(), Some(forged()), Body::Announced(MIB))).collect();
    survive("master, forged", (master_pid, m), master_idle, forgeries, &[401, 503], &master);

    // Proven bodies, as large as a secondary takes, that its component reads (and refuses:
    // they are no batch): the instances they grew are not kept, and their memory goes back.
    let secret = replog::secret::ClusterSecret::new(SECRET).unwrap();
    let proven = (0..FLOOD / 4)
        .map(|_| {
            let body = vec![b'x'; 16 * MIB];
            let now = replog::proof::now_ms();
            let proof = replog::proof::authorization(&secret, "POST", "/replicate", &body, now);
            (s, replicate(), Some(proof), Body::Announced(16 * MIB))
        })
        .collect();
    survive("secondary, proven", (secondary_pid, s), secondary_idle, proven, &[400], &master);

    // Every other shape: bodies without a length, slow bodies, unknown paths, client writes.
    let mixed = (0..FLOOD)
        .map(|i| match i % 4 {
            0 => (s, replicate(), None, Body::Chunked(8 * MIB)),
            1 => (s, replicate(), Some(forged()), Body::Chunked(8 * MIB)),
            2 => (s, "/nope".to_owned(), None, Body::Announced(4 * MIB)),
            _ => (s, "/nope".to_owned(), None, Body::Slow(MIB)),
        })
        .collect();
    survive(
        "secondary, mixed",
        (secondary_pid, s),
        secondary_idle,
        mixed,
        &[401, 404, 503],
        &master,
    );
    let mixed = (0..FLOOD)
        .map(|i| match i % 4 {
            0 => (m, "/messages".to_owned(), None, Body::Chunked(8 * MIB)),
            1 => (m, replicate(), Some(forged()), Body::Chunked(2 * MIB)),
            2 => (m, "/nope".to_owned(), None, Body::Announced(MIB)),
            _ => (m, "/messages".to_owned(), None, Body::Slow(MIB)),
        })
        .collect();
    survive(
        "master, mixed",
        (master_pid, m),
        master_idle,
        mixed,
        &[400, 401, 404, 413, 503],
        &master,
    );

    // Nothing of it reached a log: the master holds the writes made, and only those, and
    // every secondary comes to hold the same.
    let log = |url: &str| {
        let (status, body) = blocking_get(&format!("{url}/messages")).expect("an answer");
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        json["messages"].clone()
    };
    let written = log(&master);
    let messages = written.as_array().unwrap();
    assert!(messages.len() > 50, "{written}");
    for message in messages {
        let message = message.as_str().unwrap();
        assert!(
            message.starts_with("warm ") || message.starts_with("during the flood "),
            "{message}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for node in &cluster.secondaries {
        while log(&node.url()) != written {
            assert!(Instant::now() < deadline, "{} did not catch up", node.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
