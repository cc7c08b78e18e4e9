//! What the host does to components that misbehave: every request runs under a CPU budget,
//! a memory cap and an outbound allow-list, and one bad request leaves the node serving.

mod support;

use std::time::Duration;

use replog::config::{Limits, Role};
use support::*;

async fn runaway(limits: Limits, peers: &[String]) -> replog::node::Node {
    let mut config = config("runaway", Role::Master);
    config.limits = limits;
    config.secondaries = peers.iter().map(|p| p.parse().unwrap()).collect();
    node(config, RUNAWAY).await
}

#[test]
fn a_component_that_loops_is_stopped_at_its_cpu_budget_and_the_node_serves_on() {
    block_on(async {
        let node =
            runaway(Limits { cpu_budget: Duration::from_millis(300), ..Limits::default() }, &[])
                .await;
        let answer = call(&node, "GET", "/spin", "").await;
        assert_eq!(answer.status, 500, "{:?}", answer.json);
        let error = answer.json["error"].as_str().unwrap();
        assert!(error.contains("CPU budget of 300 ms"), "{error}");
        assert!(answer.elapsed >= Duration::from_millis(300), "{:?}", answer.elapsed);
        assert!(answer.elapsed < Duration::from_secs(3), "{:?}", answer.elapsed);

        let next = call(&node, "GET", "/ok", "").await;
        assert_eq!((next.status, next.json["status"].as_str()), (200, Some("ok")));
    });
}

#[test]
fn a_looping_request_does_not_stall_the_others() {
    block_on(async {
        let node =
            runaway(Limits { cpu_budget: Duration::from_millis(1500), ..Limits::default() }, &[])
                .await;
        let spinning = call(&node, "GET", "/spin", "");
        let others = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut slowest = Duration::ZERO;
            for _ in 0..10 {
                let answer = call(&node, "GET", "/ok", "").await;
                assert_eq!(answer.status, 200);
                slowest = slowest.max(answer.elapsed);
            }
            slowest
        };
        let (spun, slowest) = tokio::join!(spinning, others);
        assert_eq!(spun.status, 500);
        assert!(
            slowest < Duration::from_millis(500),
            "a request waited {slowest:?} behind the loop"
        );
    });
}

#[test]
fn a_component_that_allocates_without_end_hits_the_memory_cap_and_the_node_serves_on() {
    block_on(async {
        let node = runaway(Limits { memory_bytes: 32 << 20, ..Limits::default() }, &[]).await;
        let answer = call(&node, "GET", "/hog", "").await;
        assert_eq!(answer.status, 500, "{:?}", answer.json);
        let error = answer.json["error"].as_str().unwrap();
        assert!(error.contains("memory") && error.contains(&(32u64 << 20).to_string()), "{error}");
        assert_eq!(call(&node, "GET", "/ok", "").await.status, 200);
    });
}

#[test]
fn outbound_requests_reach_configured_peers_only() {
    block_on(async {
        let (running, urls) = serve(vec![
            secondary_node("peer", Duration::ZERO).await,
            secondary_node("stranger", Duration::ZERO).await,
        ])
        .await;
        let node = runaway(Limits::default(), &urls[..1]).await;

        let allowed = call(&node, "GET", &format!("/fetch?url={}/health", urls[0]), "").await;
        assert_eq!(
            (allowed.status, allowed.json["status"].as_u64()),
            (200, Some(200)),
            "{:?}",
            allowed.json
        );

        let refused = call(&node, "GET", &format!("/fetch?url={}/health", urls[1]), "").await;
        assert_eq!(refused.status, 502, "{:?}", refused.json);
        assert!(
            refused.json["error"].as_str().unwrap().contains("HttpRequestDenied"),
            "{:?}",
            refused.json
        );

        let outside = call(&node, "GET", "/fetch?url=http://example.com/", "").await;
        assert!(
            outside.json["error"].as_str().unwrap().contains("HttpRequestDenied"),
            "{:?}",
            outside.json
        );
        running.shutdown().await;
    });
}

#[test]
fn a_component_is_refused_for_a_role_whose_imports_it_does_not_fit() {
    let secondary = compiled(SECONDARY);
    let error =
        secondary.prepare(Role::Master).err().expect("the master's host has no replica interface");
    let text = error.to_string();
    assert!(
        text.contains("does not fit the master role") && text.contains("replog:node/replica"),
        "{text}"
    );
    assert!(compiled(MASTER).prepare(Role::Secondary).is_err());
    assert!(compiled(MASTER).prepare(Role::Master).is_ok());
}

#[test]
fn a_file_that_is_not_a_component_is_refused_with_its_path() {
    let dir = std::env::temp_dir().join(format!("replog-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.wasm");
    std::fs::write(&path, b"\0asm but not really").unwrap();
    let engine = wasmtime::Engine::default();
    let error = replog::node::CompiledComponent::load(&engine, &path).err().unwrap().to_string();
    assert!(
        error.contains("broken.wasm") && error.contains("not a valid WebAssembly component"),
        "{error}"
    );
    let missing =
        replog::node::CompiledComponent::load(&engine, &dir.join("absent.wasm")).err().unwrap();
    assert!(missing.to_string().contains("cannot read component"), "{missing}");
    std::fs::remove_dir_all(dir).unwrap();
}
