//! `replog compose`: the Compose file for a master and N secondaries, one container each.
//!
//! The text is written by hand rather than through a YAML library so that it is stable to the
//! byte (the committed `docker-compose.yml` must equal the default output) and reads like a
//! file a person would write.
//!
//! The nodes share a cluster secret, wired as a Compose secret from a file beside the Compose
//! file that `replog compose` creates once (mode 0600, never overwritten; `.gitignore` keeps
//! it out of the repository). Compose mounts it with the file's owner and mode, so the
//! containers start as root, read it, and switch to an unprivileged user (`RUN_AS`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::components::BUILD_OUTPUTS;
use crate::secret::ClusterSecret;

use crate::config::{Topology, setting};

pub(crate) const DEFAULT_IMAGE: &str = "replog:latest";
/// Port every node listens on inside its container: secondaries all use 8001, so the master
/// reaches them at `http://secondaryN:8001`, as in the original project.
pub(crate) const MASTER_CONTAINER_PORT: u16 = 8000;
pub(crate) const SECONDARY_CONTAINER_PORT: u16 = 8001;
/// Where the built components are mounted in each container.
pub(crate) const COMPONENTS_MOUNT: &str = "/components";
/// Where each container keeps its log: a named volume of its own.
pub(crate) const DATA_MOUNT: &str = "/data";
/// The folder mounted at `COMPONENTS_MOUNT`, relative to the Compose file: it holds the
/// outputs of both `cargo build` and `cargo component build` (`components::BUILD_OUTPUTS`).
pub(crate) const DEFAULT_COMPONENTS_DIR: &str = "./target/components";
/// The cluster secret's file, beside the Compose file.
pub(crate) const DEFAULT_SECRET_FILE: &str = "./.cluster-secret";
/// Its name as a Compose secret, and so its file in the containers, under /run/secrets.
const SECRET_NAME: &str = "cluster-secret";
/// The unprivileged user and group the containers serve as, once they have read the secret.
const RUN_AS: &str = "65534:65534";

/// What the Compose file runs, beyond the cluster's shape.
#[derive(Debug, Clone)]
pub(crate) struct Options<'a> {
    pub(crate) image: &'a str,
    /// The components folder, relative to the Compose file or absolute.
    pub(crate) components_dir: &'a str,
    /// The cluster secret's file, relative to the Compose file or absolute.
    pub(crate) secret_file: &'a str,
    /// The master's `REPLICATION_TIMEOUT_MS`, when not the default.
    pub(crate) replication_timeout_ms: Option<u64>,
}

/// The Compose file for `topology`.
pub(crate) fn render(topology: &Topology, options: &Options) -> String {
    let Options { image, components_dir, secret_file, replication_timeout_ms } = *options;
    let n = topology.delays.len();
    let delays: Vec<String> = topology.delays.iter().map(|d| d.as_millis().to_string()).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# Written by `replog compose` (NUM_SECONDARIES={n}, SECONDARY_DELAYS={delays}, MASTER_PORT={port}).
# Change those settings and run it again rather than editing this file.
#
# The image holds only the static replog binary. Each container runs the components mounted
# read-only from {components_dir}
# (the newest of `cargo build` and `cargo component build` outputs): a new component build
# needs no new image, and running containers swap it in. Build both first, make the cluster
# secret (`replog compose` writes {secret_file} once), then start:
#   cargo build --release --target x86_64-unknown-linux-musl
#   ./target/x86_64-unknown-linux-musl/release/replog compose
#   docker compose up --build -d

secrets:
  {SECRET_NAME}:
    file: {secret_file}

services:
",
        delays = delays.join(","),
        port = topology.master_port,
    );
    for (i, delay) in delays.iter().enumerate() {
        let service = Service {
            name: &format!("secondary{}", i + 1),
            role: "secondary",
            env: vec![
                ("PORT", SECONDARY_CONTAINER_PORT.to_string()),
                (setting::DELAY_MS, delay.clone()),
            ],
            ports: (topology.secondary_port(i + 1), SECONDARY_CONTAINER_PORT),
        };
        service.write(&mut out, image, components_dir);
        out.push('\n');
    }
    let peers: Vec<String> =
        (1..=n).map(|i| format!("http://secondary{i}:{SECONDARY_CONTAINER_PORT}")).collect();
    // The master checks that each secondary's delay leaves it time to answer, as in
    // `replog cluster`.
    let mut env = vec![
        ("PORT", MASTER_CONTAINER_PORT.to_string()),
        (setting::SECONDARIES, peers.join(",")),
        (setting::SECONDARY_DELAYS, delays.join(",")),
    ];
    if let Some(ms) = replication_timeout_ms {
        env.push(("REPLICATION_TIMEOUT_MS", ms.to_string()));
    }
    let master = Service {
        name: "master",
        role: "master",
        env,
        ports: (topology.master_port, MASTER_CONTAINER_PORT),
    };
    master.write(&mut out, image, components_dir);
    out.push_str("    depends_on:\n");
    for i in 1..=n {
        let _ = writeln!(out, "      secondary{i}:\n        condition: service_healthy");
    }
    // Each node's log outlives its container: `docker compose down` keeps it, `down -v` drops it.
    out.push_str("\nvolumes:\n");
    for i in 1..=n {
        let _ = writeln!(out, "  secondary{i}-data:");
    }
    out.push_str("  master-data:\n");
    out
}

