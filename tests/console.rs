//! The console (`GET /` on every node) in a real browser: Debian's chromium, headless, driven
//! over WebDriver (chromedriver) as a person would use it: the page opened on a secondary, a
//! message appended through its form and seen on every node's card, a secondary stopped and
//! started again, and, with elected roles, a new component version swapped in and a master
//! killed and its successor named.
//!
//! Where chromium or chromedriver is missing the tests say SKIPPED, and fail under `CI`.
//! A screenshot of the console is kept in `target/test-artifacts/console.png`.

mod support;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::{elected, nodes, variant};

/// The longest a change takes to show: the page reads the cluster every second, and a reading
/// is shared for a quarter of one (`console.js`, `console/view.rs`), and the browser draws it.
const SHOWN_WITHIN: Duration = Duration::from_secs(2);

/// The master's heartbeat in the first test: a stopped secondary is unhealthy after
/// `UNHEALTHY_AFTER` (3) failed contacts at this pace.
const HEARTBEAT_MS: u64 = 200;

#[test]
fn the_console_on_a_secondary_shows_a_write_reach_every_node_and_a_secondary_leave_and_return() {
    let Some(browser) = Browser::open() else { return };
    let mut cluster =
        nodes::Cluster::new("console", &["--heartbeat-ms", &HEARTBEAT_MS.to_string()]);
    let master_url = cluster.master.url();
    for secondary in &mut cluster.secondaries {
        secondary.args.extend(["--master-url".to_owned(), master_url.clone()]);
        secondary.start();
    }
    cluster.master.start();
    let urls: Vec<String> = cluster.nodes().map(nodes::Node::url).collect();

    let started = Instant::now();
    browser.goto(&format!("{}/", cluster.secondaries[0].url()));
    browser.until(
        Duration::from_secs(10),
        "a card for each of the three nodes, all healthy",
        |cards| {
            cards.len() == 3
                && urls.iter().all(|url| card(cards, url).is_some_and(|c| c["tone"] == "good"))
        },
    );
    println!("page open and drawn in {:?}", started.elapsed());
    let loaded = browser.eval("return performance.getEntriesByType('navigation')[0].loadEventEnd");
    println!("the page loaded (its load event over) {loaded} ms after navigation began");

    // Appended through the form: on every node's card within SHOWN_WITHIN, in order.
    let texts = ["first, through the console", "second", "third <b>not bold</b>"];
    for (i, text) in texts.iter().enumerate() {
        browser.append(text, None);
        let seq = i + 1;
        let answered = browser.text("#answer");
        assert!(answered.starts_with(&format!("Appended as #{seq} ")), "{answered}");
        let took = browser.until(SHOWN_WITHIN, &format!("#{seq} on every card"), |cards| {
            urls.iter().all(|url| card(cards, url).is_some_and(|c| shows(c, seq as u64, text)))
        });
        println!("#{seq} on every node's card {took:?} after its answer");
    }
    let cards = browser.cards();
    for url in &urls {
        let shown: Vec<&str> = card(&cards, url).unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let expected: Vec<String> =
            texts.iter().enumerate().map(|(i, t)| format!("#{} {t}", i + 1)).collect();
        assert_eq!(shown, expected, "{url}: every message once, in order");
    }
    // A message is text, never markup.
    assert_eq!(browser.eval("return document.querySelectorAll('.messages b').length"), json!(0));
    browser.screenshot("console.png");

    // A secondary stopped: unhealthy as the master sees it, within its heartbeat bounds.
    let gone = cluster.secondaries[1].url();
    cluster.secondaries[1].kill();
    let bound = Duration::from_millis(HEARTBEAT_MS * 3) + SHOWN_WITHIN + Duration::from_secs(2);
    let took = browser.until(bound, "the stopped secondary's card says unhealthy", |cards| {
        card(cards, &gone).is_some_and(|c| c["health"] == "unhealthy" && c["role"] == "unreachable")
    });
    println!("stopped secondary shown unhealthy after {took:?}");
    browser.until(SHOWN_WITHIN, "an event says so", |_| {
        browser.text("#events").contains("is unhealthy")
    });

    // Written meanwhile with w=2, then caught up when it is back.
    browser.append("while one was away", Some(2));
    assert!(
        browser.text("#answer").starts_with("Appended as #4 with w=2"),
        "{}",
        browser.text("#answer")
    );
    cluster.secondaries[1].start();
    let took =
        browser.until(Duration::from_secs(15), "the secondary healthy again, caught up", |cards| {
            card(cards, &gone)
                .is_some_and(|c| c["health"] == "healthy" && shows(c, 4, "while one was away"))
        });
    println!("restarted secondary shown healthy and caught up after {took:?}");
    assert!(browser.text("#events").contains("is back: healthy"), "{}", browser.text("#events"));
    let cards = browser.cards();
    let shown = &card(&cards, &gone).unwrap()["messages"];
    assert_eq!(shown.as_array().map(Vec::len), Some(4), "its last messages, each once: {shown}");

    // The master's own console shows the same cluster, itself among it.
    let (status, view) = support::blocking_get(&format!("{master_url}/console/cluster")).unwrap();
    let view: Value = serde_json::from_str(&view).unwrap();
    assert_eq!(status, 200, "{view}");
    let nodes = view["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{view}");
    assert!(nodes.iter().all(|n| n["reachable"] == true), "{view}");
    assert_eq!(nodes.iter().filter(|n| n["here"] == true).count(), 1, "{view}");

    // What the page transferred in its first 10 s (headers and bodies): under 1 MB.
    browser.until(Duration::from_secs(15), "the page open for 10 s", |_| {
        browser.eval("return performance.now()").as_f64().unwrap() >= 10_000.0
    });
    let transferred = browser.eval(
        "const all = [...performance.getEntriesByType('navigation'), \
                      ...performance.getEntriesByType('resource')]; \
         return [all.filter(e => e.startTime < 10000).reduce((sum, e) => sum + e.transferSize, 0), \
                 performance.now()]",
    );
    let (bytes, open_ms) = (transferred[0].as_f64().unwrap(), transferred[1].as_f64().unwrap());
    println!("transferred in its first 10 s: {bytes} bytes (open for {:.1} s)", open_ms / 1000.0);
    assert!(bytes < 1e6, "{bytes} bytes");
}

