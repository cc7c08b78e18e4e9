//! Following the log: committed reads, long-polls and event streams on every node, against
//! `replog` processes. What a tail shows is checked against what the writes were acknowledged
//! at; every wait is on a condition, bounded.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client::{blocking, blocking_get, blocking_post};
use support::process::{Cluster, Process, free_ports, replog, rss_kib};

/// The JSON of a `GET` that must answer 200.
fn get_json(url: &str) -> Value {
    let (status, body) = blocking_get(url).unwrap_or_else(|| panic!("no answer from {url}"));
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn messages(page: &Value) -> Vec<String> {
    page["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()).collect()
}

/// Writes `msg` with write concern `w` through the master at `master`, and returns its seq.
fn write(master: &str, msg: &str, w: u64) -> u64 {
    let (status, body) = blocking_post(
        &format!("{master}/messages?log=false"),
        &format!(r#"{{"msg":"{msg}","w":{w}}}"#),
    );
    assert_eq!(status, 201, "{msg}: {body}");
    serde_json::from_str::<Value>(&body).unwrap()["seq"].as_u64().unwrap()
}

/// A gauge or a counter of `node`'s `/metrics`.
fn gauge(node: &str, name: &str) -> u64 {
    let (_, text) = blocking_get(&format!("{node}/metrics")).expect("metrics");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{name} not in {node}/metrics")) as u64
}

fn wait_until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One server-sent event.
#[derive(Debug, Default, Clone, PartialEq)]
struct Event {
    id: Option<u64>,
    event: String,
    data: String,
}

/// An event stream of `GET /messages`, read as it comes.
struct Stream {
    reader: BufReader<TcpStream>,
    /// Bytes left in the chunk being read.
    left: usize,
}

impl Stream {
    /// Opens the stream at `node` with `query`, resuming after `last_event_id` if given; the
    /// status and headers are returned when it is not 200.
    fn open(node: &str, query: &str, last_event_id: Option<u64>) -> Result<Self, (u16, String)> {
        let authority = node.strip_prefix("http://").unwrap();
        let mut stream = TcpStream::connect(authority).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(
            stream,
            "GET /messages{query} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n{resume}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        if status != 200 {
            let mut rest = vec![0; 4096];
            let n = reader.read(&mut rest).unwrap_or(0);
            return Err((status, format!("{head}{}", String::from_utf8_lossy(&rest[..n]))));
        }
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("content-type: text/event-stream"), "{head}");
        assert!(lower.contains("x-accel-buffering: no"), "{head}");
        assert!(lower.contains("transfer-encoding: chunked"), "{head}");
        Ok(Self { reader, left: 0 })
    }

    /// The next event (comments and `retry` skipped), within the socket's timeout.
    fn next(&mut self) -> Event {
        let mut event = Event { event: "message".into(), ..Event::default() };
        let mut any = false;
        loop {
            let line = self.line();
            if line.is_empty() {
                if any {
                    return event;
                }
                continue;
            }
            if let Some(id) = line.strip_prefix("id: ") {
                event.id = Some(id.parse().unwrap());
            } else if let Some(name) = line.strip_prefix("event: ") {
                event.event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ") {
                event.data = data.to_owned();
            } else {
                continue;
            }
            any = true;
        }
    }

    /// The next line of the events, through the chunked encoding (which splits them anywhere).
    fn line(&mut self) -> String {
        let mut line = String::new();
        loop {
            let mut byte = [0];
            self.read_data(&mut byte);
            if byte[0] == b'\n' {
                return line;
            }
            line.push(byte[0] as char);
        }
    }

    fn read_data(&mut self, byte: &mut [u8; 1]) {
        if self.left == 0 {
            let mut size = String::new();
            loop {
                size.clear();
                self.reader.read_line(&mut size).expect("the stream goes on");
                if !size.trim().is_empty() {
                    break;
                }
            }
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            assert!(size > 0, "the stream ended");
            self.left = size;
        }
        self.reader.read_exact(byte).expect("the stream goes on");
        self.left -= 1;
    }

    /// Entries until the one at `seq`, as `(seq, msg)`; fails on any other event.
    fn entries_through(&mut self, seq: u64) -> Vec<(u64, String)> {
        let mut got = Vec::new();
        loop {
            let event = self.next();
            if event.event == "ping" {
                continue;
            }
            assert_eq!(event.event, "message", "{event:?}");
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let at = data["seq"].as_u64().unwrap();
            assert_eq!(event.id, Some(at), "the id is the entry's seq");
            got.push((at, data["msg"].as_str().unwrap().to_owned()));
            if at >= seq {
                return got;
            }
        }
    }
}

/// `(seq, msg)` for seqs `from..=to`, each once and in order: what a gap-free reader gets.
fn consecutive(got: &[(u64, String)], from: u64, to: u64) {
    let seqs: Vec<u64> = got.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (from..=to).collect::<Vec<_>>(), "no gap, no duplicate");
}

#[test]
fn a_long_poll_answers_at_the_append_and_an_idle_one_after_its_wait() {
    let cluster = Cluster::start(&[0, 0], &[]);
    let secondary = cluster.secondaries[0].clone();
    let first = write(&cluster.master, "first", 3);

    let url = format!("{secondary}/messages?from={}&wait=20000", first + 1);
    let started = Instant::now();
    let poll = std::thread::spawn(move || (blocking_get(&url), started.elapsed()));
    wait_until(Duration::from_secs(10), "the long-poll waiting", || {
        gauge(&secondary, "replog_tails") == 1
    });
    let second = write(&cluster.master, "second", 3);
    let (answer, took) = poll.join().unwrap();
    let (status, body) = answer.expect("an answer");
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(messages(&page), ["second"]);
    assert_eq!(page["next"], second + 1, "{page}");
    assert!(took < Duration::from_secs(10), "answered at the append, not after its wait: {took:?}");
    eprintln!("a long-poll waiting 20 s answered after {took:?}, the write in between");

    // Nothing comes: an empty page after the wait, with the same `next`.
    let started = Instant::now();
    let idle = get_json(&format!("{}/messages?from={}&wait=700", cluster.master, second + 1));
    let took = started.elapsed();
    assert!(messages(&idle).is_empty(), "{idle}");
    assert_eq!(idle["next"], second + 1, "{idle}");
    assert!(took >= Duration::from_millis(650), "it waited: {took:?}");
    assert_eq!(gauge(&cluster.master, "replog_tails"), 0, "its place is given back");
}

#[test]
fn a_page_asked_again_of_an_unchanged_log_is_sent_kept_and_every_change_is_seen_at_once() {
    let cluster = Cluster::start(&[0, 0], &[]);
    for i in 1..=5 {
        write(&cluster.master, &format!("m{i}"), 3);
    }
    let kept = "replog_http_kept_answers_served_total";
    for node in cluster.all() {
        // Kept once asked for a second time, and sent kept the third.
        let before = gauge(node, kept);
        let first = blocking_get(&format!("{node}/messages")).unwrap();
        let second = blocking_get(&format!("{node}/messages")).unwrap();
        assert_eq!(gauge(node, kept), before, "{node}: a request asked once is not kept");
        let third = blocking_get(&format!("{node}/messages")).unwrap();
        assert_eq!((first.0, &first.1), (200, &second.1), "{node}: the same answer");
        assert_eq!(first.1, third.1, "{node}: the same answer");
        assert_eq!(messages(&serde_json::from_str(&first.1).unwrap()).len(), 5);
        assert_eq!(gauge(node, kept), before + 1, "{node}: the third answer was the kept one");
    }
    // Writes between reads: every read after a write's 201 holds it, on every node (w=3), though
    // each node was sending a kept answer a moment before.
    let served = |cluster: &Cluster| cluster.all().iter().map(|n| gauge(n, kept)).sum::<u64>();
    let served_before = served(&cluster);
    for i in 6..=25 {
        let msg = format!("m{i}");
        let seq = write(&cluster.master, &msg, 3);
        for node in cluster.all() {
            for _ in 0..2 {
                let page = get_json(&format!("{node}/messages"));
                let held = messages(&page);
                assert_eq!(held.len() as u64, seq, "{node}: {page}");
                assert_eq!(held.last(), Some(&msg), "{node}: the write just acknowledged");
            }
        }
    }
    assert!(served(&cluster) > served_before, "reads between writes were sent again");
    // The commit point moves without an entry: a page that shows it is not kept past it.
    let seq = write(&cluster.master, "w1", 1);
    for node in cluster.all() {
        wait_until(Duration::from_secs(10), "the page's commit point catching up", || {
            get_json(&format!("{node}/messages"))["committed"] == seq
        });
    }
    // An answer is kept for the headers it depends on: an event stream is not a page.
    let node = &cluster.secondaries[0];
    for _ in 0..3 {
        let _ = get_json(&format!("{node}/messages?from=3"));
    }
    let mut stream = Stream::open(node, "?from=3", None).expect("a stream, not the kept page");
    assert_eq!(stream.entries_through(4), [(3, "m3".to_owned()), (4, "m4".to_owned())]);
}

#[test]
fn a_master_alone_serves_its_log_to_committed_readers_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("replog-alone-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = free_ports(1);
    let master = format!("http://127.0.0.1:{port}");
    let start = || {
        let mut command = support::process::serve("master", port);
        command.env_remove("IN_MEMORY").arg("--data-dir").arg(&dir);
        let mut process = Process::spawn("alone", command);
        process.wait_writable(&master);
        process
    };
    let first = start();
    for i in 1..=3 {
        write(&master, &format!("m{i}"), 1);
    }
    first.kill();
    let _again = start();
    // No write since the restart: a cluster of one is its own majority, so what it holds is
    // committed as soon as it takes writes again.
    wait_until(Duration::from_secs(10), "the log committed with no write", || {
        get_json(&format!("{master}/health"))["committed"] == 3
    });
    let mut stream = Stream::open(&master, "?from=1", None).unwrap();
    let got = stream.entries_through(3);
    consecutive(&got, 1, 3);
    drop(stream);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_event_stream_resumes_after_its_last_event_without_gap_or_duplicate() {
    let cluster = Cluster::start(&[0, 0], &[]);
    let sent: Vec<String> = (1..=5).map(|i| format!("m{i}")).collect();
    for msg in &sent {
        write(&cluster.master, msg, 2);
    }
    let secondary = &cluster.secondaries[1];
    let mut stream = Stream::open(secondary, "?from=1", None).unwrap();
    let mut got = stream.entries_through(5);
    drop(stream);

    // More while no one listens, then a resumed stream from another node.
    let more: Vec<String> = (6..=12).map(|i| format!("m{i}")).collect();
    for msg in &more {
        write(&cluster.master, msg, 2);
    }
    let mut resumed = Stream::open(&cluster.master, "?from=1", Some(5)).unwrap();
    got.extend(resumed.entries_through(12));
    consecutive(&got, 1, 12);
    let msgs: Vec<String> = got.into_iter().map(|(_, msg)| msg).collect();
    assert_eq!(msgs, [sent, more].concat());

    // It goes on as the log grows.
    let seq = write(&cluster.master, "live", 2);
    assert_eq!(resumed.entries_through(seq), [(seq, "live".to_owned())]);
}

#[test]
fn a_slow_stream_reader_holds_the_node_to_a_bound_and_then_catches_up() {
    let cluster = Cluster::start(&[0, 0], &[]);
    // About 12 MiB of log: 200 messages of 60 KiB.
    let big = "x".repeat(60 * 1024);
    let mut last = 0;
    for _ in 0..200 {
        last = write(&cluster.master, &big, 3);
    }
    let pid = cluster.process.id();
    let before = rss_kib(pid);
    // Eight readers that read nothing: each stream stops where the sockets (the kernel's
    // memory, not the node's) and the host's buffer are full, and waits; nothing of the log is
    // copied for them beyond that.
    let secondary = &cluster.secondaries[0];
    let mut readers: Vec<Stream> =
        (0..8).map(|_| Stream::open(secondary, "?from=1", None).unwrap()).collect();
    wait_until(Duration::from_secs(10), "eight tails", || gauge(secondary, "replog_tails") == 8);
    // Writes and reads go on meanwhile.
    for i in 0..20 {
        last = write(&cluster.master, &format!("during-{i}"), 3);
    }
    let held = rss_kib(pid);
    let grown = held.saturating_sub(before);
    eprintln!("RSS {before} KiB before the slow readers, {held} KiB with them (+{grown} KiB)");
    assert!(grown < 48 * 1024, "8 stalled streams of a 12 MiB log grew the node by {grown} KiB");

    for reader in &mut readers {
        let got = reader.entries_through(last);
        consecutive(&got, 1, last);
    }
}

#[test]
fn uncommitted_entries_never_reach_a_committed_reader() {
    // A master and two secondaries as processes: one is stopped, the other slow, so a `w=1`
    // write is held by the master alone for a while.
    let base = free_ports(3);
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let mut secondaries = Vec::new();
    for (i, delay) in [(1, "0"), (2, "1500")] {
        let mut command = replog();
        command.args(["serve", "--role", "secondary"]).env("PORT", (base + i).to_string());
        command.env("DELAY_MS", delay);
        let mut node = Process::spawn(&format!("secondary{i}"), command);
        node.wait_healthy(&format!("{}/health", url(base + i)));
        secondaries.push(node);
    }
    let mut command = replog();
    command
        .args(["serve", "--role", "master"])
        .env("PORT", base.to_string())
        .env("SECONDARIES", format!("{},{}", url(base + 1), url(base + 2)))
        .env("PEER_TIMEOUT_MS", "5000");
    let mut master = Process::spawn("master", command);
    let master_url = url(base);
    master.wait_writable(&master_url);
    let committed = write(&master_url, "committed", 3);

    // The slow one is stopped too while the checks run, so that it cannot hold the write
    // before they are done, however slowly this machine runs them.
    let (stopped, slow_pid) = (secondaries[0].id(), secondaries[1].id());
    signal(stopped, "-STOP");
    signal(slow_pid, "-STOP");
    let seq = write(&master_url, "held by the master alone", 1);
    assert_eq!(seq, committed + 1);
    // Present in a plain read at once (the original project's meaning)...
    assert_eq!(messages(&get_json(&format!("{master_url}/messages"))).len() as u64, seq);
    // ... absent from a committed read, a long-poll and a stream on the master.
    let read = get_json(&format!("{master_url}/messages?committed=true"));
    assert_eq!(messages(&read), ["committed"], "{read}");
    assert_eq!(read["committed"], committed, "{read}");
    let poll = get_json(&format!("{master_url}/messages?from={seq}&wait=300"));
    assert!(messages(&poll).is_empty(), "{poll}");
    let mut stream = Stream::open(&master_url, &format!("?from={committed}"), None).unwrap();
    assert_eq!(stream.entries_through(committed), [(committed, "committed".to_owned())]);

    // Once the slow secondary holds it, a majority does: the stream and tails on the nodes
    // show it (the stopped one as soon as it runs again).
    signal(slow_pid, "-CONT");
    assert_eq!(stream.entries_through(seq), [(seq, "held by the master alone".to_owned())]);
    let slow = url(base + 2);
    wait_until(Duration::from_secs(10), "the slow secondary's tail showing it", || {
        blocking_get(&format!("{slow}/messages?from={seq}&wait=1000"))
            .is_some_and(|(_, body)| body.contains("held by the master alone"))
    });
    signal(stopped, "-CONT");
    let resumed = url(base + 1);
    wait_until(Duration::from_secs(10), "the stopped secondary's tail showing it", || {
        blocking_get(&format!("{resumed}/messages?from={seq}&wait=1000"))
            .is_some_and(|(_, body)| body.contains("held by the master alone"))
    });
    for node in [&master_url, &slow, &resumed] {
        let read = get_json(&format!("{node}/messages?committed=true"));
        assert_eq!(messages(&read), ["committed", "held by the master alone"], "{node}: {read}");
    }
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
    assert!(status.unwrap().success(), "kill {signal} {pid}");
}

#[test]
fn past_the_tail_limit_a_tail_gets_503_and_writes_and_reads_go_on() {
    let cluster = Cluster::start(&[0, 0], &["--max-tails", "2"]);
    let node = &cluster.secondaries[0];
    let first = Stream::open(node, "?from=1", None).unwrap();
    let _second = Stream::open(node, "?from=1", None).unwrap();
    let (status, refusal) = Stream::open(node, "?from=1", None).err().expect("a third refused");
    assert_eq!(status, 503, "{refusal}");
    assert!(refusal.contains("MAX_TAILS"), "{refusal}");
    assert!(refusal.to_ascii_lowercase().contains("retry-after"), "{refusal}");
    let (status, body) = blocking_get(&format!("{node}/messages?wait=5000")).unwrap();
    assert_eq!(status, 503, "a long-poll too: {body}");
    // Everything else is served.
    let seq = write(&cluster.master, "still written", 3);
    assert_eq!(messages(&get_json(&format!("{node}/messages"))), ["still written"]);
    // A place given back is taken again. A stream learns that its reader left when it next
    // sends something (an entry, or its ping): here, the entries written meanwhile.
    drop(first);
    let mut written = seq;
    wait_until(Duration::from_secs(10), "a place given back", || {
        written = write(&cluster.master, "pokes the streams", 3);
        Stream::open(node, "?from=1", None).is_ok()
    });
    let mut again = Stream::open(&cluster.master, "?from=1", None).unwrap();
    consecutive(&again.entries_through(written), 1, written);
}

#[test]
fn bad_positions_are_refused_with_json_and_a_start_past_the_end_is_an_empty_page() {
    let cluster = Cluster::start(&[0], &[]);
    write(&cluster.master, "one", 2);
    for node in cluster.all() {
        for query in ["from=-1", "from=x", "limit=-5", "wait=soon", "committed=maybe"] {
            let (status, body) = blocking("GET", &format!("{node}/messages?{query}"), "").unwrap();
            assert_eq!(status, 400, "{query}: {body}");
            let error: Value = serde_json::from_str(&body).unwrap();
            assert!(error["error"].is_string(), "{query}: {body}");
        }
        let past = get_json(&format!("{node}/messages?from=10"));
        assert!(messages(&past).is_empty(), "{past}");
        assert_eq!(past["next"], 10, "{past}");
        let (status, _) = Stream::open(node, "", Some(u64::MAX - 1)).map(|_| (200, ())).unwrap();
        assert_eq!(status, 200, "a stream from far past the end waits");
        let refused = Stream::open(node, "?from=-2", None);
        assert_eq!(refused.err().map(|(status, _)| status), Some(400));
    }
}

/// `replog ARGS` with `stdin`, to its end: exit status, stdout, stderr.
fn run_replog(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = replog()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn replog_append_prints_seqs_and_replog_tail_prints_the_log_from_any_node() {
    let cluster = Cluster::start(&[0, 0], &[]);
    let master = cluster.master.as_str();
    let (ok, out, err) = run_replog(&["append", master, "a", "b", "c"], "");
    assert!(ok, "{err}");
    assert_eq!(out, "1\n2\n3\n");
    let (ok, out, err) = run_replog(&["append", master, "--w", "2", "--id", "k"], "d\n\ne\n");
    assert!(ok, "{err}");
    assert_eq!(out, "4\n5\n", "one message per line of stdin, empty lines skipped");
    let (ok, out, _) = run_replog(&["append", master, "--id", "k", "d", "e"], "");
    assert!(ok);
    assert_eq!(out, "4\n5\n", "sent again with the same keys: the same seqs, nothing new");

    let closed = format!("http://127.0.0.1:{}", support::inproc::closed_port());
    let nodes = format!("{closed},{}", cluster.secondaries[1]);
    let (ok, out, err) = run_replog(&["tail", &nodes, "--json", "--from", "2"], "");
    assert!(ok, "{err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    assert_eq!(lines[3]["msg"], "e");
    assert!(err.contains(&closed), "the node that failed is named: {err}");
    let (ok, out, _) = run_replog(&["tail", &cluster.secondaries[0]], "");
    assert!(ok);
    assert_eq!(out, "a\nb\nc\nd\ne\n");

    // In a pipe that closes, a follower ends (the log has five lines; head wants three).
    let pipeline =
        format!("{} tail --follow {} | head -3", support::process::REPLOG, cluster.secondaries[0]);
    let mut shell = std::process::Command::new("sh")
        .args(["-c", &pipeline])
        .env("CLUSTER_SECRET", support::SECRET)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = shell.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = shell.kill();
            panic!("`replog tail --follow | head -3` did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut out = String::new();
    shell.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out, "a\nb\nc\n");

    // Failures as a Unix tool's: a message on stderr, a non-zero exit.
    let (ok, _, err) = run_replog(&["tail", &closed], "");
    assert!(!ok && err.contains("no node answered"), "{err}");
    let (ok, _, err) = run_replog(&["append", &closed, "x"], "");
    assert!(!ok && err.contains("was not written"), "{err}");
    let (ok, _, err) = run_replog(&["append", &cluster.secondaries[0], "x"], "");
    assert!(!ok && err.contains("405"), "a secondary takes no writes: {err}");
    let (ok, _, err) = run_replog(&["tail", "ftp://x"], "");
    assert!(!ok && err.contains("not an http:// URL"), "{err}");
}
