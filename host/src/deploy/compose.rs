//! `replog compose`: the Compose file for a master and N secondaries, one container each, or
//! (`--failover`) for etcd and members that elect their master through it.
//!
//! The nodes share a cluster secret that nobody has to make: a one-shot service of the same
//! image (`replog make-secret`) writes a random one into a volume of its own the first time the
//! cluster starts, and keeps it after; the nodes start once it has, mount that volume
//! read-only, read the secret as root (it is root's, mode 0600), and switch to an unprivileged
//! user (`RUN_AS`). `docker compose down -v` drops it with the logs.

use std::fmt::Write as _;

use super::{DATA_MOUNT, ETCD_BINARY, ETCD_CLIENT_PORT, RUN_AS_ID, flow_list, member_names};
use crate::components::BUILD_OUTPUTS;
use crate::config::{ConfigError, Topology, setting};

/// Port the master listens on inside its container (and every member of an elected cluster).
pub(crate) const MASTER_CONTAINER_PORT: u16 = super::MEMBER_PORT;
/// Port every secondary listens on inside its container: the master reaches them at
/// `http://secondaryN:8001`, as in the original project.
pub(crate) const SECONDARY_CONTAINER_PORT: u16 = 8001;
/// Where the built components are mounted in each container, over the ones the image holds.
pub(crate) const COMPONENTS_MOUNT: &str = "/components";
/// The folder mounted at `COMPONENTS_MOUNT`, relative to the Compose file: it holds the
/// outputs of both `cargo build` and `cargo component build` (`components::BUILD_OUTPUTS`).
pub(crate) const DEFAULT_COMPONENTS_DIR: &str = "./target/components";
/// The one-shot service that makes the cluster secret, and the volume it keeps it in.
const SECRET_SERVICE: &str = "cluster-secret";
/// Where that volume is mounted (read-only in the nodes).
const SECRET_MOUNT: &str = "/secrets";
/// The secret's file in it.
const SECRET_FILE: &str = "/secrets/cluster-secret";
/// The etcd service's name, and so its host name on the project network.
const ETCD_SERVICE: &str = "etcd";

/// What the Compose file runs, beyond the cluster's shape.
#[derive(Debug, Clone)]
pub(crate) struct Options<'a> {
    pub(crate) image: &'a str,
    /// The components folder, relative to the Compose file or absolute.
    pub(crate) components_dir: &'a str,
    /// The master's `REPLICATION_TIMEOUT_MS`, when not the default.
    pub(crate) replication_timeout_ms: Option<u64>,
    /// For an elected cluster (`--failover`): the etcd image; none for fixed roles.
    pub(crate) etcd_image: Option<&'a str>,
}

