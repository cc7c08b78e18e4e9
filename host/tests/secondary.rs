//! The secondary component, driven in process through the host.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn delay_is_a_wasi_clock_wait_before_storing_and_acknowledging() {
    block_on(async {
        let node = secondary_node("secondary", Duration::from_millis(400)).await;
        let call = call(&node, "POST", "/replicate", r#"{"seq": 1, "msg": "slow"}"#);
        let check = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            log_of(&node)
        };
        let (answer, halfway) = tokio::join!(call, check);
        assert!(halfway.is_empty(), "nothing is stored before the delay has passed: {halfway:?}");
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert!(answer.elapsed >= Duration::from_millis(400), "took only {:?}", answer.elapsed);
        assert!(answer.elapsed < Duration::from_millis(1400), "took {:?}", answer.elapsed);
        assert_eq!(answer.json["count"], 1);
        assert_eq!(log_of(&node), ["slow"]);
    });
}

#[test]
fn concurrent_delays_overlap_instead_of_queueing() {
    block_on(async {
        let node =
            std::sync::Arc::new(secondary_node("secondary", Duration::from_millis(300)).await);
        let started = std::time::Instant::now();
        let calls: Vec<_> = (1..=20)
            .map(|seq| {
                let body = format!(r#"{{"seq": {seq}, "msg": "m{seq}"}}"#);
                let node = node.clone();
                tokio::spawn(async move { call(&node, "POST", "/replicate", body).await })
            })
            .collect();
        for answer in calls {
            let answer = answer.await.unwrap();
            assert_eq!(answer.status, 200, "{:?}", answer.json);
        }
        assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
        assert_eq!(log_of(&node).len(), 20);
    });
}

#[test]
fn batches_are_ordered_by_seq_deduplicated_and_only_the_gap_free_prefix_is_shown() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let answer = call(
            &node,
            "POST",
            "/replicate",
            r#"{"entries": [{"seq": 2, "msg": "b"}, {"seq": 1, "msg": "a"}, {"seq": 4, "msg": "d"}]}"#,
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(
            (answer.json["count"].as_u64(), answer.json["added"].as_u64()),
            (Some(2), Some(3))
        );
        let shown = call(&node, "GET", "/messages", "").await;
        assert_eq!(strings(&shown.json["messages"]), ["a", "b"], "4 waits for 3");

        let answer = call(
            &node,
            "POST",
            "/replicate",
            r#"{"entries": [{"seq": 1, "msg": "a"}, {"seq": 3, "msg": "c"}, {"seq": 4, "msg": "d"}]}"#,
        )
        .await;
        assert_eq!(answer.json["count"], 4);
        assert_eq!(
            (answer.json["added"].as_u64(), answer.json["duplicates"].as_u64()),
            (Some(1), Some(2))
        );
        let shown = call(&node, "GET", "/messages", "").await;
        assert_eq!(strings(&shown.json["messages"]), ["a", "b", "c", "d"]);
    });
}

#[test]
fn the_original_single_forms_are_accepted() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let answer = call(&node, "POST", "/replicate", r#"{"msg": "first"}"#).await;
        assert_eq!((answer.status, answer.json["status"].as_str()), (200, Some("ok")));
        let answer = call(&node, "POST", "/replicate", r#"{"msg": "second", "seq": 2}"#).await;
        assert_eq!(answer.json["count"], 2);
        assert_eq!(log_of(&node), ["first", "second"]);
    });
}

#[test]
fn a_different_message_at_a_held_seq_is_a_conflict_and_changes_nothing() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        call(&node, "POST", "/replicate", r#"{"seq": 1, "msg": "original"}"#).await;
        let answer = call(&node, "POST", "/replicate", r#"{"seq": 1, "msg": "impostor"}"#).await;
        assert_eq!(answer.status, 409, "{:?}", answer.json);
        assert_eq!(log_of(&node), ["original"]);
    });
}

#[test]
fn bad_replications_are_refused_and_store_nothing() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        for body in [
            "",
            "not json",
            "[]",
            r#"{"entries": {}}"#,
            r#"{"entries": [{"seq": 0, "msg": "x"}]}"#,
            r#"{"entries": [{"seq": 1, "msg": 5}]}"#,
            r#"{"entries": [{"seq": 1, "msg": "ok"}, "nope"]}"#,
            r#"{"seq": 1}"#,
            r#"{"msg": 7}"#,
            r#"{"seq": 99999999, "msg": "far ahead"}"#,
        ] {
            let answer = call(&node, "POST", "/replicate", body).await;
            assert!(
                matches!(answer.status, 400 | 409),
                "{body:?} got {}: {:?}",
                answer.status,
                answer.json
            );
            assert!(answer.json["error"].is_string(), "{body:?}: {:?}", answer.json);
        }
        assert!(node.state().log.is_empty());
    });
}

#[test]
fn health_reports_role_count_and_delay() {
    block_on(async {
        let node = secondary_node("secondary", Duration::from_millis(1500)).await;
        let health = call(&node, "GET", "/health", "").await;
        assert_eq!(health.status, 200);
        assert_eq!(health.json["status"], "ok");
        assert_eq!(health.json["role"], "secondary");
        assert_eq!(health.json["count"], 0);
        assert_eq!(health.json["delay_ms"], 1500);
    });
}

#[test]
fn writes_belong_to_the_master_and_unknown_paths_are_404() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let answer = call(&node, "POST", "/messages", r#"{"msg": "x"}"#).await;
        assert_eq!(answer.status, 405);
        assert_eq!(answer.headers["allow"], "GET");
        assert_eq!(call(&node, "GET", "/nope", "").await.status, 404);
        assert_eq!(call(&node, "GET", "/replicate", "").await.status, 405);
    });
}
