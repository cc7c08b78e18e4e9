//! Hot swap, in process: the reloader watching a node's component file, with the real
//! components and a second build of them that reports another version.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use replog::cluster::Running;
use replog::config::Role;
use replog::node::{CompiledComponent, Node};
use replog::reload::{Outcome, Reloader, Report};
use support::inproc::*;
use support::variant::{variant_dir, variant_version};
use tokio::sync::broadcast;

/// A master whose component file sits in a folder of the test's own (with a second folder a
/// newer build may appear in, empty at first), with one secondary, and a reloader watching the
/// master's files.
struct Swappable {
    dir: PathBuf,
    master: Arc<Node>,
    reloader: Reloader,
    reports: broadcast::Receiver<Report>,
    _secondary: Running,
    regular_version: String,
}

impl Swappable {
    async fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("replog-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(component_path(MASTER), dir.join(MASTER)).unwrap();
        let (secondary, urls) =
            serve(vec![secondary_node("secondary", Duration::ZERO).await]).await;
        let mut config = config("master", Role::Master).with("SECONDARIES", &urls[0]);
        config.component = dir.join(MASTER);
        std::fs::create_dir_all(dir.join("second")).unwrap();
        // As the command line lists them: the file it started with need not come first.
        config.component_candidates = vec![dir.join("second").join(MASTER), dir.join(MASTER)];
        let compiled = CompiledComponent::load(runtime().engine(), &config.component).unwrap();
        let master = Arc::new(Node::new(runtime(), config, compiled).await.unwrap());
        master.start_replication();
        settled(&master).await;
        let reloader = Reloader::start(runtime(), std::slice::from_ref(&master)).unwrap();
        let reports = reloader.subscribe();
        let regular_version = master.current().info.version.clone();
        Self { dir, master, reloader, reports, _secondary: secondary, regular_version }
    }

    fn file(&self) -> PathBuf {
        self.dir.join(MASTER)
    }

    /// The next report, failing the test after 20 s without one.
    async fn next_report(&mut self) -> Report {
        tokio::time::timeout(Duration::from_secs(20), self.reports.recv())
            .await
            .expect("a reload report within 20 s")
            .expect("the reloader is running")
    }

    async fn health_version(&self) -> String {
        let health = call(&self.master, "GET", "/health", "").await;
        health.json["component"]["version"].as_str().unwrap().to_owned()
    }
}

