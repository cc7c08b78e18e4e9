//! The nemesis: a master and two secondaries as processes with data directories, six writers
//! of mixed write concern, and faults at random: any node killed with SIGKILL and started
//! again, a secondary paused (SIGSTOP) and resumed, a secondary's or the master's disk wiped,
//! forged requests to the secondaries' replication route. Then the cluster heals, and:
//!
//! - every write acknowledged with `w >= 2` is in every node's log exactly once, at its `seq`;
//! - a `w = 1` write is missing only if the master's disk was wiped after it was acknowledged;
//! - no message is anywhere twice, and nothing forged is anywhere;
//! - every secondary ends with the master's log, and the cluster takes a `w = 3` write.
//!
//! `NEMESIS_SECONDS` (default 30) bounds the faults; `NEMESIS_SEED` replays a run. The test
//! prints its seed and what happened.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::nodes::{Cluster, Node};
use support::*;

/// SplitMix64: small, seedable, and good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn setting(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// A write the master acknowledged.
struct Acked {
    seq: u64,
    msg: String,
    w: u64,
    at: Instant,
}

#[derive(Default)]
struct Outcomes {
    acked: Vec<Acked>,
    /// Answers other than 201 (or no answer, as "error"), by status.
    others: BTreeMap<String, u64>,
}

