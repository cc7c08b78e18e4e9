//! Instance reuse: an instance serves calls one after another, up to `INSTANCE_REUSE`, and is
//! never used again after a trap or a limit. The `runaway` component counts the calls its
//! instance served in its own memory (`/calls`), which tells a kept instance from a new one.
//! (That a new version never runs on an old instance is in `reload.rs`.)

mod support;

use std::time::Duration;

use replog::config::{Limits, Role};
use replog::node::Node;
use support::inproc::*;
use support::wait::eventually;

async fn runaway(reuse: u32) -> Node {
    runaway_with_peer(reuse, "").await
}

async fn runaway_with_peer(reuse: u32, peer: &str) -> Node {
    let mut config = config("runaway", Role::Master).with("SECONDARIES", peer);
    config.limits = Limits { reuse, cpu_budget: Duration::from_millis(300), ..Limits::default() };
    node(config, RUNAWAY).await
}

/// What `/calls` says: calls its instance served, this one included; once the instance is
/// back among the idle ones (the answer may come before its call has returned).
async fn calls(node: &Node) -> u64 {
    let answer = call(node, "GET", "/calls", "").await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    settled(node).await;
    answer.json["calls"].as_u64().unwrap()
}

/// Waits until no call runs on `node`: every instance is back among the idle ones, or gone.
async fn settled(node: &Node) {
    eventually(Duration::from_secs(5), "the call to return", || {
        node.metrics().lines().any(|line| line == "replog_instances_in_use 0")
    })
    .await;
}

#[test]
fn an_instance_serves_calls_one_after_another_up_to_its_count() {
    block_on(async {
        let node = runaway(3).await;
        let mut seen = Vec::new();
        for _ in 0..7 {
            seen.push(calls(&node).await);
        }
        assert_eq!(seen, [1, 2, 3, 1, 2, 3, 1], "three calls each, then a new instance");
    });
}

#[test]
fn with_a_reuse_of_one_every_call_has_a_new_instance() {
    block_on(async {
        let node = runaway(1).await;
        for _ in 0..4 {
            assert_eq!(calls(&node).await, 1);
        }
    });
}

#[test]
fn an_instance_stopped_by_a_limit_is_never_used_again() {
    block_on(async {
        let node = runaway(Limits::DEFAULT_REUSE).await;
        assert_eq!((calls(&node).await, calls(&node).await), (1, 2), "kept between calls");
        // The kept instance takes the next call, which loops until its CPU budget is spent.
        let stopped = call(&node, "GET", "/spin", "").await;
        assert_eq!(stopped.status, 500, "{:?}", stopped.json);
        settled(&node).await;
        assert_eq!(calls(&node).await, 1, "a new instance after the CPU limit");
        assert_eq!(calls(&node).await, 2);
        // The same for memory: the kept instance grows until the limit stops it.
        let stopped = call(&node, "GET", "/hog", "").await;
        assert_eq!(stopped.status, 500, "{:?}", stopped.json);
        settled(&node).await;
        assert_eq!(calls(&node).await, 1, "a new instance after the memory limit");
        // A call after a stopped one on a kept instance gets its whole CPU budget again.
        for _ in 0..3 {
            assert_eq!(call(&node, "GET", "/ok", "").await.status, 200);
        }
    });
}

/// A call whose client goes away (hyper drops the request) runs to its end anyway: it is not
/// cut off between two host calls, and its instance, whole, serves the next call.
#[test]
fn a_call_whose_client_went_away_runs_to_its_end() {
    block_on(async {
        // A peer that takes a request, says so, and answers only when released.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = format!("http://{}", listener.local_addr().unwrap());
        let (arrived, mut arrival) = tokio::sync::mpsc::channel::<()>(1);
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let server = tokio::spawn({
            let release = release.clone();
            async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut head = [0u8; 1024];
                let _ = stream.read(&mut head).await.unwrap();
                arrived.send(()).await.unwrap();
                release.notified().await;
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let node = runaway_with_peer(Limits::DEFAULT_REUSE, &peer).await;
        assert_eq!(calls(&node).await, 1);

        // The kept instance takes the call, which waits on the peer; its client goes away.
        let fetch = format!("/fetch?url={peer}/slow");
        tokio::select! {
            answer = call(&node, "GET", &fetch, "") => panic!("answered before the peer: {answer:?}"),
            _ = arrival.recv() => {}
        }
        release.notify_one();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        settled(&node).await;
        // Cut off, its instance would be gone, and the next call would be a new instance's 1st.
        assert_eq!(calls(&node).await, 3, "the call ran to its end on the kept instance");
    });
}
