//! Failover across containers, with the network as the fault: etcd and three elected members
//! (`replog compose --failover`) on a Compose project network of the test's own; the master is
//! cut off (`docker network disconnect`), the majority elects another, the isolated one stops
//! acknowledging and steps down; healed, it rejoins as a secondary and the logs converge.
//! Runs where a Docker engine answers; skipped elsewhere, saying why (a failure under CI). The
//! etcd image is built here `FROM scratch` from Debian's etcd, since no image can be pulled.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::docker::{Project, build_etcd_image, build_static_host, container, docker, engine};
use support::*;

fn health(url: &str) -> Option<Value> {
    let (status, body) = blocking_get(&format!("{url}/health"))?;
    (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// Waits until `check` holds, failing with the project's logs after `within`.
fn wait(project: &Project, within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        if Instant::now() > deadline {
            let logs = project.command(&["logs", "--no-color"]).output().unwrap();
            panic!("{what}: not within {within:?}\n{}", String::from_utf8_lossy(&logs.stdout));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The one member at `urls` that is a master taking writes, if exactly one is.
fn master(urls: &[String]) -> Option<usize> {
    let open: Vec<usize> = (0..urls.len())
        .filter(|&i| {
            health(&urls[i]).is_some_and(|h| h["role"] == "master" && h["writable"] == true)
        })
        .collect();
    (open.len() == 1).then(|| open[0])
}

/// `count` writes with `w=2` through `url`, each answered 201: their messages and seqs. A
/// node that does not know the master yet answers 503 saying nothing was written: retried
/// for up to 30 s, with the same id.
fn write(url: &str, tag: &str, count: usize) -> BTreeMap<String, u64> {
    (0..count)
        .map(|i| {
            let msg = format!("{tag}-{i}");
            let body = format!(r#"{{"msg":"{msg}","w":2,"id":"{msg}"}}"#);
            let deadline = Instant::now() + Duration::from_secs(30);
            let (status, answer) = loop {
                let (status, answer) = blocking_post(&format!("{url}/messages?log=false"), &body);
                if status != 503 || !answer.contains("not written") || Instant::now() > deadline {
                    break (status, answer);
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            assert_eq!(status, 201, "{msg} through {url}: {answer}");
            let seq = serde_json::from_str::<Value>(&answer).unwrap()["seq"].as_u64().unwrap();
            (msg, seq)
        })
        .collect()
}

#[test]
fn a_master_cut_off_from_the_network_is_replaced_and_rejoins_as_a_secondary() {
    let Some(program) = engine() else { return };
    if tool("etcd", "etcd-server").is_none() || tool("ldd", "libc-bin").is_none() {
        return;
    }
    build_static_host();
    let base = free_ports(3);
    let id = format!("{}-{base}", std::process::id());
    let dir = std::env::temp_dir().join(format!("replog-partition-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let project = Project {
        program,
        name: format!("replogpartition{}", id.replace('-', "")),
        file: dir.join("docker-compose.yml"),
        dir,
        image: format!("replog-test-{id}:latest"),
    };
    let etcd_image = format!("replog-test-etcd-{id}:local");
    build_etcd_image(&etcd_image, &project.dir);
    let generated = replog()
        .args(["compose", "--failover", "--master-port", &base.to_string()])
        .args(["--image", &project.image, "--etcd-image", &etcd_image])
        .arg("--components-dir")
        .arg(repo_root().join("target/components"))
        .arg("-o")
        .arg(&project.file)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    project.run(&["up", "--build", "-d"]);

    let urls: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", base + i)).collect();
    let mut first = None;
    wait(&project, Duration::from_secs(90), "a master elected", || {
        first = master(&urls);
        first.is_some()
    });
    let first = first.unwrap();
    let mut acked = write(&urls[0], "before", 20);

    // Cut the master off: the two others and etcd are a majority, and elect one of them.
    let member = health(&urls[first]).unwrap()["election"]["member"].as_str().unwrap().to_owned();
    let cut = container(&project.name, &member);
    let network = format!("{}_default", project.name);
    docker(&["network", "disconnect", &network, &cut]);
    let others: Vec<String> = (0..3).filter(|&i| i != first).map(|i| urls[i].clone()).collect();
    wait(&project, Duration::from_secs(60), "another master elected", || master(&others).is_some());
    acked.extend(write(&others[0], "during", 20));
    // The isolated one reaches no etcd: it stops acknowledging and steps down.
    wait(&project, Duration::from_secs(30), "the isolated master stepping down", || {
        docker(&["logs", &cut]).contains("stepping down")
            || String::from_utf8_lossy(
                &std::process::Command::new("docker").args(["logs", &cut]).output().unwrap().stderr,
            )
            .contains("stepping down")
    });

    // Healed: it rejoins as a secondary of the new master, and every log is the same.
    // With its service name as an alias again, as Compose gave it: the others reach it by it.
    docker(&["network", "connect", "--alias", &member, &network, &cut]);
    let new = master(&urls).expect("one master");
    acked.extend(write(&urls[first], "after", 5));
    wait(&project, Duration::from_secs(60), "the logs converging", || {
        let logs: Vec<Option<Vec<String>>> = urls
            .iter()
            .map(|url| {
                let (status, body) = blocking_get(&format!("{url}/messages"))?;
                let json: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
                let all = json["messages"].as_array()?;
                Some(all.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
            })
            .collect();
        logs.iter().all(|log| log.is_some() && log == &logs[0])
    });
    let log = {
        let (_, body) = blocking_get(&format!("{}/messages", urls[first])).unwrap();
        let json: Value = serde_json::from_str(&body).unwrap();
        let all = json["messages"].as_array().unwrap().clone();
        all.into_iter().map(|m| m.as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    for (msg, seq) in &acked {
        assert_eq!(log.get(*seq as usize - 1), Some(msg), "{msg} acknowledged at seq {seq}");
    }
    assert_eq!(log.len(), acked.len(), "nothing but the writes acknowledged: {log:?}");
    let rejoined = health(&urls[first]).unwrap();
    assert_eq!(rejoined["role"], "secondary", "{rejoined}");
    assert_ne!(new, first, "the new master kept its place");
}