#[test]
fn the_console_names_a_new_component_version_and_the_new_master_after_a_failover() {
    let Some(browser) = Browser::open() else { return };
    // The nodes run the components from a folder of this test's own, where a new build goes.
    let components =
        std::env::temp_dir().join(format!("replog-console-components-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&components);
    std::fs::create_dir_all(&components).unwrap();
    let files = ["replog_master.wasm", "replog_secondary.wasm"];
    let built = PathBuf::from(env!("REPLOG_BUILT_COMPONENTS"));
    for file in files {
        std::fs::copy(built.join(file), components.join(file)).unwrap();
    }
    let variant = variant::variant_dir();
    let Some(mut cluster) = elected::Cluster::start_from("console", Some(&components)) else {
        return;
    };
    let master = cluster.master(Duration::from_secs(30), None);
    let watcher = (master + 1) % cluster.members.len();
    let old = cluster.members[master].name.clone();
    let here = cluster.members[watcher].name.clone();
    browser.goto(&format!("{}/", cluster.members[watcher].url()));
    browser.until(
        Duration::from_secs(10),
        "the console names the master, every node answering",
        |cards| {
            browser.text("#about").contains(&format!("master: {old}"))
                && cards.iter().any(|c| c["name"] == old.as_str() && c["role"] == "master")
                && cards.len() == 3
                && cards.iter().all(|c| c["role"] != "unreachable")
        },
    );

    // A new build of both roles, renamed into place: each node swaps it in, and says so.
    let regular = cluster.members[master].health().unwrap()["component"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let swapped = variant::variant_version(&regular);
    for file in files {
        let staging = components.join(format!(".{file}.new"));
        std::fs::copy(variant.join(file), &staging).unwrap();
        std::fs::rename(&staging, components.join(file)).unwrap();
    }
    let events = || browser.text("#events");
    let took =
        browser.until(Duration::from_secs(30), "an event for each node's new version", |_| {
            events().matches(&format!("runs a new component version: {swapped} ")).count() == 3
        });
    println!("every node's new version shown {took:?} after the files were replaced");

    cluster.members[master].process.take(); // SIGKILL
    let new = cluster.master(Duration::from_secs(30), Some(master));
    let new = cluster.members[new].name.clone();
    let took =
        browser.until(Duration::from_secs(10), "the console names the new master", |cards| {
            browser.text("#about").contains(&format!("master: {new}"))
                && cards.iter().any(|c| c["name"] == new.as_str() && c["role"] == "master")
                && cards.iter().any(|c| c["name"] == old.as_str() && c["role"] == "unreachable")
                // The node serving the page answers all along (it may be the one elected).
            && cards.iter().any(|c| c["name"] == here.as_str() && c["role"] != "unreachable")
        });
    println!("new master {new} named {took:?} after it took writes");
    let events = browser.text("#events");
    assert!(events.contains(&format!("Master is now {new}")), "{events}");
    assert!(events.contains(&format!("{new} is now master")), "{events}");
    assert_eq!(
        events.matches("new component version").count(),
        3,
        "a change of role is not a new version: {events}"
    );
    browser.screenshot("console-failover.png");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&components);
}

/// The card of the node at `url` (or named `url`), as `Browser::cards` reads them.
fn card<'a>(cards: &'a [Value], url: &str) -> Option<&'a Value> {
    cards.iter().find(|c| c["url"] == url || c["name"] == url)
}

