//! The embedded cluster (`replog cluster`) as a user meets it: a real process, over HTTP.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_walkthrough_works() {
    let cluster = Cluster::start(&[0, 1500], &[]);
    let client = client();
    for (node, role) in cluster.all().into_iter().zip(["master", "secondary", "secondary"]) {
        let (status, health) = get_json(&client, &format!("{node}/health")).await;
        assert_eq!(
            (status, health["status"].as_str(), health["role"].as_str()),
            (200, Some("ok"), Some(role))
        );
    }
    let probe = replog().args(["probe", &format!("{}/health", cluster.master)]).status().unwrap();
    assert!(probe.success(), "the containers' health check passes on a healthy node");
    let (_, health) = get_json(&client, &format!("{}/health", cluster.secondaries[1])).await;
    assert_eq!(health["delay_ms"], 1500);
    assert!(messages(&client, &cluster.master).await.is_empty(), "empty at first");

    let (status, json, _) =
        post_json(&client, &format!("{}/messages", cluster.master), r#"{"msg":"test"}"#).await;
    assert_eq!((status, json["messages"].clone()), (201, serde_json::json!(["test"])));

    // The blocking write waits for secondary2's 1.5 s delay.
    let (status, _, took) =
        post_json(&client, &format!("{}/messages", cluster.master), r#"{"msg":"blocking test"}"#)
            .await;
    assert_eq!(status, 201);
    assert!(took >= Duration::from_millis(1500), "took only {took:?}");
    // Not twice the delay, with room for a loaded machine.
    assert!(took < Duration::from_secs(4), "took {took:?}");

    for node in cluster.all() {
        assert_eq!(messages(&client, node).await, ["test", "blocking test"], "{node}");
    }

    let (status, json, _) =
        post_json(&client, &format!("{}/messages", cluster.master), r#"{"nope":123}"#).await;
    assert_eq!(status, 400);
    assert!(json["error"].as_str().unwrap().contains("msg"), "{json}");
    assert_eq!(messages(&client, &cluster.master).await.len(), 2, "the bad write appended nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_secondaries_are_replicated_to_at_once() {
    let cluster = Cluster::start(&[0, 1000, 1500, 2000, 2000], &[]);
    let client = client();
    let (status, json, took) =
        post_json(&client, &format!("{}/messages", cluster.master), r#"{"msg":"fan-out"}"#).await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["acks"].as_array().unwrap().len(), 5);
    // The slowest secondary takes 2 s; one after another would take 6.5 s (the bound leaves a
    // loaded machine 2.5 s).
    assert!(took >= Duration::from_secs(2), "took only {took:?}");
    assert!(took < Duration::from_millis(4500), "took {took:?}");
    for node in cluster.all() {
        assert_eq!(messages(&client, node).await, ["fan-out"], "{node}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_writes_land_once_each_in_the_same_order_everywhere() {
    let cluster = Cluster::start(&[0, 1500], &[]);
    let client = client();
    let url = format!("{}/messages?log=false", cluster.master);
    let started = std::time::Instant::now();
    let writes: Vec<_> = (0..100)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(
                async move { post_json(&client, &url, &format!(r#"{{"msg":"m{i}"}}"#)).await },
            )
        })
        .collect();
    let mut seqs = HashSet::new();
    for write in writes {
        let (status, json, _) = write.await.unwrap();
        assert_eq!(status, 201, "{json}");
        assert!(seqs.insert(json["seq"].as_u64().unwrap()), "seq given twice: {json}");
    }
    assert_eq!(seqs, (1..=100).collect(), "every write got its own seq, with no gaps");
    // All waited for secondary2's 1.5 s at the same time, not one after another.
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    let master = messages(&client, &cluster.master).await;
    let distinct: HashSet<&String> = master.iter().collect();
    assert_eq!((master.len(), distinct.len()), (100, 100), "each message exactly once");
    for secondary in &cluster.secondaries {
        assert_eq!(
            messages(&client, secondary).await,
            master,
            "{secondary} holds the master's order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_fails_writes_with_502_naming_it() {
    // The master of a cluster whose second secondary is not there: serve one master and one
    // secondary separately, pointing the master at an extra port nothing listens on.
    let base = free_ports(3);
    let mut secondary = Process::spawn("secondary", serve("secondary", base + 1));
    secondary.wait_healthy(&format!("http://127.0.0.1:{}/health", base + 1));
    let down = format!("http://127.0.0.1:{}", base + 2);
    let mut master = serve("master", base);
    master
        .args(["--secondaries", &format!("http://127.0.0.1:{},{down}", base + 1)])
        .args(["--replication-timeout-ms", "1000"]);
    let mut master = Process::spawn("master", master);
    let master_url = format!("http://127.0.0.1:{base}");
    master.wait_writable(&master_url);

    let (status, json, took) =
        post_json(&client(), &format!("{master_url}/messages"), r#"{"msg":"lonely"}"#).await;
    assert_eq!(status, 502, "{json}");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(6), "waited {took:?}");
    assert_eq!(json["missing"][0]["secondary"], down.as_str());
    assert!(master.output().contains(&down), "the master's log names the missing secondary");
}
