//! An elected cluster for tests and benchmarks: three `replog serve --role auto` processes
//! with data directories of their own and a real etcd of the test's own; writers that write
//! to any node (the others forward to the master) and keep every acknowledgement; and the
//! check that every acknowledged write is on every node once, at its seq.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::etcd::EtcdServer;
use super::{Process, blocking, blocking_get, free_ports, messages_blocking, replog};

/// Writers at once, as the issue asks.
pub const WRITERS: usize = 4;

/// One elected node: its member name, port and data directory, and its process when running.
pub struct Member {
    pub name: String,
    pub port: u16,
    pub dir: PathBuf,
    pub members: String,
    pub etcd: String,
    pub cluster: String,
    /// The components folder it runs from (none: this checkout's build).
    pub components: Option<PathBuf>,
    pub process: Option<Process>,
}

impl Member {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        let mut command = replog();
        command
            .args(["serve", "--role", "auto", "--bind", "127.0.0.1", "--name", &self.name])
            .env("IN_MEMORY", "false")
            .env("DATA_DIR", &self.dir)
            .env("MEMBERS", &self.members)
            .env("ETCD_ENDPOINTS", &self.etcd)
            .env("CLUSTER_NAME", &self.cluster);
        if let Some(components) = &self.components {
            command.env("REPLOG_COMPONENTS", components);
        }
        let mut process = Process::spawn(&self.name, command);
        process.wait_healthy(&format!("{}/health", self.url()));
        self.process = Some(process);
    }

    /// SIGSTOP, or SIGCONT with `false`: the process stays, silent, holding its connections.
    pub fn pause(&self, paused: bool) {
        let pid = self.process.as_ref().expect("running").id();
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to a child process this test started and still owns.
        let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signalling {}", self.name);
    }

    /// Waits until it says it is a secondary.
    pub fn wait_secondary(&self, cluster: &Cluster) {
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

    pub fn health(&self) -> Option<Value> {
        let (status, body) = blocking_get(&format!("{}/health", self.url()))?;
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// Whether it is a master taking writes now.
    pub fn writable(&self) -> bool {
        self.health().is_some_and(|h| h["role"] == "master" && h["writable"] == true)
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub etcd: EtcdServer,
    /// The members' data directories are in it; removed with the cluster.
    root: PathBuf,
}

impl Cluster {
    /// Three members and etcd, their data under a new folder named for `tag`; `None` where
    /// etcd is not installed (outside CI).
    pub fn start(tag: &str) -> Option<Self> {
        Self::start_from(tag, None)
    }

    /// The same, every member running the components in `components` when given.
    pub fn start_from(tag: &str, components: Option<&Path>) -> Option<Self> {
        let root = std::env::temp_dir().join(format!("replog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
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
                components: components.map(Path::to_path_buf),
                process: None,
            })
            .collect();
        for member in &mut members {
            member.start();
        }
        Some(Self { members, etcd, root })
    }

    /// The one master taking writes, waited for; fails the test after `within`.
    pub fn master(&self, within: Duration, not: Option<usize>) -> usize {
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

    /// The cluster with writers writing to it, once a master takes writes and they have had
    /// 100 writes acknowledged: the cluster, the master, the writers (at most `limit` writes
    /// each).
    pub fn writing(tag: &str, limit: usize) -> Option<(Self, usize, Writers)> {
        let cluster = Self::start(tag)?;
        let master = cluster.master(Duration::from_secs(30), None);
        let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
        let writers = Writers::start(urls, limit);
        writers.wait_for(100, Duration::from_secs(60), &cluster);
        Some((cluster, master, writers))
    }

    pub fn outputs(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| Some(format!("--- {} ---\n{}", m.name, m.process.as_ref()?.output())))
            .collect()
    }
}

/// A member's `/health`, when it answers 200.
pub fn health(url: &str) -> Option<Value> {
    let (status, body) = blocking_get(&format!("{url}/health"))?;
    (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
}

/// The one member at `urls` that is a master taking writes, if exactly one is.
pub fn master(urls: &[String]) -> Option<usize> {
    let open: Vec<usize> = (0..urls.len())
        .filter(|&i| {
            health(&urls[i]).is_some_and(|h| h["role"] == "master" && h["writable"] == true)
        })
        .collect();
    (open.len() == 1).then(|| open[0])
}

/// An elected cluster as the checks see it: where its members answer, and what they logged.
pub trait Observed {
    /// Every member's base URL.
    fn urls(&self) -> Vec<String>;
    /// What every member logged, for a failure's message.
    fn outputs(&self) -> String;
}

impl Observed for Cluster {
    fn urls(&self) -> Vec<String> {
        self.members.iter().map(Member::url).collect()
    }

    fn outputs(&self) -> String {
        Cluster::outputs(self)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every member stopped (by its PID) before its directory goes.
        for member in &mut self.members {
            member.process.take();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Writers that write to whichever node is master, until told to stop or `limit` writes each:
/// every write a unique message, with `w` 2 (a majority of 3). What each write was answered.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, u64>>>,
    /// For each 201: when its write was sent, and when the answer arrived.
    acked_at: Arc<Mutex<Vec<(Instant, Instant)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Writers {
    pub fn start(urls: Vec<String>, limit: usize) -> Self {
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
                        // Without the whole log in each answer (`log=false`).
                        let url = format!("{}/messages?log=false", urls[target]);
                        let sent = Instant::now();
                        match blocking("POST", &url, &body) {
                            // A 201 cut short (its node killed while sending it) names no seq:
                            // an outcome unknown, like no answer at all.
                            Some((201, answer))
                                if serde_json::from_str::<Value>(&answer).is_ok() =>
                            {
                                let json: Value = serde_json::from_str(&answer).unwrap();
                                let seq = json["seq"].as_u64().expect("a 201 names its seq");
                                acked.lock().unwrap().insert(msg, seq);
                                acked_at.lock().unwrap().push((sent, Instant::now()));
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
    pub fn last_ack_between(&self, from: Instant, to: Instant) -> Option<Instant> {
        let acked = self.acked_at.lock().unwrap();
        acked.iter().map(|&(_, answered)| answered).filter(|&t| t > from && t < to).max()
    }

    /// When the first 201 to a write sent after `from` arrived, if one did.
    pub fn first_ack_sent_after(&self, from: Instant) -> Option<Instant> {
        let acked = self.acked_at.lock().unwrap();
        acked.iter().filter(|&&(sent, _)| sent > from).map(|&(_, answered)| answered).min()
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    pub fn wait_for(&self, count: usize, within: Duration, cluster: &dyn Observed) {
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

    pub fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

/// Every acknowledged write is on every node once, at the seq it was acknowledged with, and the
/// nodes' logs are equal, waited for (the last writes reach the last node by replication).
pub fn assert_converged(cluster: &dyn Observed, acked: &BTreeMap<String, u64>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let logs: Vec<Vec<String>> =
            cluster.urls().iter().map(|url| messages_blocking(url)).collect();
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

/// `replog tail --follow --json` over every member, its output kept in a file of its own (its
/// standard error, where it says which node it moved from, goes with the process's log).
pub struct Follower {
    process: Process,
    out: PathBuf,
}

impl Follower {
    pub fn start(cluster: &Cluster) -> Self {
        let urls: Vec<String> = cluster.members.iter().map(Member::url).collect();
        let out = cluster.root.join(format!("tail-{}.jsonl", std::process::id()));
        std::fs::create_dir_all(&cluster.root).unwrap();
        let mut command = replog();
        command.args(["tail", "--follow", "--json", "--wait-ms", "2000", &urls.join(",")]);
        command.stdout(std::fs::File::create(&out).unwrap());
        Self { process: Process::spawn_keeping_stdout("tail", command), out }
    }

    /// Every `(seq, msg)` printed so far (a line being written is left for later).
    pub fn printed(&self) -> Vec<(u64, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n'))
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                (value["seq"].as_u64().unwrap(), value["msg"].as_str().unwrap().to_owned())
            })
            .collect()
    }

    /// Waits until it printed `lines` lines.
    pub fn wait_printed(&self, lines: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.printed().len() < lines {
            assert!(
                Instant::now() < deadline,
                "the tail printed too little:\n{}",
                self.process.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until it printed `seq`, then checks it printed every seq from 1 once, in order,
    /// and each acknowledged write at its seq.
    pub fn check(&self, acked: &BTreeMap<String, u64>, within: Duration) {
        let last = acked.values().copied().max().unwrap_or(0);
        let deadline = Instant::now() + within;
        let printed = loop {
            let printed = self.printed();
            if printed.last().is_some_and(|(seq, _)| *seq >= last) {
                break printed;
            }
            assert!(
                Instant::now() < deadline,
                "the tail printed through seq {:?} of {last} within {within:?}:\n{}",
                printed.last().map(|(seq, _)| seq),
                self.process.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        for (i, (seq, _)) in printed.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1, "no gap, no line twice:\n{}", self.process.output());
        }
        for (msg, seq) in acked {
            assert_eq!(&printed[*seq as usize - 1].1, msg, "the acknowledged write at seq {seq}");
        }
        eprintln!(
            "the follower printed seqs 1..={} once each, every acknowledged write at its seq; it \
             said:\n{}",
            printed.len(),
            self.process.output()
        );
    }
}
