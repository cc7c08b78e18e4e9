//! `replog` as a child process on free loopback ports, stopped by its PID when dropped.

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::blocking_get;
use super::{SECRET, repo_root};

pub const REPLOG: &str = env!("CARGO_BIN_EXE_replog");

/// `replog` with a clean environment (a developer's shell may hold settings that would change
/// what a test starts, and components take any setting they declare from it), run from the
/// repository root, running the components the build script built, keeping its logs in memory
/// (tests of durability give it a data directory of their own) and holding the tests' cluster
/// secret.
pub fn replog() -> Command {
    let mut command = Command::new(REPLOG);
    command.current_dir(repo_root());
    command.env_clear();
    if let Some(backtrace) = std::env::var_os("RUST_BACKTRACE") {
        command.env("RUST_BACKTRACE", backtrace);
    }
    command.env("IN_MEMORY", "true").env("CLUSTER_SECRET", SECRET);
    // This checkout's build, not whichever build of the components is newest.
    command.env("REPLOG_COMPONENTS", env!("REPLOG_BUILT_COMPONENTS"));
    command
}

/// `replog serve` for `role` on loopback `port`, as `replog()` sets it up.
pub fn serve(role: &str, port: u16) -> Command {
    let mut command = replog();
    command.args(["serve", "--role", role, "--bind", "127.0.0.1", "--port", &port.to_string()]);
    command
}

/// `count` consecutive loopback ports that are free right now, below Linux's ephemeral range
/// (32768 and up by default) so that no outgoing connection takes one in the meantime.
///
/// A port handed out once is never handed out again by this test binary: tests run side by side
/// and restart nodes on their ports, and a port free during one test's restart must not become
/// another test's (two tests once wrote into one master that way).
pub fn free_ports(count: u16) -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..200 {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let base = 10_000 + (random % 22_000) as u16;
        if handed_out.range(base..base + count).next().is_some() {
            continue;
        }
        let listeners: Vec<_> =
            (0..count).map_while(|i| TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if listeners.len() == usize::from(count) {
            handed_out.extend(base..base + count);
            return base;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1");
}

/// A `replog` process, killed when dropped (also when a test fails).
pub struct Process {
    child: Child,
    log: PathBuf,
    name: String,
}

impl Process {
    /// Starts `command` with its output captured in a file (shown if the test fails).
    pub fn spawn(name: &str, mut command: Command) -> Self {
        let log = Self::log_file(name);
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REPLOG}: {e}"));
        Self { child, log, name: name.to_owned() }
    }

    /// `spawn`, leaving the standard output `command` was given (a file of the test's).
    pub fn spawn_keeping_stdout(name: &str, mut command: Command) -> Self {
        let log = Self::log_file(name);
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {REPLOG}: {e}"));
        Self { child, log, name: name.to_owned() }
    }

    fn log_file(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "replog-test-{}-{name}-{}.log",
            std::process::id(),
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        ))
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `url` answers 200, failing with the process output if it does not.
    pub fn wait_healthy(&mut self, url: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before serving:\n{}", self.name, self.output());
            }
            if blocking_get(url).is_some_and(|(status, _)| status == 200) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} did not answer {url} within 30 s:\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Process {
    /// Waits until the master at `base` takes writes (it has recovered and has a majority).
    pub fn wait_writable(&mut self, base: &str) {
        let url = format!("{base}/health");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before taking writes:\n{}", self.name, self.output());
            }
            let health = blocking_get(&url).filter(|(status, _)| *status == 200);
            let writable = health.and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok());
            if writable.is_some_and(|h| h["writable"] == true) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{} did not take writes within 30 s:\n{}", self.name, self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, at once.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status, if the process has ended.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits until something accepts TCP connections on `port`.
    pub fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before listening:\n{}", self.name, self.output());
            }
            assert!(Instant::now() < deadline, "{} never listened:\n{}", self.name, self.output());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- output of {} ---\n{}", self.name, self.output());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// An embedded cluster (`replog cluster`) on free ports.
pub struct Cluster {
    pub process: Process,
    pub master: String,
    pub secondaries: Vec<String>,
}

impl Cluster {
    /// One secondary per delay, in milliseconds.
    pub fn start(delays: &[u64], extra: &[&str]) -> Self {
        let count = delays.len() as u16;
        let base = free_ports(count + 1);
        let delays: Vec<String> = delays.iter().map(u64::to_string).collect();
        let mut command = replog();
        command.args(["cluster", "--master-port", &base.to_string()]);
        command.args(["--num-secondaries", &count.to_string()]);
        command.args(["--secondary-delays", &delays.join(",")]);
        command.args(extra);
        let mut process = Process::spawn("cluster", command);
        let master = format!("http://127.0.0.1:{base}");
        let secondaries: Vec<String> =
            (1..=count).map(|i| format!("http://127.0.0.1:{}", base + i)).collect();
        for url in &secondaries {
            process.wait_healthy(&format!("{url}/health"));
        }
        process.wait_writable(&master);
        Self { process, master, secondaries }
    }

    pub fn all(&self) -> Vec<&str> {
        std::iter::once(self.master.as_str())
            .chain(self.secondaries.iter().map(String::as_str))
            .collect()
    }
}

/// The resident memory of process `pid` now, in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
