//! A real etcd (Debian's `etcd-server`) for a test: a one-member cluster on free loopback
//! ports with a temporary data directory of its own, stopped by its PID and its directory
//! removed when dropped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::client::blocking;
use super::{Process, free_ports, tool};

/// A running etcd.
pub struct EtcdServer {
    /// Its client URL, `http://127.0.0.1:PORT`.
    pub url: String,
    process: Option<Process>,
    dir: PathBuf,
    etcd: PathBuf,
    peer: String,
}

impl EtcdServer {
    /// Starts one, once it answers; `None` (the test skipped, saying why) where etcd is not
    /// installed outside CI.
    pub fn start() -> Option<Self> {
        let etcd = tool("etcd", "etcd-server")?;
        let base = free_ports(2);
        let (url, peer) =
            (format!("http://127.0.0.1:{base}"), format!("http://127.0.0.1:{}", base + 1));
        let dir = std::env::temp_dir().join(format!("replog-etcd-{}-{base}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut server = Self { url, process: None, dir, etcd, peer };
        server.restart();
        Some(server)
    }

    /// Starts it (again, after `stop`: on the same ports and data directory), once it answers.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "etcd runs already");
        let (client, peer) = (&self.url, &self.peer);
        let mut command = Command::new(&self.etcd);
        command
            .args(["--name", "e", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", client, "--advertise-client-urls", client])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("e={peer}"), "--log-level", "warn"]);
        let mut process = Process::spawn("etcd", command);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = format!("{client}/v3/maintenance/status");
        while blocking("POST", &status, "{}").is_none_or(|(code, _)| code != 200) {
            if let Some(exit) = process.try_wait() {
                panic!("etcd exited ({exit}) before answering:\n{}", process.output());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within 20 s:\n{}",
                process.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
    }

    /// Stops it now (by its PID), keeping its data directory, as a crash of etcd would.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
