//! Reads, measured from outside and pinned, beside a static file server serving the same bytes
//! (the successor of `bench/outside.sh`).
//!
//! `cargo bench --bench reads` (needs Debian's `wrk` and `nginx`; says so and stops when one
//! is missing). Every server runs on the server CPUs (`BENCH_SERVER_CPUS`, default `0`) and
//! the load (wrk, and this process) on the others (`BENCH_LOAD_CPUS`, default the rest), with
//! `taskset`: a load generator that shares the servers' cores starves the heavier server less
//! than the lighter, and flatters it. nginx runs a worker per server CPU. For each run it prints
//! req/s, p50 and p99 (wrk, `BENCH_CONNECTIONS` connections, 32 by default, `BENCH_SECONDS`
//! each, 8 by default) and the CPU each server spent per request (user and system, from
//! `/proc/PID/stat`, nginx's master and workers together). The logs are written before the
//! nodes start, through the library as a node writes them, each into a data directory of its
//! own, and served by a master alone (a cluster of one: what it holds is committed). It
//! measures:
//! 1. `GET /messages` of a log of 100 messages (about 4 KB): the same request again and again
//!    (the node sends the answer the component made once, while the log stands: see
//!    `node::answers`), then each request with a query of its own (the component makes every
//!    answer), and nginx serving the same bytes as a file (checked to be the same, with a 200,
//!    before measuring), with the ratios of req/s and of CPU per request;
//! 2. the same for a log of 10,000 messages of about 80 bytes (about 0.8 MB), and the bytes of
//!    answer a second per server CPU of each;
//! 3. `GET /health` (what a call into the component costs with no log in its answer);
//! 4. one event stream catching up from `seq` 1 of a log of 1,000,000 messages (after one more
//!    write), read by this process: messages a second, every one once and in order (a stream that ends at its byte
//!    budget is resumed with `Last-Event-ID`, as a browser would);
//! 5. lean `POST /messages?log=false` with `w=3`, a master and two secondaries on the server
//!    CPUs, logs in memory, then on disk (a data directory each);
//! 6. RSS: a node idle (the 100-message log) and the node holding 1,000,000 messages, before and
//!    after the stream read all of it.
//!
//! `BENCH_REPLOG` and `BENCH_COMPONENTS` run another build (a `replog` binary, and the folder of
//! its components) in the same way, for a comparison on the same machine.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use support::process::{REPLOG, free_ports, rss_kib};

/// The messages of the 100-message log, as `bench/crossings.sh` seeds them.
fn small_message(seq: u64) -> String {
    format!("message number {seq} of the benchmark log")
}

/// About 100 bytes, with a character JSON escapes, so that escaping is measured too.
fn page_message(seq: u64) -> String {
    format!("page message {seq:06}: \"quoted\" and a tab\tof the ten-thousand-message log, ok")
}

fn catch_up_message(seq: u64) -> String {
    format!("message number {seq:07} of the catch-up log")
}

const LEAN_WRITE: &str =
    r#"{"msg":"a lean write of about sixty bytes, acknowledged by all","w":3}"#;

