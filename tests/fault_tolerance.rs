//! Tunable, fault-tolerant replication on the embedded cluster, over HTTP: write concern,
//! retries and catch-up, faults, quorum, and writers that do not wait for each other.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::inproc::{Cluster, Secondary};
use support::wait::eventually;
use support::*;

fn log(node: &replog::node::Node) -> Vec<String> {
    node.state().log().read(1, u32::MAX).into_iter().map(|e| e.msg).collect()
}

async fn write(
    client: &Client,
    cluster: &Cluster,
    msg: &str,
    w: u64,
) -> (u16, serde_json::Value, Duration) {
    let body = format!(r#"{{"msg":"{msg}","w":{w}}}"#);
    post_json(client, &format!("{}/messages?log=false", cluster.master_url), &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_acceptance_scenario() {
    // The master and secondary 1 only; secondary 2 is down.
    let mut cluster = Cluster::start(vec![Secondary::new(0), Secondary::new(0)], &[], &[1]).await;
    let client = client();
    assert_eq!(write(&client, &cluster, "Msg1", 1).await.0, 201);
    assert_eq!(write(&client, &cluster, "Msg2", 2).await.0, 201);

    let msg3 = tokio::spawn({
        let (client, url) = (client.clone(), cluster.master_url.clone());
        async move {
            post_json(&client, &format!("{url}/messages?log=false"), r#"{"msg":"Msg3","w":3}"#)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!msg3.is_finished(), "Msg3 (w=3) waits for secondary 2");

    let (status, _, _) = write(&client, &cluster, "Msg4", 1).await;
    assert_eq!(status, 201);
    assert!(!msg3.is_finished(), "Msg4 (w=1) answers while Msg3 waits");

    cluster.start_secondary(1).await;
    let (status, json, _) =
        tokio::time::timeout(Duration::from_secs(10), msg3).await.unwrap().unwrap();
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["acks"].as_array().unwrap().len(), 2);
    let secondary2 = cluster.secondary(1).unwrap();
    eventually(Duration::from_secs(5), "secondary 2 catching up", || log(secondary2).len() == 4)
        .await;
    assert_eq!(log(secondary2), ["Msg1", "Msg2", "Msg3", "Msg4"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_thirty_percent_of_replications_failing_after_storing_every_node_ends_equal() {
    let faulty = || Secondary { delay: Duration::ZERO, fault_rate: 0.3 };
    let cluster = Cluster::start(vec![faulty(), faulty()], &[], &[]).await;
    let client = client();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (client, url) = (client.clone(), cluster.master_url.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..25 {
                    let w = 1 + (writer + n) % 3;
                    let body = format!(r#"{{"msg":"m{writer}-{n}","w":{w}}}"#);
                    let (status, json, _) =
                        post_json(&client, &format!("{url}/messages?log=false"), &body).await;
                    assert_eq!(status, 201, "{json}");
                    acked.push(json["seq"].as_u64().unwrap());
                }
                acked
            })
        })
        .collect();
    let mut seqs = HashSet::new();
    for writer in writers {
        seqs.extend(writer.await.unwrap());
    }
    assert_eq!(seqs.len(), 200);

    let master = log(cluster.master());
    assert_eq!(master.len(), 200);
    assert_eq!(master.iter().collect::<HashSet<_>>().len(), 200, "no duplicates on the master");
    for i in 0..2 {
        let secondary = cluster.secondary(i).unwrap();
        eventually(Duration::from_secs(20), "secondaries settling", || log(secondary).len() == 200)
            .await;
        assert_eq!(
            log(secondary),
            master,
            "secondary {} equals the master: no duplicate, no reordering",
            i + 1
        );
    }
    // A batch stored but answered 500 is acknowledged on the retry that follows.
    let master_node = cluster.master();
    eventually(Duration::from_secs(10), "every secondary acknowledged", || {
        master_node.state().sequencer().unwrap().peers().all().iter().all(|p| p.acked == 200)
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_restarted_empty_catches_up_fully_in_order() {
    let mut cluster = Cluster::start(vec![Secondary::new(0), Secondary::new(0)], &[], &[]).await;
    let client = client();
    for i in 0..500 {
        assert_eq!(write(&client, &cluster, &format!("before {i}"), 3).await.0, 201);
    }
    cluster.stop_secondary(0).await;
    for i in 0..500 {
        assert_eq!(write(&client, &cluster, &format!("while down {i}"), 2).await.0, 201);
    }
    cluster.start_secondary(0).await;
    let started = Instant::now();
    let secondary = cluster.secondary(0).unwrap();
    eventually(Duration::from_secs(10), "catch-up", || log(secondary).len() == 1000).await;
    eprintln!("a secondary restarted empty caught up on 1000 messages in {:?}", started.elapsed());
    assert_eq!(log(secondary), log(cluster.master()));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_majority_writes_are_refused_and_resume_by_themselves() {
    let fast_heartbeat = [("HEARTBEAT_MS", "100")];
    let mut cluster =
        Cluster::start(vec![Secondary::new(0), Secondary::new(0)], &fast_heartbeat, &[]).await;
    let client = client();
    assert_eq!(write(&client, &cluster, "first", 3).await.0, 201);

    cluster.stop_secondary(0).await;
    cluster.stop_secondary(1).await;
    let health_url = format!("{}/health", cluster.master_url);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(&client, &health_url).await.1["writable"] != false {
        assert!(Instant::now() < deadline, "the master never noticed its secondaries were gone");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, json, _) = write(&client, &cluster, "refused", 1).await;
    assert_eq!(status, 503, "{json}");
    assert!(json["error"].as_str().unwrap().contains("read-only"), "{json}");
    assert_eq!(log(cluster.master()), ["first"], "nothing appended");
    assert_eq!(messages(&client, &cluster.master_url).await, ["first"], "reads go on");

    cluster.start_secondary(0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while get_json(&client, &health_url).await.1["writable"] != true {
        assert!(Instant::now() < deadline, "writes never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, json, _) = write(&client, &cluster, "resumed", 2).await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(
        log(cluster.secondary(0).unwrap()),
        ["first", "resumed"],
        "it came back empty and caught up"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_on_a_down_secondary_does_not_slow_other_writers() {
    let cluster = Cluster::start(vec![Secondary::new(0), Secondary::new(0)], &[], &[1]).await;
    let client = client();
    let blocked = tokio::spawn({
        let (client, url) = (client.clone(), cluster.master_url.clone());
        async move {
            post_json(&client, &format!("{url}/messages?log=false"), r#"{"msg":"all of us","w":3}"#)
                .await
        }
    });
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let (client, url) = (client.clone(), cluster.master_url.clone());
            tokio::spawn(async move {
                for n in 0..50 {
                    let body = format!(r#"{{"msg":"quick {writer}-{n}","w":{}}}"#, 1 + n % 2);
                    let (status, json, _) =
                        post_json(&client, &format!("{url}/messages?log=false"), &body).await;
                    assert_eq!(status, 201, "{json}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    // All 200 were answered while the w=3 write waited (up to REPLICATION_TIMEOUT_MS, 60 s).
    assert!(!blocked.is_finished(), "the w=3 write is still waiting for the down secondary");
    assert_eq!(log(cluster.master()).len(), 201);
    blocked.abort();
    cluster.shutdown().await;
}
