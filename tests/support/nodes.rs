//! A cluster of `replog serve` processes, each with a data directory of its own, that a test
//! can kill, pause, wipe and start again.

use std::path::{Path, PathBuf};

use super::{Process, free_ports, replog};

/// A node with a data directory of its own.
pub struct Node {
    pub name: String,
    pub args: Vec<String>,
    pub port: u16,
    pub data: PathBuf,
    pub process: Option<Process>,
}

impl Node {
    pub fn new(root: &Path, name: &str, port: u16, args: &[&str]) -> Self {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--port".into(), port.to_string(), "--bind".into(), "127.0.0.1".into()]);
        let data = root.join(name);
        Self { name: name.to_owned(), args, port, data, process: None }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_master(&self) -> bool {
        self.args.iter().any(|a| a == "master")
    }

    pub fn spawn(&mut self) -> Process {
        let mut command = replog();
        command.env_remove("IN_MEMORY").args(&self.args).arg("--data-dir").arg(&self.data);
        Process::spawn(&self.name, command)
    }

    /// Starts the node and waits until it serves (a master: until it takes writes).
    pub fn start(&mut self) {
        let mut process = self.spawn();
        if self.is_master() {
            process.wait_writable(&self.url());
        } else {
            process.wait_healthy(&format!("{}/health", self.url()));
        }
        self.process = Some(process);
    }

    /// Starts the node without waiting for it (a master may wait for its secondaries).
    pub fn launch(&mut self) {
        self.process = Some(self.spawn());
    }

    /// SIGKILL: no chance to flush or finish anything.
    pub fn kill(&mut self) {
        self.process.take().expect("running").kill();
    }

    /// SIGSTOP, or SIGCONT with `false`: the process stays, silent, holding its connections.
    pub fn pause(&self, paused: bool) {
        let pid = self.process.as_ref().expect("running").id();
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: a signal to a child process this test started and still owns.
        let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(sent, 0, "signalling {}", self.name);
    }

    /// Loses the node's disk: killed, and its data directory deleted.
    pub fn wipe(&mut self) {
        if self.process.is_some() {
            self.kill();
        }
        std::fs::remove_dir_all(&self.data).unwrap_or_else(|e| panic!("wiping {}: {e}", self.name));
    }

    pub fn output(&self) -> String {
        self.process.as_ref().map(Process::output).unwrap_or_default()
    }

    pub fn segment(&self) -> PathBuf {
        self.data.join("log").join("000000000001.seg")
    }
}

/// A master and two secondaries as processes, their data under one folder of their own.
pub struct Cluster {
    pub root: PathBuf,
    pub master: Node,
    pub secondaries: Vec<Node>,
}

impl Cluster {
    /// `master_args` are added to the master's command line.
    pub fn new(name: &str, master_args: &[&str]) -> Self {
        let root = std::env::temp_dir().join(format!("replog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let base = free_ports(3);
        let secondaries: Vec<Node> = (1..=2)
            .map(|i| {
                let role = ["serve", "--role", "secondary"];
                Node::new(&root, &format!("secondary{i}"), base + i, &role)
            })
            .collect();
        let urls: Vec<String> = secondaries.iter().map(Node::url).collect();
        let peers = urls.join(",");
        let mut args = vec!["serve", "--role", "master", "--secondaries", &peers];
        args.extend_from_slice(master_args);
        let master = Node::new(&root, "master", base, &args);
        Self { root, master, secondaries }
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        std::iter::once(&self.master).chain(&self.secondaries)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in std::iter::once(&mut self.master).chain(&mut self.secondaries) {
            // A paused process is killed all the same; a killed one lets go of its directory.
            node.process.take();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
