//! `replog compose`: the Compose file for a master and N secondaries, one container each.
//!
//! The text is written by hand rather than through a YAML library so that it is stable to the
//! byte (the committed `docker-compose.yml` must equal the default output) and reads like a
//! file a person would write.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::config::Topology;

pub const DEFAULT_IMAGE: &str = "replog:latest";
/// Port every node listens on inside its container: secondaries all use 8001, so the master
/// reaches them at `http://secondaryN:8001`, as in the original project.
pub const MASTER_CONTAINER_PORT: u16 = 8000;
pub const SECONDARY_CONTAINER_PORT: u16 = 8001;
/// Where the built components are mounted in each container.
pub const COMPONENTS_MOUNT: &str = "/components";
/// Where each container keeps its log: a named volume of its own.
pub const DATA_MOUNT: &str = "/data";
/// The build output the containers run, relative to the Compose file.
pub const DEFAULT_COMPONENTS_DIR: &str = "./target/components/wasm32-wasip2/release";

/// What the Compose file runs, beyond the cluster's shape.
#[derive(Debug, Clone)]
pub struct Options<'a> {
    pub image: &'a str,
    /// The components folder, relative to the Compose file or absolute.
    pub components_dir: &'a str,
    /// The master's `REPLICATION_TIMEOUT_MS`, when not the default.
    pub replication_timeout_ms: Option<u64>,
}

/// The Compose file for `topology`.
pub fn render(topology: &Topology, options: &Options) -> String {
    let Options { image, components_dir, replication_timeout_ms } = *options;
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
# read-only from {components_dir}:
# a new component build needs no new image. Build both first, then start:
#   cargo build --release --target x86_64-unknown-linux-musl
#   docker compose up --build -d

services:
",
        delays = delays.join(","),
        port = topology.master_port,
    );
    for (i, delay) in delays.iter().enumerate() {
        let service = Service {
            name: &format!("secondary{}", i + 1),
            role: "secondary",
            env: vec![("PORT", SECONDARY_CONTAINER_PORT.to_string()), ("DELAY_MS", delay.clone())],
            ports: (topology.secondary_port(i + 1), SECONDARY_CONTAINER_PORT),
        };
        service.write(&mut out, image, components_dir);
        out.push('\n');
    }
    let peers: Vec<String> =
        (1..=n).map(|i| format!("http://secondary{i}:{SECONDARY_CONTAINER_PORT}")).collect();
    let mut env =
        vec![("PORT", MASTER_CONTAINER_PORT.to_string()), ("SECONDARIES", peers.join(","))];
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
        let _ = write!(
            out,
            "  {name}:
    build: .
    image: {image}
    command: [\"serve\", \"--role\", \"{role}\", \"--name\", \"{name}\"]
    environment:
"
        );
        for (key, value) in &self.env {
            let _ = writeln!(out, "      {key}: \"{value}\"");
        }
        let _ = write!(
            out,
            "      REPLOG_COMPONENTS: \"{COMPONENTS_MOUNT}\"
      DATA_DIR: \"{DATA_MOUNT}\"
    ports:
      - \"{host_port}:{port}\"
    volumes:
      - {components_dir}:{COMPONENTS_MOUNT}:ro
      - {name}-data:{DATA_MOUNT}
    healthcheck:
      test: [\"CMD\", \"/replog\", \"probe\", \"http://127.0.0.1:{port}/health\"]
      interval: 2s
      timeout: 3s
      retries: 15
"
        );
    }
}

/// Writes `text` to `path` whole or not at all: into a temporary file beside it, then renamed.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_secondary_gets_its_port_delay_and_a_place_in_the_masters_peers() {
        let topology = Topology::new(9000, 3, Some("0,500,2000")).unwrap();
        let options = Options {
            image: "replog:test",
            components_dir: "/srv/components",
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
            "      REPLICATION_TIMEOUT_MS: \"15000\"\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
