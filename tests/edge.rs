//! The HTTP edge as hostile and careless clients meet it: slow and idle sockets cut off within
//! their bounds, slow clients that never hold an instance, client load that never starves the
//! cluster's own traffic, odd requests answered with JSON errors, logs of any length answered
//! in pages, and retried writes that are never appended twice.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::nodes::Cluster as Processes;
use support::*;

/// Raw bytes to `port`, and whatever comes back until the server closes (bounded by `within`),
/// with the time it took to close.
fn exchange(port: u16, request: &[u8], within: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

fn body_of(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"))
}

#[test]
fn slow_headers_and_bodies_get_408_and_idle_connections_close_within_their_bounds() {
    let cluster = Cluster::start(
        &[0, 0],
        &["--idle-timeout-ms", "1500", "--header-timeout-ms", "700", "--body-timeout-ms", "900"],
    );
    let port: u16 = cluster.master.rsplit(':').next().unwrap().parse().unwrap();

    let (answer, took) =
        exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(body_of(&answer)["error"].as_str().unwrap().contains("HEADER_TIMEOUT_MS"));
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(5), "{took:?}");

    let slow_body = b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"msg\": ";
    let (answer, took) = exchange(port, slow_body, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(body_of(&answer)["error"].as_str().unwrap().contains("BODY_TIMEOUT_MS"));
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");

    let (answer, took) = exchange(port, b"", Duration::from_secs(10));
    assert_eq!(answer, "", "an idle connection is closed without a word");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(6), "{took:?}");
    assert_eq!(blocking_get(&format!("{}/messages", cluster.master)).unwrap().0, 200);
}

