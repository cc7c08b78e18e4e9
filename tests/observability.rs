//! What an operator watches: `/metrics` (checked by Debian's `promtool`), `/ready`, JSON logs
//! that follow one request across the cluster, `METRICS_ADDR`, and `replog status`.

mod support;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replog::config::Role;
use serde_json::Value;
use support::inproc::{self, Cluster, MASTER, SECONDARY, Secondary, call, call_signed};
use support::wait::eventually;
use support::{Process, client, free_ports, replog, serve, tool};

/// The value of the sample `name{labels}` in `text` (labels as Prometheus writes them, in
/// alphabetical order), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `promtool check metrics` on `text`: its verdict and what it said.
fn promtool(promtool: &std::path::Path, text: &str) -> (bool, String) {
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_roles_metrics_pass_promtool_and_count_what_happened() {
    let cluster = Cluster::start(vec![Secondary::new(0), Secondary::new(0)], &[], &[]).await;
    let http = client();
    let messages = format!("{}/messages", cluster.master_url);
    for i in 0..5 {
        let reply = http.post(&messages, format!(r#"{{"msg":"m{i}","w":3}}"#)).await.unwrap();
        assert_eq!(reply.status, 201, "{}", reply.text());
    }
    for _ in 0..2 {
        let keyed = http.post(&messages, r#"{"msg":"once","id":"key-1"}"#).await.unwrap();
        assert!([200, 201].contains(&keyed.status), "{}", keyed.text());
    }
    assert_eq!(http.get(&format!("{}/nowhere", cluster.master_url)).await.unwrap().status, 404);
    // Secondaries acknowledge in the background after a w=1 write: wait for both.
    let url2 = &cluster.urls[1];
    let lag = format!("replog_replication_lag_messages{{secondary=\"{url2}\"}}");
    let metrics = format!("{}/metrics", cluster.master_url);
    let mut master = String::new();
    for _ in 0..500 {
        master = http.get(&metrics).await.unwrap().text();
        if sample(&master, &lag) == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (series, value) in [
        ("replog_log_entries", 6.0),
        ("replog_log_appended_entries_total", 6.0),
        ("replog_idempotent_replays_total", 1.0),
        ("replog_http_requests_total{method=\"POST\",route=\"/messages\",status=\"201\"}", 6.0),
        ("replog_http_requests_total{method=\"POST\",route=\"/messages\",status=\"200\"}", 1.0),
        ("replog_http_requests_total{method=\"GET\",route=\"other\",status=\"404\"}", 1.0),
        // Every write waits for its write concern (the default is every node), a replay too.
        ("replog_write_concern_waits_total{outcome=\"met\"}", 7.0),
        ("replog_master_state{state=\"open\"}", 1.0),
        (&lag, 0.0),
        (&format!("replog_replication_acked_seq{{secondary=\"{url2}\"}}"), 6.0),
    ] {
        assert_eq!(sample(&master, series), Some(value), "{series} in:\n{master}");
    }
    let version = cluster.master().current().info.version.clone();
    assert!(master.contains(&format!("version=\"{version}\"")), "{master}");
    assert!(!master.contains(support::SECRET), "the secret is not exposed");
    let secondary = http.get(&format!("{}/metrics", cluster.urls[0])).await.unwrap();
    assert_eq!(secondary.headers["content-type"], replog::metrics::CONTENT_TYPE);
    let secondary = secondary.text();
    assert_eq!(sample(&secondary, "replog_log_entries"), Some(6.0), "{secondary}");
    assert!(secondary.contains("replog_node_info{node=\"secondary1\",role=\"secondary\"} 1"));
    if let Some(promtool_path) = tool("promtool", "prometheus") {
        for (role, text) in [("master", &master), ("secondary", &secondary)] {
            let (passed, said) = promtool(&promtool_path, text);
            assert!(passed, "promtool check metrics failed on the {role}'s:\n{said}\n{text}");
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_is_ready_once_recovered_and_a_secondary_not_while_it_refuses_its_master() {
    // A master whose secondaries do not answer yet stays recovering: alive, not ready.
    let secondaries = vec![
        inproc::node(inproc::config("secondary1", Role::Secondary), SECONDARY).await,
        inproc::node(inproc::config("secondary2", Role::Secondary), SECONDARY).await,
    ];
    let (running, urls) = inproc::serve(secondaries).await;
    let mut config = inproc::config("master", Role::Master).with("SECONDARIES", urls.join(","));
    config.component = inproc::component_path(MASTER);
    let master =
        replog::node::Node::new(inproc::runtime(), config, inproc::compiled(MASTER)).await.unwrap();
    let ready = call(&master, "GET", "/ready", "").await;
    assert_eq!((ready.status, &ready.json["ready"]), (503, &Value::Bool(false)), "{:?}", ready);
    assert!(ready.json["error"].as_str().unwrap().contains("starting"), "{}", ready.json);
    assert_eq!(call(&master, "GET", "/health", "").await.status, 200, "alive all the same");
    master.start_replication();
    inproc::settled(&master).await;
    let ready = call(&master, "GET", "/ready", "").await;
    assert_eq!((ready.status, &ready.json["role"]), (200, &Value::from("master")), "{:?}", ready);

    drop(master);
    running.shutdown().await;

    // A secondary that follows a newer master than the one contacting it is not ready. (One
    // no master reaches: the test plays both masters.)
    let secondary = &inproc::node(inproc::config("secondary", Role::Secondary), SECONDARY).await;
    let newer = r#"{"epoch":9,"prev":{"seq":0,"epoch":0},"entries":[],"end":0}"#;
    assert_eq!(call_signed(secondary, "POST", "/replicate", newer).await.status, 200);
    let older = r#"{"epoch":1,"prev":{"seq":0,"epoch":0},"entries":[],"end":0}"#;
    let refused = call_signed(secondary, "POST", "/replicate", older).await;
    assert_eq!((refused.status, &refused.json["fenced"]), (409, &Value::Bool(true)));
    let ready = call(secondary, "GET", "/ready", "").await;
    assert_eq!(ready.status, 503, "{:?}", ready.json);
    assert!(ready.json["error"].as_str().unwrap().contains("epoch 1"), "{}", ready.json);
    assert_eq!(ready.headers["retry-after"], "1");
    // The master of epoch 9 (or a newer one) contacts it again: ready.
    assert_eq!(call_signed(secondary, "POST", "/replicate", newer).await.status, 200);
    assert_eq!(call(secondary, "GET", "/ready", "").await.status, 200);
}

/// Starts `replog cluster` with two secondaries on free ports, with `args` before the
/// subcommand and `env` set; returns it with the master's port, once it takes writes.
fn cluster_process(args: &[&str], env: &[(&str, &str)]) -> (Process, u16) {
    let base = free_ports(3);
    let mut command = replog();
    command.envs(env.iter().copied()).args(args);
    command.args(["cluster", "--master-port", &base.to_string(), "--secondary-delays", "0,0"]);
    let mut process = Process::spawn("cluster", command);
    process.wait_writable(&format!("http://127.0.0.1:{base}"));
    (process, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_follow_one_write_across_every_node_it_touched() {
    let (process, port) =
        cluster_process(&["--log-format", "json"], &[("RUST_LOG", "replog=debug")]);
    let http = client();
    let id = "follow-me-42";
    let reply = http
        .post_with(
            &format!("http://127.0.0.1:{port}/messages"),
            r#"{"msg":"traced","w":3}"#,
            &[("x-request-id", id)],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.headers["x-request-id"], id, "the answer names the request");
    let unnamed = http.get(&format!("http://127.0.0.1:{port}/health")).await.unwrap();
    assert!(!unnamed.headers["x-request-id"].is_empty(), "a request without an id gets one");

    let lines_of = |output: &str| -> Vec<Value> {
        output
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"))
            })
            .collect()
    };
    let touched = |output: &str| -> Vec<(String, String)> {
        lines_of(output)
            .iter()
            .filter(|l| l["request_id"].as_str().is_some_and(|ids| ids.split(',').any(|i| i == id)))
            .map(|l| {
                (
                    l["node"].as_str().unwrap_or("").into(),
                    l["message"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = touched(&process.output());
        let on = |node: &str, what: &str| seen.iter().any(|(n, m)| n == node && m == what);
        if on("master", "appended")
            && on("master", "served")
            && on("secondary1", "stored")
            && on("secondary2", "stored")
        {
            break;
        }
        assert!(Instant::now() < deadline, "not followed across the cluster: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let appended = lines_of(&process.output())
        .into_iter()
        .find(|l| l["message"] == "appended" && l["request_id"] == id)
        .unwrap();
    assert_eq!((&appended["seq"], &appended["epoch"]), (&Value::from(1), &Value::from(1)));
    assert!(appended["timestamp"].is_string() && appended["level"] == "DEBUG", "{appended}");
    process.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_move_to_an_address_of_their_own() {
    let port = free_ports(2);
    let metrics_addr = format!("127.0.0.1:{}", port + 1);
    let mut command = serve("secondary", port);
    command.args(["--metrics-addr", &metrics_addr]);
    let mut process = Process::spawn("secondary", command);
    let base = format!("http://127.0.0.1:{port}");
    process.wait_healthy(&format!("{base}/health"));
    let http = client();
    let moved = http.get(&format!("http://{metrics_addr}/metrics")).await.unwrap();
    assert_eq!(moved.status, 200);
    assert!(moved.text().contains("replog_node_info{node=\"secondary\",role=\"secondary\"} 1"));
    let on_clients = http.get(&format!("{base}/metrics")).await.unwrap();
    assert_eq!(on_clients.status, 404, "no longer on the client port: {}", on_clients.text());
    let elsewhere = http.get(&format!("http://{metrics_addr}/messages")).await.unwrap();
    assert_eq!(elsewhere.status, 404, "the metrics address serves metrics only");
    assert!(elsewhere.json()["error"].is_string());
    process.kill();
}

/// `replog status URL`: its exit code and what it printed.
fn status(url: &str) -> (i32, String) {
    let out = replog().args(["status", url, "--timeout-ms", "3000"]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().expect("status exits"), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_cluster_and_exits_by_whether_it_takes_writes() {
    let (process, port) = cluster_process(&[], &[]);
    let master = format!("http://127.0.0.1:{port}");
    let (code, text) = status(&master);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NODE") && lines[0].contains("EPOCH"), "{text}");
    assert!(lines[1].contains("master") && lines[1].contains("open"), "{text}");
    for i in 1..=2 {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("http://127.0.0.1:{}", port + i)))
            .unwrap_or_else(|| panic!("no line for secondary {i}:\n{text}"));
        assert!(row.contains("secondary") && row.contains("healthy"), "{text}");
    }
    assert!(text.contains("cluster takes writes"), "{text}");
    process.kill();

    // A master whose secondaries never answer stays recovering: it answers, takes no writes.
    let port = free_ports(1);
    let nobody = [inproc::closed_port(), inproc::closed_port()]
        .map(|p| format!("http://127.0.0.1:{p}"))
        .join(",");
    let mut command = serve("master", port);
    command.args(["--secondaries", &nobody]);
    let mut lonely = Process::spawn("master", command);
    let master = format!("http://127.0.0.1:{port}");
    lonely.wait_healthy(&format!("{master}/health"));
    let (code, text) = status(&master);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("recovering") && text.contains("NO writes"), "{text}");
    assert!(text.contains("unreachable"), "its secondaries are shown unreachable: {text}");
    lonely.kill();

    let (code, text) = status(&master);
    assert_eq!(code, 2, "nothing answers: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_stopped_by_a_limit_is_counted() {
    let config = inproc::config("runaway", Role::Master);
    let mut config = config;
    config.limits.cpu_budget = Duration::from_millis(50);
    let node = inproc::node(config, inproc::RUNAWAY).await;
    let answer = call(&node, "GET", "/spin", "").await;
    assert_eq!(answer.status, 500, "{:?}", answer.json);
    let text = node.metrics();
    assert_eq!(sample(&text, "replog_calls_stopped_total{limit=\"cpu\"}"), Some(1.0), "{text}");
    assert_eq!(sample(&text, "replog_calls_stopped_total{limit=\"memory\"}"), Some(0.0));
    // The stopped instance is dropped with its task, just after the answer.
    eventually(Duration::from_secs(5), "the stopped instance to be dropped", || {
        sample(&node.metrics(), "replog_instances_in_use") == Some(0.0)
    })
    .await;
}
