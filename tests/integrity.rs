//! One log, whatever happens: the rules that keep an acknowledged write from being lost,
//! duplicated or replaced, each driven through the real components in process.
//!
//! - an acknowledgement counts only for what the master sent, never for entries from elsewhere;
//! - a master of an older epoch is fenced by its secondaries and stops taking writes;
//! - a master whose data was wiped recovers the log from its secondaries before taking writes;
//! - a data directory belongs to one node at a time.

mod support;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use replog::config::Role;
use replog::node::Node;
use replog::state::{Change, Entry};
use serde_json::json;
use support::inproc::*;
use support::wait::eventually;

async fn write(master: &Node, msg: &str, w: u64) -> (u16, serde_json::Value) {
    let body = format!(r#"{{"msg": "{msg}", "w": {w}}}"#);
    let answer = call(master, "POST", "/messages?log=false", body).await;
    (answer.status, answer.json)
}

fn epochs(node: &Node) -> Vec<u64> {
    node.state().log().read(1, u32::MAX).into_iter().map(|e| e.epoch).collect()
}

/// A fresh directory for one test's nodes, removed first if a previous run left it.
fn data_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("replog-integrity-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn entries_a_secondary_got_from_elsewhere_are_never_counted_and_are_replaced() {
    block_on(async {
        let (running, urls) = serve(vec![secondary_node("s", Duration::ZERO).await]).await;
        let master = master_node(&urls, Duration::from_secs(5)).await;
        // What a forged request left in an earlier version: entries ahead of anything the
        // master sent, put straight into the secondary's log.
        let secondary = running.node("s").unwrap();
        let log = &secondary.state().log();
        forge(log).await;

        for (i, msg) in ["m1", "m2", "m3", "m4"].into_iter().enumerate() {
            let (status, json) = write(&master, msg, 2).await;
            assert_eq!(status, 201, "{json}");
            assert_eq!(json["seq"], i as u64 + 1);
            // Acknowledged means the secondary holds exactly the master's entries this far.
            assert_eq!(&log_of(secondary)[..=i], &log_of(&master)[..=i]);
        }
        assert_eq!(log_of(secondary), ["m1", "m2", "m3", "m4"]);
        assert_eq!(epochs(secondary), epochs(&master));
        assert_eq!(master.state().sequencer().unwrap().peers().acked(&urls[0]), 4);
        running.shutdown().await;
    });
}

/// Puts two entries the master never sent, `FORGED` and `FORGED too` (epoch 0), straight into
/// `log`: what a forged request left in an earlier version.
async fn forge(log: &replog::state::Log) {
    let forged = vec![
        Entry { seq: 1, epoch: 0, key: None, msg: "FORGED".into() },
        Entry { seq: 2, epoch: 0, key: None, msg: "FORGED too".into() },
    ];
    log.write(Change { version: log.version(), entries: forged, ..Change::default() })
        .await
        .unwrap();
}

/// A secondary that claims, whatever it is sent, to hold 100 entries of the master's epoch.
async fn boastful_secondary() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        use http_body_util::BodyExt;
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let epoch = sent["epoch"].as_u64().unwrap();
                        let claim = json!({"seq": 100, "epoch": epoch});
                        let answer = match sent.get("prev") {
                            None => {
                                json!({"status": "ok", "epoch": epoch, "last": {"seq": 0, "epoch": 0}, "count": 0})
                            }
                            Some(_) => {
                                json!({"status": "ok", "epoch": epoch, "last": claim, "count": 100, "matched": claim})
                            }
                        };
                        let body =
                            http_body_util::Full::new(bytes::Bytes::from(answer.to_string()));
                        Ok::<_, Infallible>(http::Response::new(body))
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    url
}

#[test]
fn an_acknowledgement_of_more_than_was_sent_is_not_counted() {
    block_on(async {
        let boaster = boastful_secondary().await;
        let master = master_node(std::slice::from_ref(&boaster), Duration::from_millis(600)).await;
        let (status, json) = write(&master, "only one", 2).await;
        assert_eq!(status, 502, "{json}");
        let peers = master.state().sequencer().unwrap().peers();
        assert_eq!(peers.acked(&boaster), 0);
        // The replicator alternates between probing (which the boaster answers honestly, so the
        // contact counts as fine) and sending the entry (which it over-acknowledges), so the
        // refusal is looked for over a bounded time rather than at one instant.
        eventually(Duration::from_secs(10), "the boast being refused as not counted", || {
            let peer = peers.get(&boaster).unwrap();
            assert_eq!(peer.acked, 0, "an over-acknowledgement was counted");
            peer.last_error.is_some_and(|e| e.contains("not counted"))
        })
        .await;
    });
}