#[test]
fn odd_requests_get_json_errors_and_query_values_are_decoded() {
    let cluster = Cluster::start(&[0], &["--max-body-bytes", "64"]);
    let port: u16 = cluster.master.rsplit(':').next().unwrap().parse().unwrap();
    let within = Duration::from_secs(10);

    let (answer, _) = exchange(port, b"GET /health HTTP/1.0\r\n\r\n", within);
    assert!(answer.starts_with("HTTP/1.0 400") || answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    assert!(body_of(&answer)["error"].as_str().unwrap().contains("Host"));

    let gzip = b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"msg\":\"x\"}";
    let (answer, _) = exchange(port, gzip, within);
    assert!(answer.starts_with("HTTP/1.1 415"), "{answer:?}");
    assert!(body_of(&answer)["error"].as_str().unwrap().contains("gzip"));

    // Bodies past MAX_BODY_BYTES, announced or streamed in chunks, get 413 from the host.
    let large = format!(r#"{{"msg": "{}"}}"#, "x".repeat(100));
    let (status, body) = blocking_post(&format!("{}/messages", cluster.master), &large);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("larger than 64 bytes"), "{body}");
    let chunked = format!(
        "POST /messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
        "a\r\n0123456789\r\n".repeat(10)
    );
    let (answer, _) = exchange(port, chunked.as_bytes(), within);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // A secondary takes what its component states: the largest batch a master whose clients
    // send at most 64 bytes may send (16 MiB at least), not the clients' 64 bytes.
    let secondary: u16 = cluster.secondaries[0].rsplit(':').next().unwrap().parse().unwrap();
    let announced = |bytes: u64| {
        format!(
            "POST /messages HTTP/1.1\r\nHost: x\r\nContent-Length: {bytes}\r\nConnection: close\r\n\r\n"
        )
    };
    let (answer, _) = exchange(secondary, announced((16 << 20) + 1).as_bytes(), within);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(body_of(&answer)["error"].as_str().unwrap().contains("larger than 16777216 bytes"));

    for i in 1..=3 {
        let url = format!("{}/messages?log=false", cluster.master);
        assert_eq!(blocking_post(&url, &format!(r#"{{"msg": "m{i}"}}"#)).0, 201);
    }
    let (status, body) =
        blocking_get(&format!("{}/messages?from=%32&limit=%31", cluster.master)).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["messages"],
        serde_json::json!(["m2"])
    );
    let (status, body) =
        blocking_get(&format!("{}/messages?log%3Dfalse&from=%zz", cluster.master)).unwrap();
    assert_eq!(status, 400, "{body}");
    assert_eq!(messages_blocking(&cluster.master).len(), 3, "nothing refused was appended");
}

#[test]
fn connections_past_the_cap_are_turned_away_with_503() {
    let cluster = Cluster::start(&[0], &["--max-connections", "4", "--idle-timeout-ms", "20000"]);
    let port: u16 = cluster.master.rsplit(':').next().unwrap().parse().unwrap();
    let held: Vec<TcpStream> =
        (0..4).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let (answer, _) =
        exchange(port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(body_of(&answer)["error"].as_str().unwrap().contains("MAX_CONNECTIONS"));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while blocking_get(&format!("{}/health", cluster.master))
        .is_none_or(|(status, _)| status != 200)
    {
        assert!(Instant::now() < deadline, "connections were never given back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_slow_bodies_never_starve_health_replication_or_writes() {
    let cluster = Cluster::start(
        &[0, 0],
        &["--max-instances", "8", "--header-timeout-ms", "30000", "--body-timeout-ms", "30000"],
    );
    let mut sockets = Vec::new();
    for node in cluster.all() {
        let port: u16 = node.rsplit(':').next().unwrap().parse().unwrap();
        for _ in 0..50 {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
            socket.write_all(b"GET /health HTTP/1.1\r\nHost: slow").unwrap();
            sockets.push(socket);
        }
        for _ in 0..8 {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
            socket
                .write_all(b"POST /messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
                .unwrap();
            sockets.push(socket);
        }
    }
    let client = client();
    let started = Instant::now();
    for i in 0..20 {
        let (status, json, took) = post_json(
            &client,
            &format!("{}/messages?log=false", cluster.master),
            &format!(r#"{{"msg": "w{i}"}}"#),
        )
        .await;
        assert_eq!(status, 201, "{json}");
        assert!(took < Duration::from_secs(5), "a w=3 write took {took:?}");
    }
    for node in cluster.all() {
        assert_eq!(get_json(&client, &format!("{node}/health")).await.0, 200);
        assert_eq!(messages(&client, node).await.len(), 20, "{node} holds every write");
    }
    // All of it while the slow sockets hang on: the node has neither answered nor closed any
    // of them (their deadlines are 30 s away), so nothing above waited for them to go.
    assert!(started.elapsed() < Duration::from_secs(25), "took {:?}", started.elapsed());
    for socket in &mut sockets {
        socket.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let read = socket.read(&mut byte);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a slow socket was answered or closed: {read:?}"
        );
    }
    drop(sockets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_fill_every_place_leave_the_reserve_to_replication_and_health() {
    let base = free_ports(3);
    let mut secondary = Process::spawn("secondary", serve("secondary", base + 1));
    secondary.wait_healthy(&format!("http://127.0.0.1:{}/health", base + 1));
    // Secondary 2 never comes: every w=3 write waits for it, holding its instance.
    let mut master = serve("master", base);
    master.args([
        "--secondaries",
        &format!("http://127.0.0.1:{},http://127.0.0.1:{}", base + 1, base + 2),
    ]);
    master.args([
        "--max-instances",
        "8",
        "--reserved-instances",
        "4",
        // Long enough that the held writes cannot time out before the test has checked that
        // their places are taken, however loaded the machine.
        "--replication-timeout-ms",
        "15000",
    ]);
    let mut master = Process::spawn("master", master);
    let url = format!("http://127.0.0.1:{base}");
    master.wait_writable(&url);

    let client = client();
    let waiting: Vec<_> = (0..4)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                post_json(
                    &client,
                    &format!("{url}/messages?log=false"),
                    &format!(r#"{{"msg": "held {i}", "w": 3}}"#),
                )
                .await
            })
        })
        .collect();
    let secondary_url = format!("http://127.0.0.1:{}", base + 1);
    wait::eventually(Duration::from_secs(5), "the held writes replicated to secondary 1", || {
        messages_blocking(&secondary_url).len() == 4
    })
    .await;
    let (status, json, _) =
        post_json(&client, &format!("{url}/messages"), r#"{"msg": "one more"}"#).await;
    assert_eq!(status, 503, "{json}");
    assert!(json["error"].as_str().unwrap().contains("capacity"), "{json}");
    let (status, health) = get_json(&client, &format!("{url}/health")).await;
    assert_eq!(status, 200, "health is served from the reserve: {health}");
    for write in waiting {
        assert_eq!(write.await.unwrap().0, 502, "the held writes end at their timeout");
    }
    let (status, json, _) =
        post_json(&client, &format!("{url}/messages?log=false"), r#"{"msg": "after", "w": 2}"#)
            .await;
    assert_eq!(status, 201, "places are given back: {json}");
}

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> u64 {
    support::process::rss_kib(pid) * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_a_million_messages_is_answered_whole_in_pages() {
    // EDGE_LARGE_MESSAGES=5000000 for the full-size figure; a million keeps CI well under a minute.
    let messages_env = std::env::var("EDGE_LARGE_MESSAGES").ok().and_then(|v| v.parse().ok());
    let messages: u64 = messages_env.unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("replog-edge-large-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    support::inproc::write_log(&dir, messages, |s| format!("{s:0>100}")).await;
    let port = free_ports(1);
    let mut node = serve("secondary", port);
    node.env_remove("IN_MEMORY");
    // A component holding the whole log (100 MB of messages) would not fit in 16 MiB.
    node.arg("--data-dir").arg(&dir).args(["--memory-limit-mb", "16"]);
    let mut node = Process::spawn("large", node);
    node.wait_healthy(&format!("http://127.0.0.1:{port}/health"));
    let before = rss(node.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let (peak, pid) = (peak.clone(), node.id());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let reply = client().get(&format!("http://127.0.0.1:{port}/messages")).await.unwrap();
    let took = started.elapsed();
    sampling.abort();
    assert_eq!(reply.status, 200);
    let json: Value = serde_json::from_slice(&reply.body).expect("the whole answer is valid JSON");
    let all = json["messages"].as_array().unwrap();
    assert_eq!(all.len() as u64, messages);
    assert_eq!(all[0], format!("{:0>100}", 1));
    assert_eq!(all[messages as usize - 1], format!("{messages:0>100}"));
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(before);
    println!(
        "GET /messages of {messages} messages: {} MB in {:.2} s; the node's RSS was {} MB and grew by {} MB",
        reply.body.len() / 1_000_000,
        took.as_secs_f64(),
        before / 1_000_000,
        grew / 1_000_000
    );
    assert!(grew < 64 << 20, "the host held more than pages: RSS grew by {grew} bytes");
    node.kill();
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_is_answered_once_across_a_restart_and_a_recovery() {
    let mut cluster = Processes::new("edge-retries", &[]);
    for secondary in &mut cluster.secondaries {
        secondary.start();
    }
    cluster.master.start();
    let client = client();
    let url = format!("{}/messages?log=false", cluster.master.url());
    let write = |body: &'static str| post_json(&client, &url, body);

    let (status, first, _) = write(r#"{"msg": "pay 10", "id": "order-1"}"#).await;
    assert_eq!(status, 201, "{first}");
    let seq = first["seq"].as_u64().unwrap();
    let (status, retry, _) = write(r#"{"msg": "pay 10", "id": "order-1"}"#).await;
    assert_eq!(
        (status, retry["seq"].as_u64(), retry["duplicate"].as_bool()),
        (200, Some(seq), Some(true)),
        "{retry}"
    );
    let (status, reused, _) = write(r#"{"msg": "pay 20", "id": "order-1"}"#).await;
    assert_eq!((status, reused["seq"].as_u64()), (409, Some(seq)), "{reused}");
    let keyed = [("idempotency-key", "order-2")];
    let second = client.post_with(&url, r#"{"msg": "pay 30"}"#, &keyed).await.unwrap();
    assert_eq!(second.status, 201, "{}", second.text());
    let retry = client.post_with(&url, r#"{"msg": "pay 30"}"#, &keyed).await.unwrap();
    assert_eq!(
        (retry.status, retry.json()["duplicate"].as_bool()),
        (200, Some(true)),
        "the header is a key too"
    );

    blocking_kill_and_start(&mut cluster, false);
    let (status, retry, _) = write(r#"{"msg": "pay 10", "id": "order-1"}"#).await;
    assert_eq!(
        (status, retry["seq"].as_u64(), retry["duplicate"].as_bool()),
        (200, Some(seq), Some(true)),
        "after a restart: {retry}"
    );

    blocking_kill_and_start(&mut cluster, true);
    let (status, retry, _) = write(r#"{"msg": "pay 30", "id": "order-2"}"#).await;
    assert_eq!(
        (status, retry["duplicate"].as_bool()),
        (200, Some(true)),
        "after a recovery from the replicas: {retry}"
    );
    assert_eq!(messages(&client, &cluster.master.url()).await, ["pay 10", "pay 30"], "each once");
}

/// The master killed and started again, its disk wiped first with `wipe`.
fn blocking_kill_and_start(cluster: &mut Processes, wipe: bool) {
    tokio::task::block_in_place(|| {
        if wipe {
            cluster.master.wipe();
        } else {
            cluster.master.kill();
        }
        cluster.master.start();
    });
}
