//! The master's replication logic, driven step by step in process: batching, retries and
//! their pacing, health transitions, de-duplication under injected faults, quorum.

mod support;

use std::time::Duration;

use replog::config::Role;
use replog::node::{NextStep, Node, Recovery};
use replog::state::PeerStatus;
use support::inproc::*;

/// A master whose replication does not run by itself: the test calls the steps. It has
/// recovered (forced, as an operator would, when not every secondary is up: the tests are about
/// what steps do next). Forced recovery still needs one secondary to answer: where nothing
/// listens at the first URL yet, an empty secondary answers there for the recovery, and goes.
async fn stepped_master(urls: &[String]) -> Node {
    let first: std::net::SocketAddr = urls[0].trim_start_matches("http://").parse().unwrap();
    let witness = match std::net::TcpStream::connect(first) {
        Ok(_) => None,
        Err(_) => {
            let mut config = config("witness", Role::Secondary);
            config.listen = first;
            Some(replog::cluster::serve_nodes(vec![node(config, SECONDARY).await]).await.unwrap())
        }
    };
    let mut config = config("master", Role::Master)
        .with("SECONDARIES", urls.join(","))
        .with("FORCE_RECOVERY", "true");
    config.component = component_path(MASTER);
    let master = Node::new(runtime(), config, compiled(MASTER)).await.unwrap();
    loop {
        match master.recovery_round().await.expect("a recovery round").expect("a master") {
            Recovery::Done => break,
            Recovery::Again(_) => {}
        }
    }
    if let Some(witness) = witness {
        witness.shutdown().await;
    }
    master
}

async fn step(master: &Node, peer: &str) -> NextStep {
    master.replication_step(peer).await.expect("a step").expect("a master steps")
}

