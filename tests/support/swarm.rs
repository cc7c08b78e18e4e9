//! A Docker Swarm for a test: the engine made a single-node manager if it is not one (and made
//! to leave again afterwards only then), the node labels that place a stack's members, and a
//! stack of the test's own with its swarm secret and images, all removed on drop, also when a
//! check fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::docker::docker;

/// `docker` with `args`, its output whether or not it succeeded.
fn docker_lossy(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("running docker");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// This engine as a swarm manager, for as long as the test holds it.
pub struct Swarm {
    /// The test made the swarm (`docker swarm init`): it leaves it when done.
    made: bool,
    /// `docker swarm init` made the `docker_gwbridge` network: it goes too.
    made_gwbridge: bool,
    /// This machine's node in the swarm.
    pub node: String,
    /// Labels the test added to the node, removed when done.
    labels: Vec<String>,
}

impl Swarm {
    /// The engine as a manager: joined as a single-node one if it is in no swarm. Panics (with
    /// why) where it is a swarm's worker, which cannot deploy.
    pub fn manager() -> Self {
        let state = docker_lossy(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let had_gwbridge =
            !docker_lossy(&["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"])
                .is_empty();
        let made = state == "inactive";
        if made {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            eprintln!("made this engine a single-node swarm manager (it leaves when done)");
        } else {
            let manager = docker_lossy(&["info", "--format", "{{.Swarm.ControlAvailable}}"]);
            assert_eq!(manager, "true", "the engine is in a swarm ({state}) but not a manager");
            eprintln!("the engine is a swarm manager already: it stays one");
        }
        let node = docker_lossy(&["info", "--format", "{{.Swarm.NodeID}}"]);
        Self { made, made_gwbridge: made && !had_gwbridge, node, labels: Vec::new() }
    }

    /// Labels this machine `label=true` (e.g. `replog-n1`), unless it is labelled so already.
    pub fn label(&mut self, label: &str) {
        let format = format!("{{{{index .Spec.Labels \"{label}\"}}}}");
        if docker_lossy(&["node", "inspect", "--format", &format, &self.node]) == "true" {
            return;
        }
        docker(&["node", "update", "--label-add", &format!("{label}=true"), &self.node]);
        self.labels.push(label.to_owned());
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for label in &self.labels {
            let _ = docker_lossy(&["node", "update", "--label-rm", label, &self.node]);
        }
        if self.made {
            let _ = docker_lossy(&["swarm", "leave", "--force"]);
            if self.made_gwbridge {
                let _ = docker_lossy(&["network", "rm", "docker_gwbridge"]);
            }
        }
    }
}

/// A stack of the test's own, its secret and its images; removed, with the volumes and network
/// it made, on drop.
pub struct Stack {
    pub name: String,
    pub secret: String,
    pub images: Vec<String>,
    /// A folder of the test's own (the stack file).
    pub dir: PathBuf,
}

impl Stack {
    /// Makes the swarm secret `secret` holding `value`.
    pub fn make_secret(&self, value: &str) {
        let mut child = Command::new("docker")
            .args(["secret", "create", &self.secret, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("running docker");
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), value.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "docker secret create {}", self.secret);
    }

    /// The running container of service `service` (`n1`, ...), if one runs.
    pub fn container(&self, service: &str) -> Option<String> {
        let filter = format!("label=com.docker.swarm.service.name={}_{service}", self.name);
        let ids = docker_lossy(&["ps", "-q", "--filter", &filter]);
        ids.lines().next().map(str::to_owned)
    }

    /// What every service of the stack logged.
    pub fn logs(&self) -> String {
        let filter = format!("label=com.docker.stack.namespace={}", self.name);
        let services = docker_lossy(&["service", "ls", "-q", "--filter", &filter]);
        services
            .lines()
            .map(|id| {
                let out = Command::new("docker")
                    .args(["service", "logs", "--raw", "--timestamps", id])
                    .output()
                    .expect("running docker");
                format!(
                    "--- service {id} ---\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .collect()
    }

    /// Waits until `check` holds, failing with the stack's logs after `within`.
    pub fn wait(&self, within: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !check() {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the stack's logs ---\n{}", self.logs());
        }
        let label = format!("label=com.docker.stack.namespace={}", self.name);
        let _ = docker_lossy(&["stack", "rm", &self.name]);
        // Volumes and the network go once no container of the stack is left.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_lossy(&["ps", "-aq", "--filter", &label]).is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        for volume in docker_lossy(&["volume", "ls", "-q", "--filter", &label]).lines() {
            let _ = docker_lossy(&["volume", "rm", volume]);
        }
        while !docker_lossy(&["network", "ls", "-q", "--filter", &label]).is_empty()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = docker_lossy(&["secret", "rm", &self.secret]);
        for image in &self.images {
            let _ = docker_lossy(&["image", "rm", "--force", image]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
