//! The containers: one `replog` per container, from a `FROM scratch` image holding only the
//! static binary, wired by the Compose file `replog compose` writes. Runs where a Docker engine
//! answers (`docker info`); elsewhere it says it was skipped, and why, except under `CI`, where
//! it fails.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use support::docker::{Project, build_static_host, engine, wait_healthy, wait_writable};
use support::variant;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_replicate_fail_over_catch_up_and_swap_components() {
    let Some(program) = engine() else { return };
    build_static_host();

    let base = free_ports(3);
    let id = format!("{}-{base}", std::process::id());
    let dir = std::env::temp_dir().join(format!("replog-compose-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let project = Project {
        program,
        name: format!("replogtest{}", id.replace('-', "")),
        file: dir.join("docker-compose.yml"),
        dir,
        image: format!("replog-test-{id}:latest"),
    };
    // The containers mount a components folder of the test's own, so that installing a new
    // version there touches no one else's build. It holds a folder where `cargo component
    // build` would write, empty at first.
    let components = std::env::temp_dir().join(format!("replog-docker-components-{id}"));
    let second_build = components.join("wasm32-wasip1/release");
    std::fs::create_dir_all(&second_build).unwrap();
    for file in ["replog_master.wasm", "replog_secondary.wasm"] {
        let built = repo_root().join("target/components/wasm32-wasip2/release").join(file);
        std::fs::copy(built, components.join(file)).unwrap();
    }
    let generated = replog()
        .args(["compose", "--master-port", &base.to_string(), "--image", &project.image])
        .args(["--replication-timeout-ms", "15000"])
        .arg("--components-dir")
        .arg(&components)
        .arg("-o")
        .arg(&project.file)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    // As on a fresh clone: no secret made beforehand, nothing but `up`.
    assert_eq!(std::fs::read_dir(&project.dir).unwrap().count(), 1, "the Compose file alone");
    project.run(&["up", "--build", "-d"]);

    let size: u64 = String::from_utf8(
        Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Size}}", &project.image])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    eprintln!("image {} is {:.1} MB", project.image, size as f64 / 1e6);
    // The static host and its two components, and nothing else of size.
    let release = repo_root().join("target/components/wasm32-wasip2/release");
    let built: u64 = [
        repo_root().join("target/x86_64-unknown-linux-musl/release/replog"),
        release.join("replog_master.wasm"),
        release.join("replog_secondary.wasm"),
    ]
    .iter()
    .map(|path| std::fs::metadata(path).unwrap().len())
    .sum();
    assert!(
        size < built + 100_000,
        "the image holds {size} bytes, its host and components {built}: something else is in it"
    );

    let urls: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", base + i)).collect();
    for url in &urls {
        wait_healthy(&format!("{url}/health"), Duration::from_secs(60));
    }
    let client = client();
    for (url, role) in urls.iter().zip(["master", "secondary", "secondary"]) {
        let (status, health) = get_json(&client, &format!("{url}/health")).await;
        assert_eq!((status, health["role"].as_str()), (200, Some(role)), "{health}");
        assert_eq!(health["authenticated"], true, "{url} runs with the cluster secret");
    }
    wait_writable(&urls[0], Duration::from_secs(60));
    // Only the master may write a secondary's log: a request from anyone else is refused.
    let forged = r#"{"epoch": 99, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 1, "epoch": 99, "msg": "FORGED"}], "end": 1}"#;
    let reply = client.post(&format!("{}/replicate", urls[1]), forged).await.unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(messages(&client, &urls[1]).await.is_empty(), "nothing forged was stored");

    let master = &urls[0];
    let (status, json, _) =
        post_json(&client, &format!("{master}/messages"), r#"{"msg":"test"}"#).await;
    assert_eq!(status, 201, "{json}");
    let (status, _, took) =
        post_json(&client, &format!("{master}/messages"), r#"{"msg":"blocking test"}"#).await;
    assert_eq!(status, 201);
    assert!(
        took >= Duration::from_millis(1500),
        "secondary2's delay makes the write block: {took:?}"
    );
    for url in &urls {
        assert_eq!(messages(&client, url).await, ["test", "blocking test"], "{url}");
    }
    // The console, opened on a secondary, shows the whole cluster through that node: the names
    // the nodes know each other by in the network are not ones a browser here could reach.
    let (status, view) = get_json(&client, &format!("{}/console/cluster", urls[2])).await;
    assert_eq!(status, 200, "{view}");
    let nodes = view["nodes"].as_array().expect("a list of nodes");
    assert_eq!(nodes.len(), 3, "{view}");
    for node in nodes {
        let last: Vec<&str> =
            node["last"].as_array().unwrap().iter().filter_map(|e| e["msg"].as_str()).collect();
        assert_eq!(
            (&node["reachable"], &last[..]),
            (&json!(true), &["test", "blocking test"][..]),
            "{node}"
        );
    }

    project.run(&["stop", "secondary2"]);
    // A write that needs every node gets the documented 502 after the bounded wait...
    let (status, json, took) =
        post_json(&client, &format!("{master}/messages"), r#"{"msg":"while down"}"#).await;
    assert_eq!(status, 502, "{json}");
    assert_eq!(json["missing"][0]["secondary"], "http://secondary2:8001", "{json}");
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(25),
        "bounded wait: {took:?}"
    );
    assert!(json["kept"].as_str().unwrap().contains("will still be delivered"), "{json}");

    // ... while the original acceptance scenario plays out: w=1 and w=2 go through, w=3 waits
    // for secondary2 and completes once it is back.
    let write = |msg: &str, w: u64| {
        let (client, url, body) = (
            client.clone(),
            format!("{master}/messages?log=false"),
            format!(r#"{{"msg":"{msg}","w":{w}}}"#),
        );
        async move { post_json(&client, &url, &body).await }
    };
    assert_eq!(write("Msg1", 1).await.0, 201);
    assert_eq!(write("Msg2", 2).await.0, 201);
    let msg3 = tokio::spawn(write("Msg3", 3));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, _, took) = write("Msg4", 1).await;
    assert_eq!(status, 201);
    assert!(
        took < Duration::from_millis(500) && !msg3.is_finished(),
        "Msg4 answers while Msg3 waits"
    );
    project.run(&["start", "secondary2"]);
    let (status, json, _) =
        tokio::time::timeout(Duration::from_secs(20), msg3).await.unwrap().unwrap();
    assert_eq!(status, 201, "{json}");
    wait_healthy(&format!("{}/health", urls[2]), Duration::from_secs(60));
    let expected = ["test", "blocking test", "while down", "Msg1", "Msg2", "Msg3", "Msg4"];
    let deadline = Instant::now() + Duration::from_secs(10);
    for url in &urls {
        // secondary2 came back empty: it catches up on everything, in order.
        while messages(&client, url).await != expected {
            assert!(Instant::now() < deadline, "{url}: {:?}", messages(&client, url).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // A new master version written where `cargo component build` writes, as it writes it
    // (mode 0600, readable by its owner alone), goes live in the running container, which
    // serves as another user: no new image, no restart, the log carries on.
    let container = String::from_utf8(project.run(&["ps", "-q", "master"]).stdout).unwrap();
    let started = |id: &str| {
        let out = Command::new("docker")
            .args(["inspect", "--format", "{{.State.StartedAt}} {{.RestartCount}}", id.trim()])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let before = started(&container);
    let (_, health) = get_json(&client, &format!("{master}/health")).await;
    let regular = health["component"]["version"].as_str().unwrap().to_owned();
    let swapped = variant::variant_version(&regular);
    let new = std::fs::read(variant::variant_dir().join("replog_master.wasm")).unwrap();
    let staging = second_build.join(".replog_master.wasm.incoming");
    std::fs::write(&staging, new).unwrap();
    std::fs::set_permissions(&staging, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    std::fs::rename(&staging, second_build.join("replog_master.wasm")).unwrap();
    let landed = Instant::now();
    loop {
        let (_, health) = get_json(&client, &format!("{master}/health")).await;
        if health["component"]["version"] == swapped.as_str() {
            break;
        }
        assert!(
            landed.elapsed() < Duration::from_secs(20),
            "the container never swapped: {health}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "container swap: file landing to first request on the new version {} ms",
        landed.elapsed().as_millis()
    );
    assert_eq!(started(&container), before, "the container was not restarted");
    let (status, _, _) =
        post_json(&client, &format!("{master}/messages"), r#"{"msg":"swapped"}"#).await;
    assert_eq!(status, 201);
    let now: Vec<String> =
        [&expected[..], &["swapped"]].concat().iter().map(|m| m.to_string()).collect();
    assert_eq!(messages(&client, &urls[2]).await, now);

    // The master's log outlives its container: killed, then started again on its volume, it
    // reads it back and numbering goes on.
    project.run(&["kill", "master"]);
    project.run(&["up", "-d", "master"]);
    wait_writable(master, Duration::from_secs(60));
    assert_eq!(messages(&client, master).await, now, "the log survived the kill");
    let (status, json, _) =
        post_json(&client, &format!("{master}/messages"), r#"{"msg":"after the kill"}"#).await;
    assert_eq!((status, json["seq"].as_u64()), (201, Some(now.len() as u64 + 1)), "{json}");
    let _ = std::fs::remove_dir_all(&components);

    // The secret was made once, on the first start; the master's restart kept it (and the
    // write above replicated with it).
    let logs = project.run(&["logs", "--no-color", "cluster-secret"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert_eq!(logs.matches("made a new cluster secret").count(), 1, "{logs}");
    assert!(logs.contains("kept the cluster secret"), "{logs}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while messages(&client, &urls[1]).await.last().map(String::as_str) != Some("after the kill") {
        assert!(Instant::now() < deadline, "the restarted master's write never replicated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = project.run(&["logs", "--no-color", "master"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(logs.contains("listening on http://0.0.0.0:8000") && logs.contains("sha256"), "{logs}");
    assert!(
        logs.contains("switched user, keeping only the capability to read any file")
            && logs.contains("run_as=65534:65534"),
        "it serves unprivileged:\n{logs}"
    );
}
