//! What the host does to components that misbehave: every request runs under a CPU budget,
//! a memory cap and an outbound allow-list, and one bad request leaves the node serving.

mod support;

use std::time::Duration;

use replog::config::{Limits, NodeConfig, Role};
use replog::node::Node;
use support::inproc::*;

async fn runaway(limits: Limits, peers: &[String]) -> replog::node::Node {
    let mut config = config("runaway", Role::Master);
    config.limits = limits;
    let config = config.with("SECONDARIES", peers.join(","));
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
        let spinning = async {
            let answer = call(&node, "GET", "/spin", "").await;
            (answer, std::time::Instant::now())
        };
        let others = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for _ in 0..10 {
                assert_eq!(call(&node, "GET", "/ok", "").await.status, 200);
            }
            std::time::Instant::now()
        };
        let ((spun, spin_ended), others_ended) = tokio::join!(spinning, others);
        assert_eq!(spun.status, 500);
        assert!(others_ended < spin_ended, "ten requests were served while the loop ran");
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
    block_on(async {
        let refused = |role, file| async move {
            let config = NodeConfig { component: component_path(file), ..config("n", role) };
            Node::new(runtime(), config, compiled(file)).await.err().map(|e| e.to_string())
        };
        let text = refused(Role::Master, SECONDARY).await.expect("a master's host has no replica");
        assert!(
            text.contains("does not fit the master role") && text.contains("replog:node/replica"),
            "{text}"
        );
        assert!(refused(Role::Secondary, MASTER).await.is_some());
        assert_eq!(refused(Role::Master, MASTER).await, None);
    });
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

#[test]
fn a_component_gets_the_settings_it_declares_from_where_the_node_runs_but_never_the_secret() {
    block_on(async {
        let mut config = config("runaway", Role::Master).with("SECONDARIES", "");
        config.environment = [
            ("RUNAWAY_NOTE", "a setting no flag names"),
            ("CLUSTER_SECRET", "the host's own"),
            ("UNDECLARED", "not asked for"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let env = call(&node(config, RUNAWAY).await, "GET", "/env", "").await.json;
        assert_eq!(env["RUNAWAY_NOTE"], "a setting no flag names", "{env}");
        assert_eq!(env["REPLOG_ROLE"], "master", "{env}");
        assert!(env.get("CLUSTER_SECRET").is_none(), "the secret stays in the host: {env}");
        assert!(env.get("UNDECLARED").is_none(), "only what it declares: {env}");
    });
}