/// Whether a card lists `text` as its message `seq`.
fn shows(card: &Value, seq: u64, text: &str) -> bool {
    let line = format!("#{seq} {text}");
    card["messages"].as_array().is_some_and(|m| m.iter().any(|shown| *shown == line.as_str()))
}

/// A headless chromium, driven through a chromedriver of the test's own.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    _driver: Driver,
}

/// chromedriver in a process group of its own, which is killed whole (the browsers it started
/// with it) when the test ends, however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = self.0.id() as libc::pid_t;
        // SAFETY: a signal to the process group of a child this test started and owns.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

impl Browser {
    /// A browser, or `None` (after saying SKIPPED) where chromium or chromedriver is missing.
    /// A session that cannot be had is tried again with a fresh chromedriver, twice, each
    /// failure shown with the driver's log (a CI run once had one connection reset while two
    /// browsers started at once on a busy machine).
    fn open() -> Option<Self> {
        let chromium = support::tool("chromium", "chromium")?;
        let chromedriver = support::tool("chromedriver", "chromium-driver")?;
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_open(&chromium, &chromedriver) {
                Ok(browser) => return Some(browser),
                Err(failure) => {
                    eprintln!("no browser session this time: {failure}");
                    failures.push(failure);
                }
            }
        }
        panic!("no chromium session through chromedriver in 3 tries:\n{}", failures.join("\n"));
    }

    fn try_open(chromium: &Path, chromedriver: &Path) -> Result<Self, String> {
        let port = support::free_ports(1);
        let log = std::env::temp_dir()
            .join(format!("replog-chromedriver-{}-{port}.log", std::process::id()));
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver(child);
        let driver_log = || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
            text
        };
        // Ready when its WebDriver status says so, not merely when its port takes connections.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = support::client();
        while !runtime
            .block_on(client.get(&status))
            .is_ok_and(|reply| reply.status == 200 && reply.json()["value"]["ready"] == true)
        {
            if Instant::now() > deadline {
                return Err(format!("chromedriver not ready on {port}:\n{}", driver_log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                // As root in a container: no sandbox; no GPU, and /tmp rather than a small /dev/shm.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1100"],
            }),
        );
        let session = runtime.block_on(
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        );
        match session {
            Ok(client) => {
                let _ = std::fs::remove_file(&log);
                Ok(Self { runtime, client: Some(client), _driver: driver })
            }
            Err(e) => Err(format!("{e}; chromedriver's log:\n{}", driver_log())),
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("open until dropped")
    }

    fn goto(&self, url: &str) {
        self.runtime.block_on(self.client().goto(url)).unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    fn eval(&self, script: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(script, Vec::new()))
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    fn text(&self, css: &str) -> String {
        let script = format!("return document.querySelector({css:?}).textContent");
        self.eval(&script).as_str().unwrap_or_default().to_owned()
    }

    /// Every node's card as the page shows it: its name, URL, the role and health it says (as
    /// text), its tone, and its messages' lines.
    fn cards(&self) -> Vec<Value> {
        let script = "return [...document.querySelectorAll('article.node')].map(a => ({ \
            name: a.dataset.node, url: a.dataset.url, role: a.dataset.role, \
            health: a.dataset.health, tone: a.dataset.tone, \
            messages: [...a.querySelectorAll('.messages li[data-seq]')].map(li => li.textContent) }))";
        self.eval(script).as_array().cloned().unwrap_or_default()
    }

    /// Waits until `done` holds of the cards shown, for at most `within`; returns how long it
    /// took, or fails the test with what was shown last.
    fn until(
        &self,
        within: Duration,
        what: &str,
        mut done: impl FnMut(&[Value]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let cards = self.cards();
            if done(&cards) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "not within {within:?}: {what}\ncards: {cards:#?}\nevents: {}\nproblem: {}",
                self.text("#events"),
                self.text("#problem")
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Appends `msg` (with `w`, or the default) through the page's form, as a person would:
    /// typing, then Enter; returns once the page shows the answer.
    fn append(&self, msg: &str, w: Option<u64>) {
        self.runtime.block_on(async {
            let client = self.client();
            let w_field = client.find(Locator::Css("#w")).await.unwrap();
            w_field.clear().await.unwrap();
            if let Some(w) = w {
                w_field.send_keys(&w.to_string()).await.unwrap();
            }
            let field = client.find(Locator::Css("#msg")).await.unwrap();
            field.send_keys(msg).await.unwrap();
            field.send_keys("\u{E007}").await.unwrap(); // Enter
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.text("#answer");
            if answer.starts_with("Appended") || answer.starts_with("Not appended") {
                return;
            }
            assert!(Instant::now() < deadline, "no answer to the form: {answer:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Keeps a screenshot of the page under `target/test-artifacts`.
    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.runtime.block_on(self.client().screenshot()).expect("a screenshot");
        let dir = support::repo_root().join("target").join("test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, png).unwrap();
        println!("screenshot: {}", file.display());
        file
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
    }
}