#[test]
fn a_master_of_an_older_epoch_is_fenced_and_takes_no_more_writes() {
    block_on(async {
        let (running, urls) = serve(vec![secondary_node("s", Duration::ZERO).await]).await;
        let old = master_node(&urls, Duration::from_secs(2)).await;
        assert_eq!(write(&old, "from the old master", 2).await.0, 201);

        // A second master for the same secondary: it holds no log, so it recovers the
        // secondary's and takes over in a newer epoch.
        let new = master_node(&urls, Duration::from_secs(2)).await;
        assert_eq!(log_of(&new), ["from the old master"], "recovered");
        assert_eq!(write(&new, "from the new master", 2).await.0, 201);
        let new_epoch = new.state().log().epoch();
        assert!(new_epoch > old.state().log().epoch());

        // The old master still takes a w=1 write, then its secondary refuses it.
        let (status, json) = write(&old, "too late", 1).await;
        assert_eq!(status, 201, "{json}");
        eventually(Duration::from_secs(10), "the old master being fenced", || {
            old.state().sequencer().unwrap().mode() == replog::state::Mode::Fenced(new_epoch)
        })
        .await;
        let (status, json) = write(&old, "refused", 1).await;
        assert_eq!(status, 503, "{json}");
        assert_eq!(json["fenced"], true, "{json}");
        let health = call(&old, "GET", "/health", "").await;
        assert_eq!(
            (health.json["state"].as_str(), health.json["writable"].as_bool()),
            (Some("fenced"), Some(false))
        );

        let secondary = running.node("s").unwrap();
        assert_eq!(log_of(secondary), ["from the old master", "from the new master"]);
        running.shutdown().await;
    });
}

/// A secondary keeping its log in `dir`, on `listen`.
async fn durable_secondary(name: &str, dir: &Path, listen: &str) -> replog::cluster::Running {
    let mut config = config(name, Role::Secondary);
    config.data_dir = Some(dir.join(name));
    config.listen = listen.parse().unwrap();
    replog::cluster::serve_nodes(vec![node(config, SECONDARY).await]).await.unwrap()
}

async fn durable_master(dir: &Path, urls: &[String]) -> replog::cluster::Running {
    let mut config = config("master", Role::Master);
    config.data_dir = Some(dir.join("master"));
    let config = config.with("SECONDARIES", urls.join(",")).with("REPLICATION_TIMEOUT_MS", 2000);
    replog::cluster::serve_nodes(vec![node(config, MASTER).await]).await.unwrap()
}