async fn write(master: &Node, msg: &str, w: u64) -> (u16, serde_json::Value) {
    let answer =
        call(master, "POST", "/messages?log=false", format!(r#"{{"msg": "{msg}", "w": {w}}}"#))
            .await;
    (answer.status, answer.json)
}

#[test]
fn everything_a_secondary_lacks_goes_in_one_batch_up_to_a_megabyte() {
    block_on(async {
        let (running, urls) = serve(vec![secondary_node("s", Duration::ZERO).await]).await;
        let master = stepped_master(&urls).await;
        for i in 0..25_000 {
            assert_eq!(
                write(&master, &format!("message number {i:05} of the batching test"), 1).await.0,
                201
            );
        }
        let secondary = running.node("s").unwrap();

        // The first contact asks what the secondary holds before sending anything.
        let next = step(&master, &urls[0]).await;
        assert_eq!(secondary.state().log().len(), 0);
        assert_eq!(
            next,
            NextStep { after: Some(Duration::ZERO), on_append: false },
            "it lacks everything: at once"
        );

        let next = step(&master, &urls[0]).await;
        let first = secondary.state().log().len();
        assert!(
            (10_000..25_000).contains(&first),
            "one step, one batch of about a megabyte: {first}"
        );
        assert_eq!(
            next,
            NextStep { after: Some(Duration::ZERO), on_append: false },
            "more to send: at once"
        );

        let next = step(&master, &urls[0]).await;
        assert_eq!(secondary.state().log().len(), 25_000, "the second batch holds the rest");
        assert_eq!(next.after, Some(Duration::from_millis(500)), "then a heartbeat later...");
        assert!(next.on_append, "... or as soon as there is something new");
        assert_eq!(log_of(secondary), log_of(&master), "in the master's order");
        assert_eq!(master.state().sequencer().unwrap().peers().acked(&urls[0]), 25_000);
    });
}

#[test]
fn a_failing_secondary_is_suspected_then_unhealthy_retried_with_growing_jittered_pauses() {
    block_on(async {
        let port = closed_port();
        let url = format!("http://127.0.0.1:{port}");
        let master = stepped_master(std::slice::from_ref(&url)).await;
        assert_eq!(write(&master, "waiting", 1).await.0, 201);

        // Pauses double from 100 ms, with jitter over their upper half, up to the heartbeat
        // (500 ms), which is also the pace for an unhealthy secondary.
        let expected = [
            (PeerStatus::Suspected, 50..=100),
            (PeerStatus::Suspected, 100..=200),
            (PeerStatus::Unhealthy, 250..=500),
            (PeerStatus::Unhealthy, 250..=500),
        ];
        let mut pauses = Vec::new();
        for (failures, (status, range)) in expected.into_iter().enumerate() {
            let next = step(&master, &url).await;
            let peer = master.state().sequencer().unwrap().peers().get(&url).unwrap();
            assert_eq!((peer.status, peer.failures), (status, failures as u32 + 1));
            // Refused, as a port nothing listens on answers; after the Docker tests, CI once saw
            // such a port accept and close instead (left by the engine): a failure all the same.
            let error = peer.last_error.as_deref().unwrap();
            assert!(
                error.contains("connection refused") || error.contains("connection closed"),
                "{peer:?}"
            );
            let after = next.after.unwrap().as_millis() as u64;
            assert!(
                range.contains(&after),
                "pause {after} ms after failure {} not in {range:?}",
                failures + 1
            );
            assert!(!next.on_append, "a failing secondary is not hammered on every append");
            pauses.push(after);
        }

        // Back: the next step finds it healthy and sends at once what it lacks.
        let mut config = config("s", Role::Secondary);
        config.listen = format!("127.0.0.1:{port}").parse().unwrap();
        let back = replog::cluster::serve_nodes(vec![node(config, SECONDARY).await]).await.unwrap();
        let next = step(&master, &url).await;
        let peer = master.state().sequencer().unwrap().peers().get(&url).unwrap();
        assert_eq!((peer.status, peer.failures, peer.acked), (PeerStatus::Healthy, 0, 0));
        assert!(peer.last_contact_ms.is_some() && peer.last_error.is_none());
        assert_eq!(next.after, Some(Duration::ZERO), "it answers and lacks a message: at once");
        let next = step(&master, &url).await;
        assert_eq!(master.state().sequencer().unwrap().peers().acked(&url), 1);
        assert_eq!(log_of(back.node("s").unwrap()), ["waiting"]);
        assert!(next.on_append);
        back.shutdown().await;
    });
}

#[test]
fn replays_after_faults_are_stored_once_and_acknowledged() {
    block_on(async {
        // A secondary that stores every batch and then answers 500, as one crashing between
        // writing and answering would: the master keeps resending, the secondary keeps each
        // message once.
        let faulty = config("faulty", Role::Secondary).with("FAULT_RATE", 1.0);
        let (running, urls) = serve(vec![node(faulty, SECONDARY).await]).await;
        let master = stepped_master(&urls).await;
        for msg in ["a", "b", "c"] {
            write(&master, msg, 1).await;
        }
        // The first contact is a check, which answers; every replication after it fails.
        assert_eq!(step(&master, &urls[0]).await.after, Some(Duration::ZERO));
        for _ in 0..3 {
            let next = step(&master, &urls[0]).await;
            assert!(next.after.unwrap() > Duration::ZERO, "a failure is retried after a pause");
        }
        let peer = master.state().sequencer().unwrap().peers().get(&urls[0]).unwrap();
        assert_eq!((peer.acked, peer.failures), (0, 3), "never acknowledged");
        assert!(peer.last_error.unwrap().contains("injected fault"));
        assert_eq!(
            log_of(running.node("faulty").unwrap()),
            ["a", "b", "c"],
            "stored once, in order"
        );
    });
}

#[test]
fn without_a_majority_the_master_is_read_only_until_one_comes_back() {
    block_on(async {
        let ports = [closed_port(), closed_port()];
        let urls: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        let master = stepped_master(&urls).await;
        assert_eq!(
            write(&master, "while unsure", 1).await.0,
            201,
            "not yet contacted is not unhealthy"
        );
        for url in &urls {
            for _ in 0..3 {
                step(&master, url).await;
            }
        }
        let (status, json) = write(&master, "refused", 1).await;
        assert_eq!(status, 503, "{json}");
        let error = json["error"].as_str().unwrap();
        assert!(
            error.contains("read-only")
                && error.contains("1 of 3")
                && error.contains("majority of 2"),
            "{error}"
        );
        assert_eq!(log_of(&master), ["while unsure"], "nothing appended");
        let health = call(&master, "GET", "/health", "").await;
        assert_eq!(health.json["writable"], false);
        assert_eq!(health.json["secondaries"][0]["status"], "unhealthy");
        assert_eq!(call(&master, "GET", "/messages", "").await.status, 200, "reads go on");

        let mut config = config("s", Role::Secondary);
        config.listen = format!("127.0.0.1:{}", ports[0]).parse().unwrap();
        let back = replog::cluster::serve_nodes(vec![node(config, SECONDARY).await]).await.unwrap();
        step(&master, &urls[0]).await;
        assert_eq!(write(&master, "accepted again", 1).await.0, 201, "two of three is a majority");
        back.shutdown().await;
    });
}

#[test]
fn a_write_waits_for_its_write_concern_and_no_longer() {
    block_on(async {
        let (running, urls) = serve(vec![secondary_node("s", Duration::ZERO).await]).await;
        let config = config("master", Role::Master)
            .with("SECONDARIES", format!("{},http://127.0.0.1:{}", urls[0], closed_port()))
            .with("REPLICATION_TIMEOUT_MS", 700);
        let master = node(config, MASTER).await;
        settled(&master).await;

        let (status, json) = write(&master, "two of three", 2).await;
        assert_eq!(status, 201, "{json}");
        assert_eq!(json["acks"], serde_json::json!([{"secondary": urls[0]}]));

        let started = std::time::Instant::now();
        let (status, json) = write(&master, "all three", 3).await;
        assert_eq!(status, 502, "{json}");
        assert!(started.elapsed() >= Duration::from_millis(700), "{:?}", started.elapsed());
        assert_eq!(json["missing"].as_array().unwrap().len(), 1);
        assert!(json["kept"].as_str().unwrap().contains("will still be delivered"), "{json}");
        assert_eq!(log_of(running.node("s").unwrap()), ["two of three", "all three"]);
    });
}