/// One node's container.
struct Service<'a> {
    name: &'a str,
    role: &'a str,
    env: Vec<(&'static str, String)>,
    /// Published port on the host, port inside the container.
    ports: (u16, u16),
}

impl Service<'_> {
    fn write(&self, out: &mut String, image: &str, components_dir: &str) {
        let Self { name, role, ports: (host_port, port), .. } = self;
        // The mounted folder itself, or either build's output in it: the newest file runs.
        let components = std::iter::once(COMPONENTS_MOUNT.to_owned())
            .chain(BUILD_OUTPUTS.iter().map(|output| format!("{COMPONENTS_MOUNT}/{output}")))
            .collect::<Vec<_>>()
            .join(":");
        let _ = write!(
            out,
            "  {name}:
    build: .
    image: {image}
    command: [\"serve\", \"--role\", \"{role}\", \"--name\", \"{name}\"]
    # Root only to read the secret: the node switches to RUN_AS before it serves, keeping of
    # these capabilities only the one to read any file (cargo component writes its builds
    # readable by their owner alone, and a new build is read long after the switch).
    user: \"0:0\"
    cap_drop: [ALL]
    cap_add: [SETUID, SETGID, DAC_READ_SEARCH]
    environment:
"
        );
        for (key, value) in &self.env {
            let _ = writeln!(out, "      {key}: \"{value}\"");
        }
        let _ = write!(
            out,
            "      REPLOG_COMPONENTS: \"{components}\"
      DATA_DIR: \"{DATA_MOUNT}\"
      CLUSTER_SECRET_FILE: \"/run/secrets/{SECRET_NAME}\"
      RUN_AS: \"{RUN_AS}\"
    secrets:
      - {SECRET_NAME}
    ports:
      - \"{host_port}:{port}\"
    volumes:
      - {components_dir}:{COMPONENTS_MOUNT}:ro
      - {name}-data:{DATA_MOUNT}
    healthcheck:
      test: [\"CMD\", \"/replog\", \"probe\", \"http://127.0.0.1:{port}/ready\"]
      interval: 2s
      timeout: 3s
      retries: 15
"
        );
    }
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it, then renamed.
pub(crate) fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&temp).and_then(|mut file| {
        file.write_all(text.as_bytes())?;
        file.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Where the cluster secret named `secret_file` in a Compose file written to `output` is:
/// relative paths start from the Compose file's folder, as Compose reads them.
pub(crate) fn secret_path(output: &Path, secret_file: &str) -> PathBuf {
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    dir.join(secret_file)
}

/// Makes a new random cluster secret at `path`, readable by its owner only, unless a file is
/// there already: an existing secret is never replaced (nodes already use it). Returns whether
/// it made one.
pub(crate) fn ensure_secret(path: &Path) -> std::io::Result<bool> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
    let mut file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    let written = writeln!(file, "{}", ClusterSecret::random_text()).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_secondary_gets_its_port_delay_and_a_place_in_the_masters_peers() {
        let topology = Topology::new(9000, 3, Some("0,500,2000")).unwrap();
        let options = Options {
            image: "replog:test",
            components_dir: "/srv/components",
            secret_file: "/srv/secret",
            replication_timeout_ms: Some(15_000),
        };
        let text = render(&topology, &options);
        for expected in [
            "NUM_SECONDARIES=3, SECONDARY_DELAYS=0,500,2000, MASTER_PORT=9000",
            "  secondary3:\n",
            "      DELAY_MS: \"2000\"\n",
            "      - \"9003:8001\"\n",
            "      - \"9000:8000\"\n",
            "SECONDARIES: \"http://secondary1:8001,http://secondary2:8001,http://secondary3:8001\"",
            "      secondary3:\n        condition: service_healthy\n",
            "image: replog:test",
            "      - /srv/components:/components:ro\n      - secondary3-data:/data\n",
            "\nvolumes:\n  secondary1-data:\n  secondary2-data:\n  secondary3-data:\n  master-data:\n",
            "      SECONDARY_DELAYS: \"0,500,2000\"\n",
            "      REPLICATION_TIMEOUT_MS: \"15000\"\n",
            "secrets:\n  cluster-secret:\n    file: /srv/secret\n",
            "      CLUSTER_SECRET_FILE: \"/run/secrets/cluster-secret\"\n      RUN_AS: \"65534:65534\"\n    secrets:\n      - cluster-secret\n",
            "    cap_drop: [ALL]\n    cap_add: [SETUID, SETGID, DAC_READ_SEARCH]\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(text.matches("- cluster-secret\n").count(), 4, "every node has the secret");
    }

    #[test]
    fn the_secret_is_made_once_owner_only_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("replog-compose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = secret_path(&dir.join("docker-compose.yml"), DEFAULT_SECRET_FILE);
        assert_eq!(path, dir.join(".cluster-secret"));
        assert_eq!(
            secret_path(Path::new("docker-compose.yml"), DEFAULT_SECRET_FILE),
            Path::new("./.cluster-secret")
        );
        assert_eq!(secret_path(&dir.join("c.yml"), "/run/x"), Path::new("/run/x"));
        assert!(ensure_secret(&path).unwrap());
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(ClusterSecret::new(&first).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!ensure_secret(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "never overwritten");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
