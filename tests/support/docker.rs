//! Containers for tests: a Compose project of the test's own (taken down on drop), the static
//! host the image holds, and waits on what the containers serve. A test that needs Docker
//! calls `engine` first: where no engine answers it is skipped, saying why (a failure under CI).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::{blocking_get, repo_root, skip};

/// The Compose program, once the Docker engine is known to answer; `None` (the test skipped,
/// or failed under CI) when it does not.
pub fn engine() -> Option<Vec<&'static str>> {
    let docker = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match &docker {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let error = String::from_utf8_lossy(&out.stderr);
            skip(&format!("no Docker engine answers (docker info: {})", error.trim()));
            return None;
        }
        Err(e) => {
            skip(&format!("no docker command ({e})"));
            return None;
        }
    }
    let program = compose_program();
    if program.is_none() {
        skip("the Docker engine answers but neither `docker compose` nor `docker-compose` runs");
    }
    program
}

/// `docker compose` (v2) where there is one, else `docker-compose` (v1, what Debian 12 ships).
pub fn compose_program() -> Option<Vec<&'static str>> {
    let works = |program: &[&str]| {
        let mut command = Command::new(program[0]);
        command.args(&program[1..]).arg("version");
        command.output().is_ok_and(|out| out.status.success())
    };
    [&["docker", "compose"][..], &["docker-compose"][..]]
        .into_iter()
        .find(|program| works(program))
        .map(<[&str]>::to_vec)
}

/// A Compose project of this test's own, taken down (containers, network, image) on drop,
/// also when a check fails.
pub struct Project {
    pub program: Vec<&'static str>,
    pub name: String,
    /// A folder of the test's own: the Compose file and the cluster secret.
    pub dir: PathBuf,
    pub file: PathBuf,
    pub image: String,
}

impl Project {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.program[0]);
        command.args(&self.program[1..]).arg("-p").arg(&self.name).arg("-f").arg(&self.file);
        command.arg("--project-directory").arg(repo_root()).args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("running compose");
        assert!(
            output.status.success(),
            "compose {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(out) = self.command(&["logs", "--no-color"]).output()
        {
            eprintln!("--- compose logs ---\n{}", String::from_utf8_lossy(&out.stdout));
        }
        let _ = self.command(&["down", "-v", "--rmi", "all", "--remove-orphans"]).output();
        // Compose v2 builds the image once per service and labels each build with the project;
        // the untagged leftovers go too.
        let _ = Command::new("docker")
            .args(["image", "prune", "--all", "--force", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.name))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds what the image and the volume hold: the static host (its build script builds the
/// components too).
pub fn build_static_host() {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let output = Command::new(cargo)
        .current_dir(repo_root())
        .args(["build", "--release", "--target", "x86_64-unknown-linux-musl", "-p", "replog"])
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "the static build failed (it needs Debian's musl-tools: apt-get install musl-tools):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn wait_healthy(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while blocking_get(url).is_none_or(|(status, _)| status != 200) {
        assert!(Instant::now() < deadline, "{url} not healthy within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the master at `base` takes writes.
pub fn wait_writable(base: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let writable = || {
        let (status, body) = blocking_get(&format!("{base}/health"))?;
        let health: serde_json::Value = serde_json::from_str(&body).ok()?;
        Some(status == 200 && health["writable"] == true)
    };
    while writable() != Some(true) {
        assert!(Instant::now() < deadline, "{base} not writable within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Builds and tags `tag`: a `FROM scratch` image of Debian's etcd (`/usr/bin/etcd` at
/// `/usr/local/bin/etcd`, where etcd's own image has it, with the libraries `ldd` names and an
/// empty `/tmp`), since no image can be pulled here. The test removes it when done.
pub fn build_etcd_image(tag: &str, dir: &std::path::Path) {
    let etcd = std::path::Path::new("/usr/bin/etcd");
    let root = dir.join("etcd-image");
    let _ = std::fs::remove_dir_all(&root);
    let place = |from: &std::path::Path, at: &str| {
        let to = root.join(at.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    };
    place(etcd, "/usr/local/bin/etcd");
    let ldd = Command::new("ldd").arg(etcd).output().expect("running ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux... (0x...)`.
        let path = line.split("=>").last().unwrap_or_default().split_whitespace().next();
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            place(std::path::Path::new(path), path);
        }
    }
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(
        root.join("Dockerfile"),
        "FROM scratch\nCOPY . /\nENTRYPOINT [\"/usr/local/bin/etcd\"]\n",
    )
    .unwrap();
    let built =
        Command::new("docker").args(["build", "-q", "-t", tag]).arg(&root).output().unwrap();
    assert!(built.status.success(), "building {tag}: {}", String::from_utf8_lossy(&built.stderr));
}

/// The name of the container of `service` in compose project `project`.
pub fn container(project: &str, service: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!("label=com.docker.compose.project={project}"))
        .arg("--filter")
        .arg(format!("label=com.docker.compose.service={service}"))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    names.lines().next().unwrap_or_else(|| panic!("no container for {service}")).to_owned()
}

/// `docker` with `args`, which must succeed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("running docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
