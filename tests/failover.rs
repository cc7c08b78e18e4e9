//! Failover against a real etcd (Debian's `etcd-server`, one per test): three `replog serve
//! --role auto` processes with data directories of their own elect a master; writers write
//! with `w` = a majority; the master is killed (or paused past its lease); another takes over
//! in the same processes, without a restart; no acknowledged write is lost or duplicated, and
//! every node's log is the same afterwards.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::etcd::EtcdServer;
use support::{Process, blocking, blocking_get, free_ports, messages_blocking, replog};

/// Writers at once, as the issue asks.
const WRITERS: usize = 4;

/// One elected node: its member name, port and data directory, and its process when running.
struct Member {
    name: String,
    port: u16,
    dir: PathBuf,
    members: String,
    etcd: String,
    cluster: String,
    process: Option<Process>,
}

impl Member {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        let mut command = replog();
        command
            .args(["serve", "--role", "auto", "--bind", "127.0.0.1", "--name", &self.name])
            .env("IN_MEMORY", "false")
            .env("DATA_DIR", &self.dir)
            .env("MEMBERS", &self.members)
            .env("ETCD_ENDPOINTS", &self.etcd)
            .env("CLUSTER_NAME", &self.cluster);
        let mut process = Process::spawn(&self.name, command);
        process.wait_healthy(&format!("{}/health", self.url()));
        self.process = Some(process);
    }

    /// SIGSTOP, or SIGCONT with `false`: the process stays, silent, holding its connections.
    fn pause(&self, paused: bool) {
        let pid = self.process.as_ref().expect("running").id();
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to a child process this test started and still owns.
        let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signalling {}", self.name);
    }

    /// Waits until it says it is a secondary.
    fn wait_secondary(&self, cluster: &Cluster) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.health().is_none_or(|h| h["role"] != "secondary") {
            assert!(
                Instant::now() < deadline,
                "{} did not become a secondary:\n{}",
                self.name,
                cluster.outputs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn health(&self) -> Option<Value> {
        let (status, body) = blocking_get(&format!("{}/health", self.url()))?;
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Whether it is a master taking writes now.
    fn writable(&self) -> bool {
        self.health().is_some_and(|h| h["role"] == "master" && h["writable"] == true)
    }
}

struct Cluster {
    members: Vec<Member>,
    etcd: EtcdServer,
}

impl Cluster {
    fn start(root: &std::path::Path) -> Option<Self> {
        let etcd = EtcdServer::start()?;
        let base = free_ports(3);
        let names = ["n1", "n2", "n3"];
        let list: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", base + i as u16))
            .collect();
        let mut members: Vec<Member> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Member {
                name: (*name).to_owned(),
                port: base + i as u16,
                dir: root.join(name),
                members: list.join(","),
                etcd: etcd.url.clone(),
                cluster: format!("failover-{base}"),
                process: None,
            })
            .collect();
        for member in &mut members {
            member.start();
        }
        Some(Self { members, etcd })
    }

    /// The one master taking writes, waited for; fails the test after `within`.
    fn master(&self, within: Duration, not: Option<usize>) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let open: Vec<usize> = (0..self.members.len())
                .filter(|&i| Some(i) != not && self.members[i].process.is_some())
                .filter(|&i| self.members[i].writable())
                .collect();
            if let [one] = open[..] {
                return one;
            }
            assert!(
                Instant::now() < deadline,
                "no single master within {within:?} (open: {open:?}):\n{}",
                self.outputs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn outputs(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| Some(format!("--- {} ---\n{}", m.name, m.process.as_ref()?.output())))
            .collect()
    }
}

/// Writers that write to whichever node is master, until told to stop or `limit` writes each:
/// every write a unique message, with `w` 2 (a majority of 3). What each write was answered.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, u64>>>,
    /// When each 201 arrived.
    acked_at: Arc<Mutex<Vec<Instant>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    fn start(urls: Vec<String>, limit: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let acked_at = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..WRITERS)
            .map(|writer| {
                let (stop, acked, urls) = (stop.clone(), acked.clone(), urls.clone());
                let acked_at = acked_at.clone();
                std::thread::spawn(move || {
                    let mut target = 0;
                    for i in 0..limit {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let msg = format!("w{writer}-{i}");
                        let body = format!(r#"{{"msg":"{msg}","w":2}}"#);
                        let url = format!("{}/messages", urls[target]);
                        match blocking("POST", &url, &body) {
                            Some((201, answer)) => {
                                let json: Value = serde_json::from_str(&answer).unwrap();
                                let seq = json["seq"].as_u64().expect("a 201 names its seq");
                                acked.lock().unwrap().insert(msg, seq);
                                acked_at.lock().unwrap().push(Instant::now());
                            }
                            // Not a master, not one yet, or gone: try the next node.
                            _ => {
                                target = (target + 1) % urls.len();
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                })
            })
            .collect();
        Self { stop, acked, acked_at, threads }
    }

    /// When the last 201 between `from` and `to` arrived, if one did.
    fn last_ack_between(&self, from: Instant, to: Instant) -> Option<Instant> {
        self.acked_at.lock().unwrap().iter().copied().filter(|&t| t > from && t < to).max()
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn wait_for(&self, count: usize, within: Duration, cluster: &Cluster) {
        let deadline = Instant::now() + within;
        while self.acked() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes acknowledged within {within:?}:\n{}",
                self.acked(),
                cluster.outputs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every acknowledged write is on every node once, at the seq it was acknowledged with, and the
/// nodes' logs are equal, waited for (the last writes reach the last node by replication).
fn assert_converged(cluster: &Cluster, acked: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs: Vec<Vec<String>> =
            cluster.members.iter().map(|m| messages_blocking(&m.url())).collect();
        if logs.windows(2).all(|pair| pair[0] == pair[1]) {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "the logs did not converge: lengths {:?}\n{}",
            logs.iter().map(Vec::len).collect::<Vec<_>>(),
            cluster.outputs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = &logs[0];
    let unique: BTreeSet<&String> = log.iter().collect();
    assert_eq!(unique.len(), log.len(), "a message appears twice");
    for (msg, seq) in acked {
        let at = log.get(*seq as usize - 1);
        assert_eq!(at, Some(msg), "acknowledged {msg} at seq {seq}, the log holds {at:?}");
    }
}

/// A write through each node, the old master's port included, is taken by the master
/// (forwarded by the others, which name it in `x-replog-master`). Returns them with their seqs.
fn writes_through_every_node(cluster: &Cluster, master: usize) -> BTreeMap<String, u64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = support::client();
    let named = format!("{} {}", cluster.members[master].name, cluster.members[master].url());
    let mut written = BTreeMap::new();
    for (i, member) in cluster.members.iter().enumerate() {
        let msg = format!("through-{}", member.name);
        let body = format!(r#"{{"msg":"{msg}","w":2}}"#);
        // A node just started answers 503 (with Retry-After) until it has read who is master.
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = loop {
            let url = format!("{}/messages", member.url());
            let reply = runtime.block_on(client.post(&url, body.clone())).expect("an answer");
            if reply.status != 503 || Instant::now() > deadline {
                break reply;
            }
            assert!(reply.headers.contains_key("retry-after"), "{}", reply.text());
            assert!(reply.text().contains("not written"), "{}", reply.text());
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(reply.status, 201, "through {}: {}", member.name, reply.text());
        let header = reply.headers.get("x-replog-master").map(|v| v.to_str().unwrap().to_owned());
        let expected = (i != master).then(|| named.clone());
        assert_eq!(header, expected, "through {}", member.name);
        written.insert(msg, reply.json()["seq"].as_u64().unwrap());
    }
    written
}

#[test]
fn a_killed_master_is_replaced_and_no_acknowledged_write_is_lost() {
    let root = std::env::temp_dir().join(format!("replog-failover-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let Some(mut cluster) = Cluster::start(&root) else { return };
    let first = cluster.master(Duration::from_secs(30), None);
    let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
    let writers = Writers::start(urls, 2_000);
    writers.wait_for(100, Duration::from_secs(60), &cluster);

    // kill -9 the master while the writers write.
    let killed_at = Instant::now();
    cluster.members[first].process.take().unwrap().kill();
    let before = writers.acked();
    let second = cluster.master(Duration::from_secs(30), Some(first));
    assert_ne!(second, first);
    writers.wait_for(before + 100, Duration::from_secs(60), &cluster);
    eprintln!(
        "{} took over from {} in {:?} (writes acknowledged before the kill: {before})",
        cluster.members[second].name,
        cluster.members[first].name,
        killed_at.elapsed()
    );
    let acked = writers.finish();

    // The old master, restarted on its data directory, rejoins as a secondary.
    cluster.members[first].start();
    cluster.members[first].wait_secondary(&cluster);
    assert_eq!(cluster.master(Duration::from_secs(5), None), second, "still one master");
    let mut acked = acked;
    acked.extend(writes_through_every_node(&cluster, second));
    assert_converged(&cluster, &acked);
    // Any node says who is master; `replog status` asked at the old master's port reports
    // from the new one.
    let (old, new) = (&cluster.members[first], &cluster.members[second]);
    let health = old.health().unwrap();
    assert_eq!(health["election"]["master"]["name"], new.name.as_str(), "{health}");
    assert_eq!(health["election"]["members"].as_array().map(Vec::len), Some(3), "{health}");
    let health = new.health().unwrap();
    let left = health["election"]["lease_ms_left"].as_u64();
    assert!(left.is_some_and(|ms| ms > 0 && ms <= 2_000), "{health}");
    let status = replog().args(["status", &old.url()]).output().unwrap();
    let report = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{report}");
    let line = format!("elected: {} ({}) is master in epoch", new.name, new.url());
    assert!(report.contains(&line), "{report}");
    eprintln!("{report}");
    let output = cluster.members[second].process.as_ref().unwrap().output();
    assert!(output.contains("elected master"), "{output}");
    assert!(output.contains("changing role"), "the same process changed role:\n{output}");
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{}", cluster.outputs());
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_master_paused_past_its_lease_acknowledges_nothing_on_waking_and_becomes_a_secondary() {
    let root = std::env::temp_dir().join(format!("replog-failover-pause-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let Some(cluster) = Cluster::start(&root) else { return };
    let first = cluster.master(Duration::from_secs(30), None);
    let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
    let writers = Writers::start(urls, 2_000);
    writers.wait_for(100, Duration::from_secs(60), &cluster);

    // Paused with writes in flight: its lease lapses, another is elected and takes writes.
    cluster.members[first].pause(true);
    let before = writers.acked();
    let second = cluster.master(Duration::from_secs(30), Some(first));
    writers.wait_for(before + 100, Duration::from_secs(60), &cluster);

    // Woken: whatever it answers now must not be a 2xx for a write the new master lacks (the
    // writers keep each 201 and its seq, checked below); it turns into a secondary.
    cluster.members[first].pause(false);
    cluster.members[first].wait_secondary(&cluster);
    let acked = writers.finish();
    assert_eq!(cluster.master(Duration::from_secs(5), None), second, "one master");
    assert_converged(&cluster, &acked);
    let woken = cluster.members[first].process.as_ref().unwrap().output();
    assert!(woken.contains("stepping down") || woken.contains("changing role"), "{woken}");
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{}", cluster.outputs());
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn without_etcd_the_master_stops_acknowledging_within_its_deadline_and_one_is_elected_again() {
    let root = std::env::temp_dir().join(format!("replog-failover-etcd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let Some(mut cluster) = Cluster::start(&root) else { return };
    let first = cluster.master(Duration::from_secs(30), None);
    let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
    let writers = Writers::start(urls, 4_000);
    writers.wait_for(100, Duration::from_secs(60), &cluster);

    // etcd gone: no renewal lands, so the master stops acknowledging by its renew deadline
    // (2 s after the last renewal it sent, which was before etcd stopped).
    let stopped_at = Instant::now();
    cluster.etcd.stop();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.members[first].writable() {
        assert!(Instant::now() < deadline, "the master still takes writes:\n{}", cluster.outputs());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Bounded by the deadline, with a second for a write decided before it to arrive.
    let quiet_from = stopped_at + Duration::from_secs(3);
    let checked_until = Instant::now().max(quiet_from) + Duration::from_secs(1);
    while Instant::now() < checked_until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let late = writers.last_ack_between(quiet_from, Instant::now());
    assert_eq!(late.map(|t| t - stopped_at), None, "a 201 after the renew deadline");

    // etcd back: a master is elected again (the old key lapses first) and takes writes.
    let before = writers.acked();
    cluster.etcd.restart();
    let again = cluster.master(Duration::from_secs(30), None);
    writers.wait_for(before + 100, Duration::from_secs(60), &cluster);
    let acked = writers.finish();
    eprintln!(
        "without etcd: {} stopped acknowledging; {} elected again",
        cluster.members[first].name, cluster.members[again].name
    );
    assert_converged(&cluster, &acked);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&root);
}
