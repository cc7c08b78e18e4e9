//! A node changes role in the running process, called directly (no socket): a secondary hands
//! its log to a master elected for an epoch (its component swapped, its log and metrics kept),
//! which takes writes in that epoch only while its lease lets it, and hands the log back to a
//! secondary when deposed; the state each role leaves behind changes the log no more.

mod support;

use std::time::{Duration, Instant};

use replog::config::Role;
use replog::state::Mode;
use support::inproc::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_becomes_an_elected_master_and_back_keeping_its_log() {
    let secondary = node(config("n1", Role::Secondary), SECONDARY).await;
    let write = r#"{"msg":"m1","w":1}"#;
    let refused = call(&secondary, "POST", "/messages", write).await;
    assert_eq!(refused.status, 405, "a secondary takes no writes: {}", refused.json);

    // Elected for epoch 7: the master's component over the same log, recovering alone.
    let mut elected = config("n1", Role::Master);
    elected.elected_epoch = Some(7);
    elected.component = component_path(MASTER);
    let master = secondary.succeed(elected, compiled(MASTER), None).await.unwrap();
    assert_eq!(secondary.state().log().len(), 0);
    let late = call_signed(&secondary, "POST", "/replicate", r#"{"epoch":1,"prev":{"seq":0,"epoch":0},"entries":[{"seq":1,"epoch":1,"msg":"late"}],"end":1}"#).await;
    assert_eq!(late.status, 409, "the secondary it was takes nothing more: {}", late.json);
    assert!(late.json.to_string().contains("no longer a secondary"), "{}", late.json);
    master.start_replication();
    settled(&master).await;
    let sequencer = master.state().sequencer().unwrap();
    assert_eq!(sequencer.mode(), Mode::Open(7), "it opened the epoch it was elected for");
    let answer = call(&master, "POST", "/messages", write).await;
    assert_eq!(answer.status, 503, "no lease confirmed yet: {}", answer.json);

    // Within its lease it takes writes, stamped with its epoch; past it, none.
    sequencer.hold_lease_until(Instant::now() + Duration::from_secs(60));
    let answer = call(&master, "POST", "/messages", write).await;
    assert_eq!(answer.status, 201, "{}", answer.json);
    assert_eq!(master.state().log().read(1, 1)[0].epoch, 7);
    sequencer.hold_lease_until(Instant::now());
    let answer = call(&master, "POST", "/messages", r#"{"msg":"m2","w":1}"#).await;
    assert_eq!(answer.status, 503, "past its lease: {}", answer.json);
    let health = call(&master, "GET", "/health", "").await;
    assert_eq!(
        (health.json["role"].as_str(), health.json["epoch"].as_u64()),
        (Some("master"), Some(7))
    );

    // Deposed by epoch 9: a secondary again over the same log; the master it was is fenced.
    let mut back = config("n1", Role::Secondary);
    back.component = component_path(SECONDARY);
    let again = master.succeed(back, compiled(SECONDARY), Some(9)).await.unwrap();
    assert_eq!(master.state().sequencer().unwrap().mode(), Mode::Fenced(9));
    sequencer.hold_lease_until(Instant::now() + Duration::from_secs(60));
    let answer = call(&master, "POST", "/messages", r#"{"msg":"m3","w":1}"#).await;
    assert_eq!(answer.status, 503, "a fenced master takes nothing: {}", answer.json);
    assert_eq!(log_of(&again), ["m1"], "the log went along, whole");
    let health = call(&again, "GET", "/health", "").await;
    assert_eq!(health.json["role"], "secondary", "{}", health.json);
    let metrics = again.metrics();
    assert!(metrics.contains("replog_role_changes_total 2"), "{metrics}");
    assert!(metrics.contains("role=\"secondary\""), "{metrics}");
    assert!(!metrics.contains("replog_master_state"), "no master's series left: {metrics}");
}