impl Drop for Swappable {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn variant(file: &str) -> Vec<u8> {
    std::fs::read(variant_dir().join(file)).unwrap()
}

async fn post(node: &Node, msg: &str) -> u64 {
    let answer = call(node, "POST", "/messages", format!(r#"{{"msg": "{msg}"}}"#)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.json);
    answer.json["seq"].as_u64().unwrap()
}

#[test]
fn a_copy_goes_live_only_once_complete_and_the_log_carries_on() {
    block_on(async {
        let mut node = Swappable::start("copy").await;
        assert_eq!(post(&node.master, "before").await, 1);
        let new = variant(MASTER);
        let expected = variant_version(&node.regular_version);

        // Copy over the file in three slow pieces, as a large `cp` would.
        let third = new.len() / 3;
        for (i, piece) in
            [&new[..third], &new[third..2 * third], &new[2 * third..]].iter().enumerate()
        {
            let mut contents = std::fs::read(node.file()).unwrap_or_default();
            if i == 0 {
                contents.clear();
            }
            contents.extend_from_slice(piece);
            std::fs::write(node.file(), contents).unwrap();
            if i < 2 {
                tokio::time::sleep(Duration::from_millis(150)).await;
                assert_eq!(
                    node.health_version().await,
                    node.regular_version,
                    "half a file never serves"
                );
            }
        }
        let mut refused_partial = 0;
        loop {
            match node.next_report().await.outcome {
                Outcome::Swapped { to, .. } => {
                    assert_eq!(to.version, expected);
                    break;
                }
                Outcome::Rejected { reason, serving } => {
                    assert_eq!(serving.version, node.regular_version);
                    assert!(reason.contains("not a valid WebAssembly component"), "{reason}");
                    refused_partial += 1;
                }
                Outcome::Unchanged => {}
            }
        }
        assert!(refused_partial > 0, "the partial copies were looked at and refused");
        assert_eq!(node.health_version().await, expected);

        // The state is the node's, not the component's: sequence numbers and the log go on.
        assert_eq!(post(&node.master, "after").await, 2);
        assert_eq!(log_of(&node.master), ["before", "after"]);
        let health = call(&node.master, "GET", "/health", "").await;
        assert_eq!(health.json["secondaries"][0]["acked"], 2, "peers' progress carried on");
    });
}

#[test]
fn a_file_renamed_into_place_goes_live() {
    block_on(async {
        let mut node = Swappable::start("rename").await;
        let staging = node.dir.join(".incoming.wasm");
        std::fs::write(&staging, variant(MASTER)).unwrap();
        std::fs::rename(&staging, node.file()).unwrap();
        let report = node.next_report().await;
        let Outcome::Swapped { from, to, compile_time } = report.outcome else {
            panic!("expected a swap, got {:?}", report.outcome);
        };
        assert_eq!(from.version, node.regular_version);
        assert_eq!(to.version, variant_version(&node.regular_version));
        assert!(compile_time > Duration::ZERO, "a new version is compiled");
        assert_eq!(node.health_version().await, to.version);
    });
}

#[test]
fn a_new_version_never_runs_on_an_instance_of_the_old_one() {
    block_on(async {
        let mut node = Swappable::start("instances").await;
        for _ in 0..5 {
            assert_eq!(node.health_version().await, node.regular_version);
        }
        let idle = |node: &Node| {
            let text = node.metrics();
            text.lines()
                .find_map(|l| l.strip_prefix("replog_instances_idle "))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        };
        assert!(idle(&node.master) >= 1, "the old version's instances are kept for reuse");
        let staging = node.dir.join(".incoming.wasm");
        std::fs::write(&staging, variant(MASTER)).unwrap();
        std::fs::rename(&staging, node.file()).unwrap();
        let report = node.next_report().await;
        assert!(matches!(report.outcome, Outcome::Swapped { .. }), "{:?}", report.outcome);
        let expected = variant_version(&node.regular_version);
        for i in 0..20 {
            assert_eq!(node.health_version().await, expected, "request {i} after the swap");
        }
        let health = call(&node.master, "GET", "/health", "").await;
        let sha = health.json["component"]["sha256"].as_str().unwrap().to_owned();
        let file = replog::node::sha256(&variant(MASTER));
        assert_eq!(sha, file, "its instances report the new file");
    });
}

#[test]
fn broken_wrong_or_missing_files_never_replace_the_running_version() {
    block_on(async {
        let mut node = Swappable::start("broken").await;
        type Install = Box<dyn Fn(&Path)>;
        let cases: [(&str, Install, &str); 3] = [
            (
                "garbage",
                Box::new(|f| std::fs::write(f, b"not wasm at all").unwrap()),
                "not a valid WebAssembly component",
            ),
            (
                "the secondary's component",
                Box::new(|f| std::fs::write(f, variant(SECONDARY)).unwrap()),
                "does not fit the master role",
            ),
            ("no file", Box::new(|f| std::fs::remove_file(f).unwrap()), "cannot read component"),
        ];
        for (case, write, says) in cases {
            write(&node.file());
            let report = node.next_report().await;
            let Outcome::Rejected { reason, serving } = report.outcome else {
                panic!("{case}: expected a refusal, got {:?}", report.outcome);
            };
            assert!(reason.contains(says), "{case}: {reason:?} should mention {says:?}");
            assert_eq!(serving.version, node.regular_version, "{case}");
            assert_eq!(node.health_version().await, node.regular_version, "{case}: still serving");
            post(&node.master, case).await;
        }
    });
}

#[test]
fn swapping_back_to_a_version_seen_before_needs_no_compile() {
    block_on(async {
        let mut node = Swappable::start("back").await;
        let regular = std::fs::read(node.file()).unwrap();
        for (bytes, compiles) in
            [(variant(MASTER), true), (regular.clone(), false), (variant(MASTER), false)]
        {
            std::fs::write(node.file(), bytes).unwrap();
            let report = node.next_report().await;
            let Outcome::Swapped { compile_time, .. } = report.outcome else {
                panic!("expected a swap, got {:?}", report.outcome);
            };
            assert_eq!(compile_time > Duration::ZERO, compiles);
        }
        // Asked to look again with nothing changed, it leaves the node alone.
        node.reloader.reload_all();
        assert!(matches!(node.next_report().await.outcome, Outcome::Unchanged));
    });
}

#[test]
fn a_newer_build_in_another_folder_is_swapped_in_and_the_newest_file_wins() {
    block_on(async {
        let mut node = Swappable::start("second").await;
        let second = node.dir.join("second").join(MASTER);
        std::fs::write(&second, variant(MASTER)).unwrap();
        let report = node.next_report().await;
        assert_eq!(report.path.file_name(), second.file_name());
        assert!(report.path.ends_with(Path::new("second").join(MASTER)), "{:?}", report.path);
        let Outcome::Swapped { to, .. } = report.outcome else {
            panic!("expected a swap, got {:?}", report.outcome);
        };
        assert_eq!(to.version, variant_version(&node.regular_version));
        assert_eq!(post(&node.master, "on the second build").await, 1);

        // The first folder's file, rebuilt, is the newest again.
        let regular = std::fs::read(component_path(MASTER)).unwrap();
        std::fs::write(node.file(), regular).unwrap();
        let report = node.next_report().await;
        assert!(!report.path.ends_with(Path::new("second").join(MASTER)), "{:?}", report.path);
        let Outcome::Swapped { to, .. } = report.outcome else {
            panic!("expected a swap back, got {:?}", report.outcome);
        };
        assert_eq!(to.version, node.regular_version);
        assert_eq!(post(&node.master, "back on the first").await, 2, "the log carried on");
    });
}
