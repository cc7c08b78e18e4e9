//! The secondary component, driven in process through the host: what it stores, what it
//! refuses, and that only its master's signed requests reach its log.

mod support;

use std::time::Duration;

use serde_json::json;
use support::inproc::*;

/// `POST /replicate` body: `entries` (seq, epoch, msg) after `prev`, from a master of `epoch`.
fn append(epoch: u64, prev: (u64, u64), entries: &[(u64, u64, &str)], end: u64) -> String {
    let entries: Vec<_> = entries
        .iter()
        .map(|(seq, epoch, msg)| json!({"seq": seq, "epoch": epoch, "msg": msg}))
        .collect();
    json!({"epoch": epoch, "prev": {"seq": prev.0, "epoch": prev.1}, "entries": entries, "end": end})
        .to_string()
}

fn epochs(node: &replog::node::Node) -> Vec<u64> {
    node.state().log().read(1, u32::MAX).into_iter().map(|e| e.epoch).collect()
}

#[test]
fn delay_is_a_wasi_clock_wait_before_storing_and_acknowledging() {
    block_on(async {
        // The check at 200 ms has 800 ms to run before the delay ends, on a loaded machine too.
        let node = secondary_node("secondary", Duration::from_millis(1000)).await;
        let body = append(1, (0, 0), &[(1, 1, "slow")], 1);
        let call = call_signed(&node, "POST", "/replicate", &body);
        let check = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            log_of(&node)
        };
        let (answer, halfway) = tokio::join!(call, check);
        assert!(halfway.is_empty(), "nothing is stored before the delay has passed: {halfway:?}");
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert!(answer.elapsed >= Duration::from_millis(1000), "took only {:?}", answer.elapsed);
        assert_eq!(answer.json["count"], 1);
        assert_eq!(answer.json["matched"], json!({"seq": 1, "epoch": 1}));
        assert_eq!(log_of(&node), ["slow"]);
    });
}

#[test]
fn concurrent_delays_overlap_and_replays_of_one_batch_store_it_once() {
    block_on(async {
        let node =
            std::sync::Arc::new(secondary_node("secondary", Duration::from_millis(500)).await);
        let body = append(1, (0, 0), &[(1, 1, "a"), (2, 1, "b"), (3, 1, "c")], 3);
        let started = std::time::Instant::now();
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (node, body) = (node.clone(), body.clone());
                tokio::spawn(async move { call_signed(&node, "POST", "/replicate", &body).await })
            })
            .collect();
        let mut added = 0;
        for answer in calls {
            let answer = answer.await.unwrap();
            assert_eq!(answer.status, 200, "{:?}", answer.json);
            assert_eq!(answer.json["matched"], json!({"seq": 3, "epoch": 1}));
            added += answer.json["added"].as_u64().unwrap();
        }
        // Twenty 500 ms delays one after another would take 10 s.
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        assert_eq!(added, 3, "stored once, whichever request came first");
        assert_eq!(log_of(&node), ["a", "b", "c"]);
    });
}