#[test]
fn a_master_whose_data_was_wiped_recovers_the_log_before_taking_writes() {
    block_on(async {
        let dir = data_dir("wiped");
        let s1 = durable_secondary("s1", &dir, "127.0.0.1:0").await;
        let s2 = durable_secondary("s2", &dir, "127.0.0.1:0").await;
        let urls =
            vec![format!("http://{}", s1.nodes()[0].1), format!("http://{}", s2.nodes()[0].1)];
        let s2_addr = s2.nodes()[0].1.to_string();

        let master = durable_master(&dir, &urls).await;
        settled(&master.nodes()[0].0).await;
        let mut written = Vec::new();
        for i in 1..=6 {
            let w = 2 + i % 2;
            let msg = format!("message {i}, w={w}");
            let (status, json) = write(&master.nodes()[0].0, &msg, w).await;
            assert_eq!(status, 201, "{json}");
            written.push(msg);
        }
        let first_epoch = master.nodes()[0].0.state().log().epoch();
        master.shutdown().await;
        std::fs::remove_dir_all(dir.join("master")).unwrap();

        // With secondary 2 down, a master with no log cannot know that secondary 1 holds
        // everything acknowledged: it waits, serving reads.
        s2.shutdown().await;
        let master = durable_master(&dir, &urls).await;
        let node = master.nodes()[0].0.clone();
        eventually(Duration::from_secs(10), "recovery waiting for secondary 2", || {
            matches!(node.state().sequencer().unwrap().mode(), replog::state::Mode::Recovering(why) if why.contains(&urls[1]))
        })
        .await;
        let (status, json) = write(&node, "too early", 1).await;
        assert_eq!((status, json["recovering"].as_bool()), (503, Some(true)), "{json}");
        assert!(json["error"].as_str().unwrap().contains("every secondary"), "{json}");
        assert_eq!(call(&node, "GET", "/messages", "").await.status, 200, "reads are served");

        let s2 = durable_secondary("s2", &dir, &s2_addr).await;
        settled(&node).await;
        assert_eq!(log_of(&node), written, "every acknowledged write is back, in order");
        assert!(node.state().log().epoch() > first_epoch, "in a new epoch");
        let (status, json) = write(&node, "after recovery", 3).await;
        assert_eq!((status, json["seq"].as_u64()), (201, Some(7)), "{json}");
        for secondary in [&s1, &s2] {
            assert_eq!(log_of(&secondary.nodes()[0].0), log_of(&node));
        }
        master.shutdown().await;
        s1.shutdown().await;
        s2.shutdown().await;
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_data_directory_belongs_to_one_node_at_a_time() {
    block_on(async {
        let dir = data_dir("locked");
        let mut first = config("first", Role::Secondary);
        first.data_dir = Some(dir.clone());
        let first = node(first, SECONDARY).await;
        let mut second = config("second", Role::Secondary);
        second.data_dir = Some(dir.clone());
        second.component = component_path(SECONDARY);
        let refused =
            Node::new(runtime(), second.clone(), compiled(SECONDARY)).await.err().unwrap();
        assert_eq!(
            refused.to_string(),
            format!("data directory {} is in use by pid {}", dir.display(), std::process::id())
        );
        drop(first);
        let again = Node::new(runtime(), second, compiled(SECONDARY)).await;
        assert!(again.is_ok(), "free once the first node is gone");
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_stream_of_uncommitted_entries_says_which_were_replaced_and_goes_on() {
    block_on(async {
        let (running, _) = serve(vec![secondary_node("s", Duration::ZERO).await]).await;
        let secondary = running.node("s").unwrap();
        let log = &secondary.state().log();
        // Entries the master never sent, as in the test above: a stream of everything the
        // secondary holds (`committed=false`) shows them...
        forge(log).await;
        let request = http::Request::builder()
            .uri("http://node.test/messages?from=1&committed=false")
            .header("host", "node.test")
            .header("accept", "text/event-stream")
            .body(bytes::Bytes::new())
            .unwrap();
        let response = secondary.handle(request).await;
        assert_eq!(response.status(), 200);
        let mut events = Events::new(response.into_body());
        assert_eq!(
            events.until("FORGED too").await,
            [
                "id: 1",
                r#"data: {"seq":1,"epoch":0,"msg":"FORGED"}"#,
                "id: 2",
                r#"data: {"seq":2,"epoch":0,"msg":"FORGED too"}"#
            ]
        );

        // ... and, once a repair replaces them (as a master's would), says from where they
        // were dropped, then sends what the secondary holds now, from there.
        let replacement = vec![Entry { seq: 1, epoch: 1, key: None, msg: "m1".into() }];
        let repair = Change {
            version: log.version(),
            epoch: 1,
            truncate_after: Some(0),
            begin: None,
            entries: replacement,
        };
        log.write(repair).await.unwrap();
        let seen = events.until("m1").await;
        assert_eq!(
            seen,
            [
                "event: dropped",
                r#"data: {"from":1}"#,
                "id: 1",
                r#"data: {"seq":1,"epoch":1,"msg":"m1"}"#
            ]
        );
        running.shutdown().await;
    });
}

/// The lines of an event stream's body, read as they come.
struct Events<B> {
    body: B,
    text: String,
}

impl<B: http_body::Body<Data = bytes::Bytes> + Unpin> Events<B>
where
    B::Error: std::fmt::Debug,
{
    fn new(body: B) -> Self {
        Self { body, text: String::new() }
    }

    /// The events' lines (comments and blank lines left out) up to the first that contains
    /// `what`, within 10 s.
    async fn until(&mut self, what: &str) -> Vec<String> {
        use http_body_util::BodyExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.text.find(what) {
                let line_end = self.text[end..].find('\n').map_or(self.text.len(), |i| end + i + 1);
                let taken: String = self.text.drain(..line_end).collect();
                return taken
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with(':') && !l.starts_with("retry"))
                    .map(str::to_owned)
                    .collect();
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {what:?} within 10 s; got {:?}", self.text))
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.text.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
}