/// A writer: `w`s chosen at random, until told to stop (or a bound is reached).
async fn writer(
    client: Client,
    master: String,
    id: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Outcomes {
    let mut rng = Rng(seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut outcomes = Outcomes::default();
    let url = format!("{master}/messages?log=false");
    for n in 0..20_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let (msg, w) = (format!("writer{id}-{n}"), 1 + rng.below(3));
        let body = format!(r#"{{"msg":"{msg}","w":{w}}}"#);
        let answer = tokio::time::timeout(Duration::from_secs(10), client.post(&url, body)).await;
        match answer {
            Ok(Ok(reply)) if reply.status == 201 => {
                let seq = reply.json()["seq"].as_u64().expect("a 201 names the seq");
                outcomes.acked.push(Acked { seq, msg, w, at: Instant::now() });
            }
            other => {
                let what = match other {
                    Ok(Ok(reply)) => reply.status.to_string(),
                    _ => "error".to_owned(),
                };
                *outcomes.others.entry(what).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    outcomes
}

/// The faults, one at a time.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillMaster,
    WipeMaster,
    KillSecondary(usize),
    PauseSecondary(usize),
    WipeSecondary(usize),
    Forge(usize),
}

/// Runs `f` on the test's thread pool without stalling the writers (it waits for processes).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// A request that only the master could make, made by someone else: it must be refused.
async fn forge(client: &Client, secondary: &Node) {
    let url = format!("{}/replicate", secondary.url());
    for body in [
        r#"{"epoch": 999, "prev": {"seq": 0, "epoch": 0}, "entries": [{"seq": 1, "epoch": 999, "msg": "FORGED"}], "end": 1}"#,
        r#"{"seq": 1, "msg": "FORGED"}"#,
        r#"{"msg": "FORGED"}"#,
    ] {
        if let Ok(Ok(reply)) =
            tokio::time::timeout(Duration::from_secs(5), client.post(&url, body)).await
        {
            assert_eq!(
                reply.status,
                401,
                "a forged request got {}: {}",
                reply.status,
                reply.text()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_random_kills_pauses_wipes_and_forgeries() {
    let seconds = setting("NEMESIS_SECONDS").unwrap_or(30);
    let seed = setting("NEMESIS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
    });
    println!("nemesis: seed {seed}, {seconds} s of faults (replay with NEMESIS_SEED={seed})");
    let mut rng = Rng(seed);
    let mut cluster = Cluster::new(
        "nemesis",
        &["--heartbeat-ms", "100", "--peer-timeout-ms", "1500", "--replication-timeout-ms", "1500"],
    );
    blocking(|| {
        for secondary in &mut cluster.secondaries {
            secondary.start();
        }
        cluster.master.start();
    });

    let client = client();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|id| {
            tokio::spawn(writer(client.clone(), cluster.master.url(), id, seed, stop.clone()))
        })
        .collect();

    let mut master_wipes: Vec<Instant> = Vec::new();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(rng.millis(200, 800)).await;
        let i = rng.below(2) as usize;
        let fault = match rng.below(12) {
            0..=1 => Fault::KillMaster,
            2 => Fault::WipeMaster,
            3..=5 => Fault::KillSecondary(i),
            6..=8 => Fault::PauseSecondary(i),
            9..=10 => Fault::WipeSecondary(i),
            _ => Fault::Forge(i),
        };
        let name = format!("{fault:?}").split('(').next().unwrap().to_owned();
        *faults.entry(name).or_default() += 1;
        let down = rng.millis(0, 400);
        match fault {
            Fault::KillMaster | Fault::WipeMaster => {
                if matches!(fault, Fault::WipeMaster) {
                    blocking(|| cluster.master.wipe());
                    master_wipes.push(Instant::now());
                } else {
                    blocking(|| cluster.master.kill());
                }
                tokio::time::sleep(down).await;
                blocking(|| cluster.master.start());
            }
            Fault::KillSecondary(i) | Fault::WipeSecondary(i) => {
                let secondary = &mut cluster.secondaries[i];
                if matches!(fault, Fault::WipeSecondary(_)) {
                    blocking(|| secondary.wipe());
                } else {
                    blocking(|| secondary.kill());
                }
                tokio::time::sleep(down).await;
                blocking(|| secondary.start());
            }
            Fault::PauseSecondary(i) => {
                cluster.secondaries[i].pause(true);
                tokio::time::sleep(rng.millis(200, 2000)).await;
                cluster.secondaries[i].pause(false);
            }
            Fault::Forge(i) => forge(&client, &cluster.secondaries[i]).await,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Outcomes::default();
    for writer in writers {
        let done = writer.await.unwrap();
        outcomes.acked.extend(done.acked);
        for (what, n) in done.others {
            *outcomes.others.entry(what).or_default() += n;
        }
    }

    // Heal: every node runs; the cluster takes a write every node must hold.
    let master = cluster.master.url();
    let healed = Instant::now();
    let last = loop {
        let url = format!("{master}/messages?log=false");
        let reply = client.post(&url, r#"{"msg":"healed","w":3}"#).await;
        let answer = match reply {
            Ok(reply) if reply.status == 201 => break reply.json()["seq"].as_u64().unwrap(),
            Ok(reply) => format!("{}: {}", reply.status, reply.text()),
            Err(e) => e.to_string(),
        };
        assert!(
            healed.elapsed() < Duration::from_secs(60),
            "the cluster did not heal: {answer}\n{}",
            cluster.master.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = messages(&client, &master).await;
    for secondary in &cluster.secondaries {
        let since = Instant::now();
        loop {
            let held = messages(&client, &secondary.url()).await;
            assert!(
                held.len() <= log.len() && held[..] == log[..held.len()],
                "{}'s log is not a prefix of the master's",
                secondary.name
            );
            if held == log {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "{} did not catch up",
                secondary.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The promises.
    let mut at: HashMap<&str, usize> = HashMap::new();
    for (i, msg) in log.iter().enumerate() {
        assert!(at.insert(msg.as_str(), i + 1).is_none(), "{msg} is in the log twice");
        assert!(!msg.contains("FORGED"), "a forged entry at {}", i + 1);
    }
    assert_eq!(log.get(last as usize - 1).map(String::as_str), Some("healed"));
    let mut lost_to_wipes = 0;
    for acked in &outcomes.acked {
        match at.get(acked.msg.as_str()) {
            Some(&seq) => assert_eq!(
                seq as u64, acked.seq,
                "{} (w={}) moved from its seq",
                acked.msg, acked.w
            ),
            None if acked.w == 1 && master_wipes.iter().any(|wipe| *wipe > acked.at) => {
                lost_to_wipes += 1
            }
            None => panic!(
                "{} (w={}) acknowledged at seq {} is lost (seed {seed})",
                acked.msg, acked.w, acked.seq
            ),
        }
    }
    let by_w = |w| outcomes.acked.iter().filter(|a| a.w == w).count();
    println!(
        "nemesis: seed {seed}: faults {faults:?}; acknowledged w=1 {}, w=2 {}, w=3 {}; other answers {:?}; \
         w=1 writes lost to master wipes {lost_to_wipes}; final log {} entries, healed in {:.1} s",
        by_w(1),
        by_w(2),
        by_w(3),
        outcomes.others,
        log.len(),
        healed.elapsed().as_secs_f64()
    );
    assert!(outcomes.acked.len() > 100, "the load ran");
}