#[test]
fn entries_apply_only_after_a_held_prev_and_replays_are_duplicates() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let answer = call_signed(
            &node,
            "POST",
            "/replicate",
            &append(1, (0, 0), &[(1, 1, "a"), (2, 1, "b")], 2),
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(
            (answer.json["status"].as_str(), answer.json["added"].as_u64()),
            (Some("ok"), Some(2))
        );

        let beyond = append(1, (5, 1), &[(6, 1, "f")], 6);
        let answer = call_signed(&node, "POST", "/replicate", &beyond).await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(answer.json["status"], "mismatch", "it does not hold seq 5");
        assert_eq!(answer.json["last"], json!({"seq": 2, "epoch": 1}));
        assert_eq!(answer.json["runs"], json!([{"epoch": 1, "first": 1}]));

        let replay = append(1, (1, 1), &[(2, 1, "b"), (3, 1, "c")], 3);
        let answer = call_signed(&node, "POST", "/replicate", &replay).await;
        assert_eq!(
            (answer.json["added"].as_u64(), answer.json["duplicates"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(log_of(&node), ["a", "b", "c"]);
        let shown = call(&node, "GET", "/messages", "").await;
        assert_eq!(strings(&shown.json["messages"]), ["a", "b", "c"]);
    });
}

#[test]
fn the_original_single_form_is_stored_in_order_and_a_replay_says_duplicate() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let answer =
            call_signed(&node, "POST", "/replicate", r#"{"seq": 1, "msg": "first"}"#).await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(
            (answer.json["duplicate"].as_bool(), answer.json["count"].as_u64()),
            (Some(false), Some(1))
        );
        let replay =
            call_signed(&node, "POST", "/replicate", r#"{"seq": 1, "msg": "first"}"#).await;
        assert_eq!((replay.status, replay.json["duplicate"].as_bool()), (200, Some(true)));

        let impostor =
            call_signed(&node, "POST", "/replicate", r#"{"seq": 1, "msg": "impostor"}"#).await;
        assert_eq!(impostor.status, 409, "{:?}", impostor.json);
        let gap = call_signed(&node, "POST", "/replicate", r#"{"seq": 3, "msg": "ahead"}"#).await;
        assert_eq!(gap.status, 409, "{:?}", gap.json);
        assert!(gap.json["error"].as_str().unwrap().contains("holds up to 1"), "{:?}", gap.json);
        let unnumbered = call_signed(&node, "POST", "/replicate", r#"{"msg": "stray"}"#).await;
        assert_eq!(unnumbered.status, 400, "{:?}", unnumbered.json);
        assert!(unnumbered.json["error"].as_str().unwrap().contains("only the master numbers"));
        assert_eq!(log_of(&node), ["first"], "nothing but the first entry was stored");
    });
}

#[test]
fn without_the_masters_proof_nothing_is_stored() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let body = append(1, (0, 0), &[(1, 1, "FORGED")], 1);
        let unsigned = call(&node, "POST", "/replicate", body.clone()).await;
        assert_eq!(unsigned.status, 401, "{:?}", unsigned.json);
        assert_eq!(unsigned.headers["www-authenticate"], "Replog-HMAC-SHA256");
        assert!(unsigned.json["error"].as_str().unwrap().contains("without proof"));

        // A request captured and sent again later than the window allows.
        let stale = call_signed_at(&node, "POST", "/replicate", &body, now_ms() - 60_000).await;
        assert_eq!(stale.status, 401, "{:?}", stale.json);
        assert!(stale.json["error"].as_str().unwrap().contains("window"), "{:?}", stale.json);

        // Signed for one body, sent with another.
        let t = now_ms();
        let head = format!("replog-v1\nPOST\n/replicate\n{t}\n");
        let signature = secret().sign(head.as_bytes(), body.as_bytes());
        let altered = http::Request::post("http://node.test/replicate")
            .header("host", "node.test")
            .header("authorization", format!("Replog-HMAC-SHA256 t={t},sig={signature}"))
            .body(bytes::Bytes::from(append(1, (0, 0), &[(1, 1, "ALTERED")], 1)))
            .unwrap();
        let altered = call_with(&node, altered).await;
        assert_eq!(altered.status, 401, "{:?}", altered.json);

        // Signed with another cluster's secret.
        let other = replog::secret::ClusterSecret::new("another cluster's secret").unwrap();
        let foreign = http::Request::post("http://node.test/replicate")
            .header("host", "node.test")
            .header(
                "authorization",
                format!(
                    "Replog-HMAC-SHA256 t={t},sig={}",
                    other.sign(head.as_bytes(), body.as_bytes())
                ),
            )
            .body(bytes::Bytes::from(body.clone()))
            .unwrap();
        assert_eq!(call_with(&node, foreign).await.status, 401);

        assert_eq!(call(&node, "GET", "/replicate?from=1", "").await.status, 401, "reads too");
        assert!(node.state().log().is_empty(), "nothing of a refused request was stored");
        assert_eq!(node.state().log().epoch(), 0, "not even its epoch");
        let fine = call_signed(&node, "POST", "/replicate", &body).await;
        assert_eq!(fine.status, 200, "the same request, proven: {:?}", fine.json);
    });
}

#[test]
fn an_older_master_is_fenced_and_changes_nothing() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let newer = append(3, (0, 0), &[(1, 3, "from epoch 3")], 1);
        assert_eq!(call_signed(&node, "POST", "/replicate", &newer).await.status, 200);
        let older = append(2, (1, 3), &[(2, 2, "from epoch 2")], 2);
        let answer = call_signed(&node, "POST", "/replicate", &older).await;
        assert_eq!(answer.status, 409, "{:?}", answer.json);
        assert_eq!(
            (answer.json["fenced"].as_bool(), answer.json["epoch"].as_u64()),
            (Some(true), Some(3))
        );
        assert!(answer.json["error"].as_str().unwrap().contains("fenced"));
        assert_eq!(log_of(&node), ["from epoch 3"]);
        let single =
            call_signed(&node, "POST", "/replicate", r#"{"seq": 2, "epoch": 1, "msg": "x"}"#).await;
        assert_eq!(single.status, 409, "the single form is fenced too when it names an epoch");
    });
}

