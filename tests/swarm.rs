//! The cluster as a Docker Swarm stack (`replog compose --swarm`, `docker stack deploy`) on this
//! engine made a single-node manager: the original walk-through through the published ports,
//! then the master's task container killed while writers write: the swarm restarts it, another
//! member takes writes meanwhile, and nothing acknowledged with a majority is lost. Runs where
//! a Docker engine answers; skipped elsewhere, saying why (a failure under CI). Images are built
//! here (the project's, and etcd `FROM scratch` from Debian's binary): none can be pulled.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::docker::{build_etcd_image, build_static_host, docker, engine};
use support::elected::{Observed, Writers, assert_converged, health, master};
use support::swarm::{Stack, Swarm};
use support::*;

struct Deployed<'a> {
    stack: &'a Stack,
    urls: Vec<String>,
}

impl Observed for Deployed<'_> {
    fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    fn outputs(&self) -> String {
        self.stack.logs()
    }
}

#[test]
fn a_stack_serves_the_walkthrough_and_survives_its_masters_container_being_killed() {
    if engine().is_none()
        || tool("etcd", "etcd-server").is_none()
        || tool("ldd", "libc-bin").is_none()
    {
        return;
    }
    build_static_host();
    let mut swarm = Swarm::manager();
    let base = free_ports(3);
    let id = format!("{}-{base}", std::process::id());
    let stack = Stack {
        name: format!("replogswarm{}", id.replace('-', "")),
        secret: format!("replog-test-secret-{id}"),
        images: vec![
            format!("replog-test-swarm-{id}:latest"),
            format!("replog-test-etcd-{id}:local"),
        ],
        dir: std::env::temp_dir().join(format!("replog-swarm-{id}")),
    };
    std::fs::create_dir_all(&stack.dir).unwrap();
    let (image, etcd_image) = (&stack.images[0], &stack.images[1]);
    // The image as every machine of a swarm would pull it: the host and its components.
    let built = std::process::Command::new("docker")
        .args(["build", "-q", "-t", image])
        .arg(repo_root())
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    build_etcd_image(etcd_image, &stack.dir);
    // Every member placed on this one machine, by the labels the stack file names.
    for member in ["n1", "n2", "n3"] {
        swarm.label(&format!("replog-{member}"));
    }
    let value = format!("{:x}{:x}", rand_u64(), rand_u64());
    stack.make_secret(&value);

    let file = stack.dir.join("replog-stack.yml");
    let generated = replog()
        .args(["compose", "--swarm", "--master-port", &base.to_string()])
        .args(["--image", image, "--etcd-image", etcd_image, "--secret-name", &stack.secret])
        .arg("-o")
        .arg(&file)
        .env("CLUSTER_SECRET", &value)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&value), "the secret's value is never in the stack file");
    docker(&["stack", "deploy", "-c", file.to_str().unwrap(), &stack.name]);

    let urls: Vec<String> = (0..3).map(|i| format!("http://127.0.0.1:{}", base + i)).collect();
    stack.wait(Duration::from_secs(120), "every member answering", || {
        urls.iter().all(|url| health(url).is_some())
    });
    stack.wait(Duration::from_secs(60), "a master elected", || master(&urls).is_some());
    // Every member names it: each forwards writes to it from here on.
    stack.wait(Duration::from_secs(30), "every member following the master", || {
        let named: Vec<Option<Value>> = urls
            .iter()
            .map(|url| health(url).map(|h| h["election"]["master"]["name"].clone()))
            .collect();
        named[0].as_ref().is_some_and(Value::is_string) && named.windows(2).all(|p| p[0] == p[1])
    });

    // The original walk-through, through the published ports: any member takes the write.
    for url in &urls {
        let health = health(url).unwrap();
        assert!(health["role"] == "master" || health["role"] == "secondary", "{health}");
        assert_eq!(health["authenticated"], true, "{url} runs with the swarm secret: {health}");
    }
    assert!(messages_blocking(&urls[0]).is_empty());
    // A member that cannot reach the master yet (the swarm's DNS may name a new task a moment
    // after it runs) answers 503 saying nothing was written: tried again, for up to 30 s.
    let post = |url: &str, body: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, answer) = blocking_post(&format!("{url}/messages"), body);
            if status != 503 || !answer.contains("not written") || Instant::now() > deadline {
                break (status, answer);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let (status, answer) = post(&urls[0], r#"{"msg":"test"}"#);
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = post(&urls[0], r#"{"msg":"blocking test"}"#);
    assert_eq!(status, 201, "{answer}");
    for url in &urls {
        stack.wait(Duration::from_secs(10), "the walk-through's writes on every member", || {
            messages_blocking(url) == ["test", "blocking test"]
        });
    }
    let (status, answer) = post(&urls[0], r#"{"nope":123}"#);
    assert_eq!(status, 400, "{answer}");

    // The master's task container killed while writers write with w=2 through every port.
    let deployed = Deployed { stack: &stack, urls: urls.clone() };
    let writers = Writers::start(urls.clone(), 3_000);
    writers.wait_for(50, Duration::from_secs(60), &deployed);
    let first = master(&urls).expect("one master");
    let member = format!("n{}", first + 1);
    let killed = stack.container(&member).expect("the master's container");
    let killed_at = Instant::now();
    docker(&["kill", &killed]);
    let others: Vec<String> = (0..3).filter(|&i| i != first).map(|i| urls[i].clone()).collect();
    stack.wait(Duration::from_secs(60), "another member elected", || master(&others).is_some());
    // The swarm starts a new task of the killed member on its volume; it rejoins.
    let mut back = None;
    stack.wait(Duration::from_secs(90), "the killed member restarted by the swarm", || {
        let restarted = stack.container(&member).is_some_and(|c| c != killed);
        if restarted && back.is_none() && health(&urls[first]).is_some() {
            back = Some(Instant::now());
        }
        back.is_some()
    });
    let back = back.unwrap();
    assert!(
        writers.last_ack_between(killed_at, back).is_some(),
        "another master took writes while {member} was down"
    );
    let before = writers.acked();
    writers.wait_for(before + 50, Duration::from_secs(60), &deployed);
    stack.wait(Duration::from_secs(60), "the restarted member following", || {
        health(&urls[first]).is_some_and(|h| h["role"] == "secondary" || h["role"] == "master")
    });
    let acked = writers.finish();
    assert_converged(&deployed, &acked);
    let log = messages_blocking(&urls[first]);
    assert_eq!(&log[..2], ["test", "blocking test"], "the walk-through's writes stay first");
    eprintln!(
        "{} writes acknowledged with w=2, {} on every member after {member}'s container was \
         killed and restarted by the swarm ({:.1} s away)",
        acked.len(),
        log.len(),
        (back - killed_at).as_secs_f64()
    );
}

/// A random number from the kernel, for the swarm secret.
fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes)
        .unwrap();
    u64::from_le_bytes(bytes)
}