fn main() {
    let seconds = support::chance::setting("BENCH_SECONDS").unwrap_or(8);
    let connections = support::chance::setting("BENCH_CONNECTIONS").unwrap_or(32);
    for tool in ["wrk", "nginx", "taskset"] {
        if !on_path(tool) {
            println!("{tool} is needed (Debian: apt-get install {tool}); nothing measured");
            std::process::exit(1);
        }
    }
    let cpus = Cpus::from_env();
    support::load::pin(std::process::id(), &cpus.load);
    let work = Work::new();
    println!(
        "replog {}: servers on CPUs {} ({}), load on CPUs {}; wrk -t{} -c{connections} -d{seconds}s",
        env!("CARGO_PKG_VERSION"),
        cpus.server,
        cpus.server_count,
        cpus.load,
        cpus.load_count,
    );
    let wrk = Wrk { cpus: cpus.clone(), connections, seconds };

    // The logs, written before any node starts.
    write_log(&work.path("small"), 100, small_message);
    write_log(&work.path("page"), 10_000, page_message);
    let started = Instant::now();
    write_log(&work.path("big"), 1_000_000, catch_up_message);
    println!("(a log of 1,000,000 messages written in {:.1} s)", started.elapsed().as_secs_f64());

    let small = Node::master(&cpus, "small", Some(&work.path("small")), &[]);
    let page = Node::master(&cpus, "page", Some(&work.path("page")), &[]);
    let small_rss = rss_kib(small.pid());
    let small_body = get_body(&format!("{}/messages", small.url));
    let page_body = get_body(&format!("{}/messages", page.url));
    let nginx = Nginx::start(&cpus, &work, &[("small", &small_body), ("page", &page_body)]);

    // Every request of a query of its own (`?fresh=THREAD-N`, which the node ignores): none
    // was answered before, so the component makes each answer.
    let fresh = work.file(
        "fresh.lua",
        "local threads = 0\n\
         function setup(thread) threads = threads + 1; thread:set(\"id\", threads) end\n\
         local n = 0\n\
         function request()\n  n = n + 1\n  \
         return wrk.format(nil, wrk.path .. \"?fresh=\" .. id .. \"-\" .. n)\nend\n",
    );
    let mut per_cpu = Vec::new();
    for (label, node, name, body) in [
        ("a log of 100 messages", &small, "small", &small_body),
        ("a log of 10,000 messages", &page, "page", &page_body),
    ] {
        println!("GET /messages, {label} ({} bytes):", body.len());
        let url = format!("{}/messages", node.url);
        // A large answer takes a core for a while: fewer connections keep the latencies apart.
        let wrk = match body.len() > 100_000 {
            true => Wrk { connections: connections.min(8), ..wrk.clone() },
            false => wrk.clone(),
        };
        let kept = wrk.run("replog, the answer kept", &url, &[node.pid()], None);
        let made = wrk.run("replog, made by the component", &url, &[node.pid()], Some(&fresh));
        let theirs =
            wrk.run("nginx, the same bytes as a file", &nginx.url(name), &nginx.pids(), None);
        compare("kept", &kept, &theirs);
        compare("made", &made, &theirs);
        let rate = |run: &Run| run.rps * body.len() as f64 / cpus.server_count as f64 / 1e9;
        per_cpu.push(format!(
            "  {label}: {:.2} GB/s kept, {:.2} GB/s made, nginx {:.2} GB/s",
            rate(&kept),
            rate(&made),
            rate(&theirs)
        ));
    }
    println!("Bytes of answer a second per server CPU:");
    for line in per_cpu {
        println!("{line}");
    }
    if let (Some(small), Some(page)) = (served_kept(&small.url), served_kept(&page.url)) {
        let served = small + page;
        println!(
            "  ({served} answers sent kept: the nodes' replog_http_kept_answers_served_total)"
        );
    }
    drop(nginx);

    println!("GET /health:");
    wrk.run("replog", &format!("{}/health", small.url), &[small.pid()], None);
    drop(page);

    println!("One event stream from seq 1 of a log of 1,000,000 messages:");
    let big = Node::master(&cpus, "big", Some(&work.path("big")), &[]);
    let rss_before = rss_kib(big.pid());
    // A write first: the log is then committed through it on any build (one before 0.8.0 left a
    // restarted master alone with its commit point at 0 until its next write).
    let (status, _) =
        support::blocking_post(&format!("{}/messages?log=false", big.url), r#"{"msg":"one more"}"#);
    assert_eq!(status, 201, "a write to the master of the big log");
    let runtime = support::load::runtime();
    let caught = runtime.block_on(catch_up(&big.url, 1_000_000));
    println!(
        "  {} messages in {:.3} s: {:.0} messages/s ({:.0} MB/s), every one once, in order, in {} \
         stream{}",
        caught.messages,
        caught.took.as_secs_f64(),
        caught.messages as f64 / caught.took.as_secs_f64(),
        caught.bytes as f64 / caught.took.as_secs_f64() / 1e6,
        caught.streams,
        if caught.streams == 1 { "" } else { "s" },
    );
    let rss_after = rss_kib(big.pid());
    drop(big);

    let post = work.file(
        "post.lua",
        &format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.body = '{LEAN_WRITE}'\n"
        ),
    );
    for storage in ["memory", "disk"] {
        println!("POST /messages?log=false, w=3, a master and two secondaries, logs on {storage}:");
        let data =
            |name: &str| (storage == "disk").then(|| work.path(&format!("{storage}-{name}")));
        let ports = free_ports(2);
        let secondaries: Vec<Node> = (0..2)
            .map(|i| {
                let name = format!("secondary{}", i + 1);
                Node::secondary(&cpus, &name, ports + i, data(&name).as_deref())
            })
            .collect();
        let urls: Vec<String> = secondaries.iter().map(|s| s.url.clone()).collect();
        let master = Node::master(&cpus, "master", data("master").as_deref(), &urls);
        let pids: Vec<u32> =
            std::iter::once(master.pid()).chain(secondaries.iter().map(Node::pid)).collect();
        let url = format!("{}/messages?log=false", master.url);
        wrk.run("replog (master + secondaries)", &url, &pids, Some(&post));
    }

    println!("RSS:");
    println!("  a node idle, holding 100 messages: {:.1} MB", small_rss as f64 / 1024.0);
    println!(
        "  the node holding 1,000,000 messages: {:.1} MB after start, {:.1} MB once the stream \
         read them all",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
}

/// Which CPUs the servers and the load run on.
#[derive(Clone)]
struct Cpus {
    server: String,
    server_count: usize,
    load: String,
    load_count: usize,
}

impl Cpus {
    fn from_env() -> Self {
        // SAFETY: sysconf reads a system setting and has no preconditions.
        let online = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) })
            .unwrap_or(1)
            .max(1);
        let server = std::env::var("BENCH_SERVER_CPUS").unwrap_or_else(|_| "0".to_owned());
        let load = std::env::var("BENCH_LOAD_CPUS").unwrap_or_else(|_| match online {
            1 => "0".to_owned(),
            2 => "1".to_owned(),
            n => format!("1-{}", n - 1),
        });
        if online == 1 {
            println!(
                "one CPU: servers and load share it, and the figures flatter the heavier server"
            );
        }
        let (server_count, load_count) = (count(&server), count(&load));
        Self { server, server_count, load, load_count }
    }
}

