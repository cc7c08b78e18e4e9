//! A real Prometheus (Debian's `prometheus`) scrapes an embedded cluster: one secondary is
//! stopped and comes back, and what Prometheus recorded is read back through its query API.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::inproc::{Cluster, Secondary};
use support::{Client, Process, client, free_ports, tool};

/// How often Prometheus scrapes the nodes.
const SCRAPE: &str = "200ms";

/// A Prometheus server on a free port, scraping `targets` (`host:port`), its data in `dir`.
fn prometheus(binary: &Path, dir: &Path, targets: &[String]) -> (Process, String) {
    let port = free_ports(1);
    let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: {SCRAPE}\n  scrape_timeout: {SCRAPE}\n\
         scrape_configs:\n  - job_name: replog\n    static_configs:\n      - targets: [{}]\n",
        quoted.join(", ")
    );
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let mut command = std::process::Command::new(binary);
    command.args([
        &format!("--config.file={}", file.display()),
        &format!("--storage.tsdb.path={}", dir.join("data").display()),
        &format!("--web.listen-address=127.0.0.1:{port}"),
    ]);
    let mut process = Process::spawn("prometheus", command);
    let url = format!("http://127.0.0.1:{port}");
    process.wait_healthy(&format!("{url}/-/ready"));
    (process, url)
}

/// `query`'s single value now, through Prometheus' HTTP API (none: no such series yet).
async fn query(http: &Client, prometheus: &str, query: &str) -> Option<f64> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let reply = http.get(&format!("{prometheus}/api/v1/query?query={encoded}")).await.ok()?;
    let json: Value = reply.json();
    assert_eq!(json["status"], "success", "{query}: {json}");
    let result = json["data"]["result"].as_array()?;
    assert!(result.len() <= 1, "{query} matches several series: {json}");
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Waits until `query` is `wanted` in Prometheus, or fails with what it was.
async fn until(http: &Client, prometheus: &str, q: &str, wanted: impl Fn(f64) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = query(http, prometheus, q).await;
        if now.is_some_and(&wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {q} is {now:?} after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_a_secondary_fall_behind_and_catch_up_and_counts_the_writes() {
    let Some(binary) = tool("prometheus", "prometheus") else { return };
    let dir = std::env::temp_dir().join(format!("replog-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cluster = Cluster::start(vec![Secondary::new(0), Secondary::new(0)], &[], &[]).await;
    let nodes: Vec<String> = std::iter::once(&cluster.master_url)
        .chain(&cluster.urls)
        .map(|url| url.trim_start_matches("http://").to_owned())
        .collect();
    let (server, prom) = prometheus(&binary, &dir, &nodes);
    let http = client();
    let master = &nodes[0];
    let second = &cluster.urls[1];
    let lag =
        format!("replog_replication_lag_messages{{instance=\"{master}\",secondary=\"{second}\"}}");
    until(&http, &prom, &lag, |v| v == 0.0, "the lag is scraped").await;

    let messages = format!("{}/messages", cluster.master_url);
    let mut written = 0;
    for i in 0..10 {
        let reply = http.post(&messages, format!(r#"{{"msg":"before {i}","w":3}}"#)).await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        written += 1;
    }
    cluster.stop_secondary(1).await;
    for i in 0..20 {
        let reply = http.post(&messages, format!(r#"{{"msg":"during {i}","w":2}}"#)).await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
        written += 1;
    }
    until(&http, &prom, &lag, |v| v >= 20.0, "the lag of the stopped secondary rises").await;

    cluster.start_secondary(1).await;
    until(&http, &prom, &lag, |v| v == 0.0, "the lag returns to 0 once it is back").await;
    let peak = format!("max_over_time({lag}[5m])");
    let peak = query(&http, &prom, &peak).await.unwrap();
    assert!(peak >= 20.0, "the peak Prometheus recorded: {peak}");

    let on_master = |series: &str| format!("sum({series}{{instance=\"{master}\"}})");
    let expected = f64::from(written);
    for (q, what) in [
        (
            format!(
                "sum(replog_http_requests_total{{instance=\"{master}\",route=\"/messages\",method=\"POST\",status=\"201\"}})"
            ),
            "the 201 answers match the writes",
        ),
        (on_master("replog_log_appended_entries_total"), "the appends match the writes"),
        (on_master("replog_write_concern_waits_total"), "each write waited for its concern once"),
    ] {
        until(&http, &prom, &q, |v| v == expected, what).await;
    }
    let replica = format!("replog_log_entries{{instance=\"{}\"}}", nodes[2]);
    until(&http, &prom, &replica, |v| v == expected, "the returned secondary holds every write")
        .await;
    server.kill();
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
