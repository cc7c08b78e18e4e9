//! The election against a real etcd (Debian's `etcd-server`), one of the test's own per test:
//! one master at a time, its epoch etcd's create revision (so every later master's is higher),
//! a lapsed or resigned key taken by another, clusters that share an etcd kept apart, and
//! clear errors for an etcd that is not there or a leader key that names no node.

mod support;

use std::time::{Duration, Instant};

use replog::election::{Campaign, Candidate, Election, ElectionError, Etcd, Timings};
use support::etcd::EtcdServer;

fn node(name: &str) -> Candidate {
    Candidate { name: name.into(), url: format!("http://{name}:8000") }
}

fn election(server: &EtcdServer, cluster: &str) -> Election {
    Election::new(Etcd::new(vec![server.url.clone()]), cluster, Timings::default())
}

#[tokio::test]
async fn one_master_at_a_time_and_every_later_epoch_is_higher() {
    let Some(server) = EtcdServer::start() else { return };
    let election = election(&server, "replog");
    assert_eq!(election.leader().await.unwrap(), None, "no master yet");

    let Campaign::Won(mut first) = election.campaign(&node("a")).await.unwrap() else {
        panic!("the first candidate wins")
    };
    let Campaign::Lost(leader) = election.campaign(&node("b")).await.unwrap() else {
        panic!("a second candidate loses while the key is held")
    };
    assert_eq!((leader.node, leader.epoch), (node("a"), first.epoch));
    assert_eq!(election.leader().await.unwrap().map(|l| l.epoch), Some(first.epoch));
    assert!(election.renew(&mut first).await.unwrap(), "the holder renews");
    assert!(first.clock.holds_at(Instant::now()));

    // Resigning lets another win at once, in a higher epoch.
    let resigned_at = Instant::now();
    election.resign(first.clone()).await.unwrap();
    let Campaign::Won(second) = election.campaign(&node("b")).await.unwrap() else {
        panic!("the key is free once resigned")
    };
    assert!(resigned_at.elapsed() < Duration::from_secs(1), "no wait for the TTL");
    assert!(second.epoch > first.epoch, "{} > {}", second.epoch, first.epoch);
    // The old term's resignation, repeated late, never deletes the new master's key.
    election.resign(first).await.unwrap_or(());
    assert_eq!(election.leader().await.unwrap().map(|l| l.node), Some(node("b")));
}

#[tokio::test]
async fn a_key_its_holder_stops_renewing_lapses_and_another_takes_over() {
    let Some(server) = EtcdServer::start() else { return };
    let election = election(&server, "replog");
    let Campaign::Won(silent) = election.campaign(&node("a")).await.unwrap() else {
        panic!("the first candidate wins")
    };
    // The holder goes quiet (killed, paused)...
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        match election.campaign(&node("b")).await.unwrap() {
            Campaign::Won(term) => break term,
            Campaign::Lost(leader) => assert_eq!(leader.node, node("a")),
        }
        assert!(Instant::now() < deadline, "the key never lapsed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // ... and by the time another won, its own clock had stopped it: never two masters acting.
    let won_at = Instant::now();
    assert!(!silent.clock.holds_at(won_at), "the old holder still acted when another won");
    assert!(next.epoch > silent.epoch);
    let mut silent = silent;
    assert!(!election.renew(&mut silent).await.unwrap(), "a lapsed term cannot be renewed");
}

#[tokio::test]
async fn clusters_on_one_etcd_never_see_each_others_keys() {
    let Some(server) = EtcdServer::start() else { return };
    let (left, right) = (election(&server, "left"), election(&server, "right"));
    assert!(matches!(left.campaign(&node("a")).await.unwrap(), Campaign::Won(_)));
    assert!(matches!(right.campaign(&node("b")).await.unwrap(), Campaign::Won(_)));
    assert_eq!(left.leader().await.unwrap().map(|l| l.node), Some(node("a")));
    assert_eq!(right.leader().await.unwrap().map(|l| l.node), Some(node("b")));
}

#[tokio::test]
async fn a_leader_key_that_names_no_node_is_refused_not_followed() {
    let Some(server) = EtcdServer::start() else { return };
    let election = election(&server, "replog");
    let etcd = Etcd::new(vec![server.url.clone()]);
    etcd.put(election.key(), b"not a node").await.unwrap();
    let error = election.leader().await.unwrap_err();
    assert!(matches!(error, ElectionError::BadLeader { .. }), "{error}");
    assert!(error.to_string().contains("not a node"), "{error}");
    // A campaign does not take a key someone else holds, even one it cannot read.
    assert!(matches!(election.campaign(&node("a")).await, Err(ElectionError::BadLeader { .. })));
}

#[tokio::test]
async fn an_etcd_that_does_not_answer_is_named_and_a_later_endpoint_is_tried() {
    let Some(mut server) = EtcdServer::start() else { return };
    let dead = format!("http://127.0.0.1:{}", support::free_ports(1));
    let election = Election::new(
        Etcd::new(vec![dead.clone(), server.url.clone()]),
        "replog",
        Timings::default(),
    );
    assert!(matches!(election.campaign(&node("a")).await.unwrap(), Campaign::Won(_)));

    server.stop();
    let error = election.leader().await.unwrap_err().to_string();
    assert!(error.contains(&dead) && error.contains(&server.url), "{error}");
}