/// The Compose file for `topology`; an elected one needs at least three members.
pub(crate) fn render(topology: &Topology, options: &Options) -> Result<String, ConfigError> {
    if let Some(etcd_image) = options.etcd_image {
        return render_elected(topology, options, etcd_image);
    }
    let Options { image, components_dir, replication_timeout_ms, .. } = *options;
    let n = topology.delays.len();
    let delays: Vec<String> = topology.delays.iter().map(|d| d.as_millis().to_string()).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# Written by `replog compose` (NUM_SECONDARIES={n}, SECONDARY_DELAYS={delays}, MASTER_PORT={port}).
# Change those settings and run it again rather than editing this file.
#
# The image holds the static replog binary and the components it was built with, but each
# container here runs the components mounted read-only from {components_dir}
# (the newest of `cargo build` and `cargo component build` outputs): a new component build
# needs no new image, and running containers swap it in. The cluster secret is made on the
# first start, by the one-shot `{SECRET_SERVICE}` service. Build the host (which builds the
# components), then start:
#   cargo build --release --target x86_64-unknown-linux-musl
#   docker compose up --build -d

services:
",
        delays = delays.join(","),
        port = topology.master_port,
    );
    write_secret_service(&mut out, image);
    for (i, delay) in delays.iter().enumerate() {
        let service = Service {
            name: &format!("secondary{}", i + 1),
            role: "secondary",
            health: "ready",
            env: vec![
                ("PORT", SECONDARY_CONTAINER_PORT.to_string()),
                (setting::DELAY_MS, delay.clone()),
                // For its console: the whole cluster, seen from the master.
                ("MASTER_URL", format!("http://master:{MASTER_CONTAINER_PORT}")),
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
        health: "ready",
        env,
        ports: (topology.master_port, MASTER_CONTAINER_PORT),
    };
    master.write(&mut out, image, components_dir);
    for i in 1..=n {
        let _ = writeln!(out, "      secondary{i}:\n        condition: service_healthy");
    }
    // Each node's log, and the secret, outlive their containers: `docker compose down` keeps
    // them, `down -v` drops them.
    out.push_str("\nvolumes:\n");
    let _ = writeln!(out, "  {SECRET_SERVICE}:");
    for i in 1..=n {
        let _ = writeln!(out, "  secondary{i}-data:");
    }
    out.push_str("  master-data:\n");
    Ok(out)
}

/// The Compose file of an elected cluster: etcd, and `topology`'s master and secondaries as
/// members `n1`, `n2`, ... that elect their master through it, on the same ports (`n1` on
/// `MASTER_PORT`). Every member listens on 8000 inside its container.
fn render_elected(
    topology: &Topology,
    options: &Options,
    etcd_image: &str,
) -> Result<String, ConfigError> {
    let Options { image, components_dir, replication_timeout_ms, .. } = *options;
    let names = member_names(topology);
    let n = names.len();
    let counted_by = format!("NUM_SECONDARIES={} (+ 1)", topology.delays.len());
    let (members, _) = super::members(&names, str::to_owned, &counted_by)?;
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# Written by `replog compose --failover` ({n} members, MASTER_PORT={port}, ETCD_IMAGE={etcd_image}).
# Change those settings and run it again rather than editing this file.
#
# No member is master by configuration: etcd elects one, and another takes over when it dies,
# pauses or is cut off. Every member takes writes on its port (the others forward them to the
# master); `replog status http://127.0.0.1:{port}` names the master. The containers run the
# components mounted read-only from {components_dir}, not the image's.
#   cargo build --release --target x86_64-unknown-linux-musl
#   docker compose up --build -d

services:
",
        port = topology.master_port,
    );
    write_secret_service(&mut out, image);
    let etcd = [ETCD_SERVICE.to_owned()];
    let etcd_args = flow_list(&super::etcd_args(ETCD_SERVICE, &etcd, str::to_owned, "/etcd-data"));
    let _ = write!(
        out,
        "  {ETCD_SERVICE}:
    # One etcd member; its data in a volume of its own.
    image: {etcd_image}
    entrypoint: [\"{ETCD_BINARY}\"]
    command: {etcd_args}
    volumes:
      - {ETCD_SERVICE}-data:/etcd-data

"
    );
    for (i, name) in names.iter().enumerate() {
        let mut env = vec![
            ("PORT", MASTER_CONTAINER_PORT.to_string()),
            (setting::MEMBERS, members.clone()),
            (setting::ETCD_ENDPOINTS, format!("http://{ETCD_SERVICE}:{ETCD_CLIENT_PORT}")),
        ];
        if let Some(ms) = replication_timeout_ms {
            env.push(("REPLICATION_TIMEOUT_MS", ms.to_string()));
        }
        let port = topology.master_port + i as u16;
        let service = Service {
            name,
            role: "auto",
            health: "health",
            env,
            ports: (port, MASTER_CONTAINER_PORT),
        };
        service.write(&mut out, image, components_dir);
        let _ = writeln!(out, "      {ETCD_SERVICE}:\n        condition: service_started");
        out.push('\n');
    }
    out.pop();
    out.push_str("\nvolumes:\n");
    let _ = writeln!(out, "  {SECRET_SERVICE}:\n  {ETCD_SERVICE}-data:");
    for name in &names {
        let _ = writeln!(out, "  {name}-data:");
    }
    Ok(out)
}

/// The one-shot service that makes the cluster secret.
fn write_secret_service(out: &mut String, image: &str) {
    let _ = write!(
        out,
        "  {SECRET_SERVICE}:
    # Makes a random cluster secret in its volume once, then exits; later starts keep it.
    build: .
    image: {image}
    command: [\"make-secret\", \"{SECRET_FILE}\"]
    user: \"0:0\"
    cap_drop: [ALL]
    volumes:
      - {SECRET_SERVICE}:{SECRET_MOUNT}

"
    );
}

/// One node's container.
struct Service<'a> {
    name: &'a str,
    role: &'a str,
    /// The route its health check asks: `ready` (fixed roles), `health` (an elected member is
    /// healthy while it runs, whatever its role).
    health: &'a str,
    env: Vec<(&'static str, String)>,
    /// Published port on the host, port inside the container.
    ports: (u16, u16),
}

impl Service<'_> {
    fn write(&self, out: &mut String, image: &str, components_dir: &str) {
        let Self { name, role, health, ports: (host_port, port), .. } = self;
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
      CLUSTER_SECRET_FILE: \"{SECRET_FILE}\"
      RUN_AS: \"{RUN_AS_ID}:{RUN_AS_ID}\"
    ports:
      - \"{host_port}:{port}\"
    volumes:
      - {components_dir}:{COMPONENTS_MOUNT}:ro
      - {SECRET_SERVICE}:{SECRET_MOUNT}:ro
      - {name}-data:{DATA_MOUNT}
    healthcheck:
      test: [\"CMD\", \"/replog\", \"probe\", \"http://127.0.0.1:{port}/{health}\"]
      interval: 2s
      timeout: 3s
      retries: 15
    depends_on:
      {SECRET_SERVICE}:
        condition: service_completed_successfully
"
        );
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
            etcd_image: None,
        };
        let text = render(&topology, &options).unwrap();
        for expected in [
            "NUM_SECONDARIES=3, SECONDARY_DELAYS=0,500,2000, MASTER_PORT=9000",
            "  secondary3:\n",
            "      DELAY_MS: \"2000\"\n",
            "      MASTER_URL: \"http://master:8000\"\n",
            "      - \"9003:8001\"\n",
            "      - \"9000:8000\"\n",
            "SECONDARIES: \"http://secondary1:8001,http://secondary2:8001,http://secondary3:8001\"",
            "      secondary3:\n        condition: service_healthy\n",
            "image: replog:test",
            "      - /srv/components:/components:ro\n      - cluster-secret:/secrets:ro\n      - secondary3-data:/data\n",
            "\nvolumes:\n  cluster-secret:\n  secondary1-data:\n  secondary2-data:\n  secondary3-data:\n  master-data:\n",
            "      SECONDARY_DELAYS: \"0,500,2000\"\n",
            "      REPLICATION_TIMEOUT_MS: \"15000\"\n",
            "  cluster-secret:\n    # Makes a random cluster secret in its volume once, then exits; later starts keep it.\n    build: .\n    image: replog:test\n    command: [\"make-secret\", \"/secrets/cluster-secret\"]\n",
            "      CLUSTER_SECRET_FILE: \"/secrets/cluster-secret\"\n      RUN_AS: \"65534:65534\"\n",
            "    cap_drop: [ALL]\n    cap_add: [SETUID, SETGID, DAC_READ_SEARCH]\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        let read_only = "      - cluster-secret:/secrets:ro\n";
        assert_eq!(text.matches(read_only).count(), 4, "every node has the secret, read-only");
        let after_it = "      cluster-secret:\n        condition: service_completed_successfully\n";
        assert_eq!(text.matches(after_it).count(), 4, "every node starts once it is made");
        assert_eq!(text.matches("      - cluster-secret:/secrets\n").count(), 1, "one writer");
    }

    #[test]
    fn an_elected_cluster_has_etcd_and_members_that_all_know_each_other() {
        let topology = Topology::new(9000, 2, None).unwrap();
        let options = Options {
            image: "replog:test",
            components_dir: "./target/components",
            replication_timeout_ms: None,
            etcd_image: Some("etcd:local"),
        };
        let text = render(&topology, &options).unwrap();
        let members = "MEMBERS: \"n1=http://n1:8000,n2=http://n2:8000,n3=http://n3:8000\"";
        assert_eq!(text.matches(members).count(), 3, "{text}");
        for expected in [
            "  etcd:\n    # One etcd member; its data in a volume of its own.\n    image: etcd:local\n    entrypoint: [\"/usr/local/bin/etcd\"]\n",
            "\"--advertise-client-urls\", \"http://etcd:2379\"",
            "command: [\"serve\", \"--role\", \"auto\", \"--name\", \"n3\"]",
            "      ETCD_ENDPOINTS: \"http://etcd:2379\"\n",
            "      - \"9000:8000\"\n",
            "      - \"9002:8000\"\n",
            "\"http://127.0.0.1:8000/health\"",
            "      etcd:\n        condition: service_started\n",
            "\nvolumes:\n  cluster-secret:\n  etcd-data:\n  n1-data:\n  n2-data:\n  n3-data:\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(!text.contains("SECONDARIES"), "no fixed roles:\n{text}");
    }
}