#[test]
fn a_divergent_suffix_is_dropped_and_replaced_on_the_masters_word() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let old = append(1, (0, 0), &[(1, 1, "a"), (2, 1, "stale b"), (3, 1, "stale c")], 3);
        call_signed(&node, "POST", "/replicate", &old).await;

        let repair = append(2, (1, 1), &[(2, 2, "b"), (3, 2, "c"), (4, 2, "d")], 4);
        let answer = call_signed(&node, "POST", "/replicate", &repair).await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(
            (answer.json["truncated"].as_u64(), answer.json["added"].as_u64()),
            (Some(2), Some(3))
        );
        assert_eq!(log_of(&node), ["a", "b", "c", "d"]);
        assert_eq!(epochs(&node), [1, 2, 2, 2]);
        assert_eq!(node.state().log().epoch(), 2);

        // Older entries past the master's end go too; its own never do.
        let old = append(2, (4, 2), &[], 4);
        call_signed(&node, "POST", "/replicate", &old).await;
        assert_eq!(log_of(&node).len(), 4);
        let shorter_master = append(3, (1, 1), &[], 1);
        let answer = call_signed(&node, "POST", "/replicate", &shorter_master).await;
        assert_eq!(answer.json["truncated"], 3, "{:?}", answer.json);
        assert_eq!(log_of(&node), ["a"]);
    });
}

#[test]
fn a_recovering_master_reads_entries_with_their_epochs() {
    block_on(async {
        let node = secondary_node("secondary", Duration::ZERO).await;
        let entries: Vec<(u64, u64, String)> =
            (1..=5).map(|i| (i, 1 + i / 3, format!("m{i}"))).collect();
        let entries: Vec<(u64, u64, &str)> =
            entries.iter().map(|(s, e, m)| (*s, *e, m.as_str())).collect();
        call_signed(&node, "POST", "/replicate", &append(2, (0, 0), &entries, 5)).await;
        let answer = call_signed(&node, "GET", "/replicate?from=2&limit=3", "").await;
        assert_eq!(answer.status, 200, "{:?}", answer.json);
        assert_eq!(
            answer.json["entries"],
            json!([{"seq": 2, "epoch": 1, "msg": "m2"}, {"seq": 3, "epoch": 2, "msg": "m3"}, {"seq": 4, "epoch": 2, "msg": "m4"}])
        );
        assert_eq!(answer.json["last"], json!({"seq": 5, "epoch": 2}));
        assert_eq!(answer.json["epoch"], 2);
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
            r#"{"entries": {}, "epoch": 1}"#,
            r#"{"epoch": 1, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 0, "epoch": 1, "msg": "x"}]}"#,
            r#"{"epoch": 1, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 1, "epoch": 1, "msg": 5}]}"#,
            r#"{"epoch": 1, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 1, "epoch": 2, "msg": "above its own epoch"}]}"#,
            r#"{"epoch": 2, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 1, "epoch": 2, "msg": "a"}, {"seq": 2, "epoch": 1, "msg": "older"}]}"#,
            r#"{"entries": [{"seq": 1, "msg": "ok"}]}"#,
            r#"{"seq": 1}"#,
            r#"{"msg": 7}"#,
            r#"{"seq": 99999999, "msg": "far ahead"}"#,
        ] {
            let answer = call_signed(&node, "POST", "/replicate", body).await;
            assert!(
                matches!(answer.status, 400 | 409),
                "{body:?} got {}: {:?}",
                answer.status,
                answer.json
            );
            assert!(answer.json["error"].is_string(), "{body:?}: {:?}", answer.json);
        }
        assert!(node.state().log().is_empty());
    });
}

#[test]
fn health_reports_role_count_epoch_and_delay() {
    block_on(async {
        let node = secondary_node("secondary", Duration::from_millis(1500)).await;
        let health = call(&node, "GET", "/health", "").await;
        assert_eq!(health.status, 200);
        assert_eq!(health.json["status"], "ok");
        assert_eq!(health.json["role"], "secondary");
        assert_eq!(health.json["count"], 0);
        assert_eq!(health.json["epoch"], 0);
        assert_eq!(health.json["delay_ms"], 1500);
        assert_eq!(health.json["authenticated"], true);
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
        // `/replicate` takes the master's requests only: proof comes before anything else.
        assert_eq!(call(&node, "DELETE", "/replicate", "").await.status, 401);
        assert_eq!(call_signed(&node, "DELETE", "/replicate", "").await.status, 405);
    });
}