/// How many CPUs a list like `0,2-5` names.
fn count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                b.trim().parse::<usize>().unwrap() - a.trim().parse::<usize>().unwrap() + 1
            }
            None => 1,
        })
        .sum()
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The bench's folder, readable by nginx's workers (which drop root), removed at the end.
struct Work(PathBuf);

impl Work {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("replog-reads-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A node's data directory holding `count` messages, written as a node writes its log.
fn write_log(dir: &Path, count: u64, message: fn(u64) -> String) {
    support::inproc::block_on(support::inproc::write_log(dir, count, message));
}

/// A `replog serve` on the server CPUs, stopped by its PID when dropped.
struct Node {
    child: Child,
    url: String,
}

impl Node {
    /// A master with the log in `data` (in memory without), replicating to `secondaries`.
    fn master(cpus: &Cpus, name: &str, data: Option<&Path>, secondaries: &[String]) -> Self {
        let port = free_ports(1);
        let mut command = Self::command(cpus, "master", name, port);
        match data {
            Some(dir) => command.arg("--data-dir").arg(dir),
            None => command.arg("--in-memory"),
        };
        if !secondaries.is_empty() {
            command.env("SECONDARIES", secondaries.join(","));
        }
        // Ready once it takes writes: recovered, its log committed (a master alone: at once).
        Self::start(command, port)
    }

    /// A secondary with its log in `data` (in memory without).
    fn secondary(cpus: &Cpus, name: &str, port: u16, data: Option<&Path>) -> Self {
        let mut command = Self::command(cpus, "secondary", name, port);
        match data {
            Some(dir) => command.arg("--data-dir").arg(dir),
            None => command.arg("--in-memory"),
        };
        Self::start(command, port)
    }

    fn command(cpus: &Cpus, role: &str, name: &str, port: u16) -> Command {
        let replog = std::env::var("BENCH_REPLOG").unwrap_or_else(|_| REPLOG.to_owned());
        let components = std::env::var("BENCH_COMPONENTS")
            .unwrap_or_else(|_| env!("REPLOG_BUILT_COMPONENTS").to_owned());
        let mut command = Command::new("taskset");
        command
            .args(["-c", &cpus.server, &replog, "serve", "--role", role, "--name", name])
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(support::repo_root())
            .env_clear()
            .env("CLUSTER_SECRET", support::SECRET)
            .env("REPLOG_COMPONENTS", components)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Starts `command` and waits until the node is ready (a master: it takes writes).
    fn start(mut command: Command, port: u16) -> Self {
        // taskset execs replog: the PID is the node's.
        let child = command.spawn().expect("taskset and replog start");
        let node = Self { child, url: format!("http://127.0.0.1:{port}") };
        let ready = format!("{}/ready", node.url);
        let deadline = Instant::now() + Duration::from_secs(60);
        while support::blocking_get(&ready).is_none_or(|(status, _)| status != 200) {
            assert!(Instant::now() < deadline, "{} was not ready within 60 s", node.url);
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx serving files of given bytes, a worker per server CPU, stopped by its PID when dropped.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(cpus: &Cpus, work: &Work, files: &[(&str, &[u8])]) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let root = work.path("www");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, bytes) in files {
            std::fs::write(root.join(name), bytes).unwrap();
        }
        let port = free_ports(1);
        let conf = work.file(
            "nginx.conf",
            &format!(
                "worker_processes {workers};\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  default_type application/json;\n\
                 client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
                 fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n\
                 scgi_temp_path {dir}/scgi;\n\
                 server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
                workers = cpus.server_count,
                dir = work.0.display(),
                root = root.display(),
            ),
        );
        let child = Command::new("taskset")
            .args(["-c", &cpus.server, "nginx", "-c"])
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Self { child, port };
        // The same bytes, with a 200: a 403 (workers that cannot read the file) is an answer
        // too, and a fast one.
        for (name, bytes) in files {
            let url = nginx.url(name);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(body) = try_get_body(&url) {
                    assert!(body == *bytes, "nginx does not serve the same bytes at {url}");
                    break;
                }
                assert!(Instant::now() < deadline, "nginx did not serve {url} with a 200");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        nginx
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            if stat_fields(pid).is_some_and(|fields| fields[1] == master.to_string()) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: nginx stops its workers before it exits.
        // SAFETY: a signal to the child this owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The fields of `/proc/PID/stat` after the command's name (`state` is the first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// User and system CPU time of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let fields = stat_fields(pid).unwrap_or_default();
    // utime and stime: fields 14 and 15 of the stat line, 12 and 13 after the name.
    let field = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
    (field(11), field(12))
}

/// wrk's figures for one run, and the servers' CPU per request (user, system) in µs.
struct Run {
    rps: f64,
    user_us: f64,
    system_us: f64,
}

#[derive(Clone)]
struct Wrk {
    cpus: Cpus,
    connections: u64,
    seconds: u64,
}

impl Wrk {
    /// wrk against `url` (with `script`), while `pids` serve: prints and returns its figures.
    fn run(&self, who: &str, url: &str, pids: &[u32], script: Option<&Path>) -> Run {
        let before: Vec<(u64, u64)> = pids.iter().map(|&pid| cpu_ticks(pid)).collect();
        let mut command = Command::new("taskset");
        command.args(["-c", &self.cpus.load, "wrk", "--latency"]).args([
            format!("-t{}", self.cpus.load_count),
            format!("-c{}", self.connections.max(self.cpus.load_count as u64)),
            format!("-d{}s", self.seconds),
        ]);
        if let Some(script) = script {
            command.arg("-s").arg(script);
        }
        let out = command.arg(url).output().expect("wrk runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        let after: Vec<(u64, u64)> = pids.iter().map(|&pid| cpu_ticks(pid)).collect();
        let value = |label: &str| {
            text.lines()
                .find_map(|line| line.trim().strip_prefix(label))
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
                .unwrap_or_default()
        };
        for problem in ["Non-2xx", "Socket errors"] {
            if let Some(line) = text.lines().find(|l| l.contains(problem)) {
                panic!("{who}: {}: not every answer was a success", line.trim());
            }
        }
        let requests: f64 = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        let rps: f64 = value("Requests/sec:").parse().unwrap_or(0.0);
        let hz = 100.0; // USER_HZ, the unit of /proc/PID/stat's times on Linux.
        let spent = |pick: fn(&(u64, u64)) -> u64| {
            let ticks: u64 = after.iter().zip(&before).map(|(a, b)| pick(a) - pick(b)).sum();
            ticks as f64 / hz * 1e6 / requests.max(1.0)
        };
        let run = Run { rps, user_us: spent(|t| t.0), system_us: spent(|t| t.1) };
        println!(
            "  {who:<30} {:>9.0} req/s  p50 {:>9}  p99 {:>9}  CPU per request {:.1} µs user + {:.1} µs system",
            run.rps,
            value("50%"),
            value("99%"),
            run.user_us,
            run.system_us,
        );
        run
    }
}

fn compare(how: &str, ours: &Run, theirs: &Run) {
    let cpu = |r: &Run| r.user_us + r.system_us;
    println!(
        "  replog ({how}) / nginx: {:.0} % of the requests a second, {:.2}x the CPU per request",
        100.0 * ours.rps / theirs.rps,
        cpu(ours) / cpu(theirs)
    );
}

/// The node's `replog_http_kept_answers_served_total` (none from a build without it).
fn served_kept(node: &str) -> Option<u64> {
    let (_, text) = support::blocking_get(&format!("{node}/metrics"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("replog_http_kept_answers_served_total "))
        .and_then(|n| n.trim().parse().ok())
}

fn try_get_body(url: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl").args(["-s", "-f", "-o", "-", url]).output().ok()?;
    out.status.success().then_some(out.stdout)
}

fn get_body(url: &str) -> Vec<u8> {
    try_get_body(url).unwrap_or_else(|| panic!("no 200 from {url}"))
}

/// What a stream catching up delivered.
struct CaughtUp {
    messages: u64,
    bytes: u64,
    took: Duration,
    streams: u32,
}

/// Reads the node's log from `seq` 1 as event streams until `count` messages came, checking
/// each comes once, in order; a stream that ends (`event: end`) is resumed after its last id.
async fn catch_up(node: &str, count: u64) -> CaughtUp {
    let started = Instant::now();
    let mut next = 1;
    let (mut bytes, mut streams) = (0, 0);
    let mut line = Vec::new();
    while next <= count {
        assert!(started.elapsed() < Duration::from_secs(120), "the stream took over 2 minutes");
        streams += 1;
        let mut body = open_stream(node, next).await;
        'stream: while let Some(frame) = body.frame().await {
            let Ok(data) = frame.expect("the stream goes on").into_data() else { continue };
            bytes += data.len() as u64;
            let mut rest = &data[..];
            while let Some(at) = rest.iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&rest[..at]);
                rest = &rest[at + 1..];
                if let Some(id) = line.strip_prefix(b"id: ") {
                    let seq: u64 = std::str::from_utf8(id).unwrap().parse().unwrap();
                    assert_eq!(seq, next, "events out of order");
                    next += 1;
                } else if line.starts_with(b"event: end") {
                    line.clear();
                    break 'stream;
                } else if line.starts_with(b"event: gone") || line.starts_with(b"event: dropped") {
                    panic!("{}", String::from_utf8_lossy(&line));
                }
                line.clear();
                if next > count {
                    break 'stream;
                }
            }
            line.extend_from_slice(rest);
        }
    }
    CaughtUp { messages: next - 1, bytes, took: started.elapsed(), streams }
}

async fn open_stream(node: &str, from: u64) -> hyper::body::Incoming {
    let authority = node.strip_prefix("http://").unwrap();
    let stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!("/messages?from={from}"))
        .header("host", authority)
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("a stream");
    assert_eq!(response.status(), 200, "a stream was refused");
    response.into_body()
}
