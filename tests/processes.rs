//! Nodes as separate processes (`replog serve`), configured the original project's way:
//! through PORT, SECONDARIES and DELAY_MS.

mod support;

use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_configured_by_environment_replicate() {
    let base = free_ports(3);
    let mut nodes = Vec::new();
    for (i, delay) in [(1, "0"), (2, "700")] {
        let mut command = replog();
        command
            .args(["serve", "--role", "secondary"])
            .env("PORT", (base + i).to_string())
            .env("DELAY_MS", delay);
        let mut node = Process::spawn(&format!("secondary{i}"), command);
        node.wait_healthy(&format!("http://127.0.0.1:{}/health", base + i));
        nodes.push(node);
    }
    let mut command = replog();
    command
        .args(["serve", "--role", "master"])
        .env("PORT", base.to_string())
        .env("SECONDARIES", format!("http://127.0.0.1:{},http://localhost:{}", base + 1, base + 2));
    let mut master = Process::spawn("master", command);
    let master_url = format!("http://127.0.0.1:{base}");
    master.wait_writable(&master_url);

    let client = client();
    let (status, json, took) =
        post_json(&client, &format!("{master_url}/messages"), r#"{"msg":"apart"}"#).await;
    assert_eq!(status, 201, "{json}");
    assert!(took >= Duration::from_millis(700), "secondary2's DELAY_MS applies: {took:?}");
    for port in [base, base + 1, base + 2] {
        assert_eq!(messages(&client, &format!("http://127.0.0.1:{port}")).await, ["apart"]);
    }
    let out = master.output();
    assert!(
        out.contains("replog_master.wasm") && out.contains("sha256"),
        "startup names the component:\n{out}"
    );
    assert!(out.contains(&format!("listening on http://0.0.0.0:{base}")), "{out}");
    for node in nodes.iter().chain([&master]) {
        assert!(!node.output().contains(SECRET), "the cluster secret is never logged");
    }
}
