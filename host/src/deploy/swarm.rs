//! `replog compose --swarm`: a Docker Swarm stack of an elected cluster, for `docker stack
//! deploy -c FILE NAME` on a swarm of one machine or many.
//!
//! A stack's services may run on any machine, so nothing comes from the machine that wrote the
//! file: the image carries the components (the Dockerfile bakes the build's in), the cluster
//! secret is a swarm secret made beforehand (`docker secret create`, never in the file), and
//! each member keeps its log in a volume of the machine it is placed on. Members are placed by
//! node labels (`replog-n1 == true`, ...), one label per member, so that a member's task comes
//! back where its volume is and the operator decides which machines hold which member; etcd
//! runs one member beside each replog member (up to five), so that losing a machine loses one
//! of each and both keep a majority.

use std::fmt::Write as _;

use super::{
    DATA_MOUNT, ETCD_BINARY, ETCD_CLIENT_PORT, MEMBER_PORT, RUN_AS_ID, etcd_args, etcd_members,
    flow_list, member_names, members, quoted,
};
use crate::config::{ConfigError, Topology, setting};

/// The swarm secret the stack expects, made by the operator (`--secret-name` names another).
pub(crate) const DEFAULT_SECRET_NAME: &str = "replog-cluster-secret";
/// Where swarm mounts it in each member (swarm's own place for secrets).
const SECRET_FILE: &str = "/run/secrets/cluster-secret";
/// The overlay network the stack's services reach each other on.
const NETWORK: &str = "replog";
/// Where an etcd member keeps its data in its container.
const ETCD_DATA: &str = "/etcd-data";

/// What the stack runs, beyond the cluster's shape.
#[derive(Debug, Clone)]
pub(crate) struct Options<'a> {
    /// The replog image, by a name every machine of the swarm can pull.
    pub(crate) image: &'a str,
    /// The etcd image (its binary at `/usr/local/bin/etcd`).
    pub(crate) etcd_image: &'a str,
    /// The swarm secret holding the cluster secret.
    pub(crate) secret_name: &'a str,
    /// The members' `REPLICATION_TIMEOUT_MS`, when not the default.
    pub(crate) replication_timeout_ms: Option<u64>,
}

/// The node label that places member (or etcd member) `name`'s task: `replog-{name}`.
pub(crate) fn placement_label(name: &str) -> String {
    format!("replog-{name}")
}

/// The stack file for `topology`'s members (its master and secondaries, as elected members
/// `n1`, `n2`, ... published on `MASTER_PORT` and the ports after it).
pub(crate) fn render(topology: &Topology, options: &Options) -> Result<String, ConfigError> {
    let names = member_names(topology);
    let counted_by = format!("NUM_SECONDARIES={} (+ 1)", topology.delays.len());
    let (member_list, members) = members(&names, str::to_owned, &counted_by)?;
    let etcd: Vec<String> = (1..=etcd_members(members.len())).map(|i| format!("etcd{i}")).collect();
    let endpoints: Vec<String> =
        etcd.iter().map(|name| format!("http://{name}:{ETCD_CLIENT_PORT}")).collect();
    let Options { image, etcd_image, secret_name, replication_timeout_ms } = *options;
    let port = topology.master_port;
    let labels: Vec<String> =
        names.iter().map(|name| format!("{}=true", placement_label(name))).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# Written by `replog compose --swarm` ({n} members, MASTER_PORT={port}).
# Change those settings and run it again rather than editing this file.
#
# An elected cluster: etcd elects the master, and another member takes over when it dies,
# pauses or is cut off; every member takes writes (the others forward them to the master) on
# its port, published on the machine it runs on: member nK at the machine labelled replog-nK
# (no routing mesh, nor virtual IPs: services are named by DNS round-robin). Before deploying:
#   - the image {image} on every machine (push it to a registry they pull from);
#   - the cluster secret, made once:  openssl rand -hex 32 | docker secret create {secret_name} -
#   - each member placed: docker node update --label-add LABEL MACHINE, one machine for each of
#     {labels}
#     (etcd member i goes with n<i>; one machine may carry several labels).
# Then: docker stack deploy -c FILE replog
version: \"3.8\"

services:
",
        n = members.len(),
        labels = labels.join(" "),
    );
    for (i, name) in etcd.iter().enumerate() {
        let args = flow_list(&etcd_args(name, &etcd, str::to_owned, ETCD_DATA));
        let _ = write!(
            out,
            "  {name}:
    image: {etcd_image}
    entrypoint: [\"{ETCD_BINARY}\"]
    command: {args}
    read_only: true
    cap_drop: [ALL]
    volumes:
      - {name}-data:{ETCD_DATA}
    networks: [{NETWORK}]
    deploy:
      endpoint_mode: dnsrr
      placement:
        constraints: [\"node.labels.{label} == true\"]

",
            label = placement_label(&names[i]),
        );
    }
    let mut env = vec![
        ("PORT", MEMBER_PORT.to_string()),
        (setting::MEMBERS, member_list),
        (setting::ETCD_ENDPOINTS, endpoints.join(",")),
        ("DATA_DIR", DATA_MOUNT.to_owned()),
        ("CLUSTER_SECRET_FILE", SECRET_FILE.to_owned()),
    ];
    if let Some(ms) = replication_timeout_ms {
        env.push(("REPLICATION_TIMEOUT_MS", ms.to_string()));
    }
    for (i, name) in names.iter().enumerate() {
        let command = flow_list(&["serve", "--role", "auto", "--name", name]);
        let probe = flow_list(&[
            "CMD",
            "/replog",
            "probe",
            &format!("http://127.0.0.1:{MEMBER_PORT}/ready"),
        ]);
        let _ = write!(
            out,
            "  {name}:
    image: {image}
    command: {command}
    # The image's user; the secret is mounted theirs, the volume starts with the image's /data.
    user: \"{RUN_AS_ID}:{RUN_AS_ID}\"
    read_only: true
    cap_drop: [ALL]
    environment:
"
        );
        for (key, value) in &env {
            let _ = writeln!(out, "      {key}: {}", quoted(value));
        }
        let _ = write!(
            out,
            "    ports:
      - target: {MEMBER_PORT}
        published: {published}
        protocol: tcp
        mode: host
    secrets:
      - source: cluster-secret
        target: cluster-secret
        uid: \"{RUN_AS_ID}\"
        gid: \"{RUN_AS_ID}\"
        mode: 0400
    volumes:
      - {name}-data:{DATA_MOUNT}
    networks: [{NETWORK}]
    # Ready: a secondary that follows the current master, or a master that can take writes.
    # A member not ready for 30 s after its first minute is restarted by the swarm.
    healthcheck:
      test: {probe}
      interval: 5s
      timeout: 3s
      retries: 6
      start_period: 60s
    stop_grace_period: 20s
    deploy:
      replicas: 1
      endpoint_mode: dnsrr
      placement:
        constraints: [\"node.labels.{label} == true\"]
      # Back after 5 s: the others have elected a master by then (the lease is 2 s) rather
      # than racing the one that died.
      restart_policy:
        condition: any
        delay: 5s

",
            published = port + i as u16,
            label = placement_label(name),
        );
    }
    let _ = write!(
        out,
        "networks:
  {NETWORK}:
    driver: overlay

secrets:
  cluster-secret:
    external: true
    name: {secret_name}

volumes:
"
    );
    for name in etcd.iter().chain(&names) {
        let _ = writeln!(out, "  {name}-data:");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options<'static> {
        Options {
            image: "registry.example/replog:1",
            etcd_image: "etcd:local",
            secret_name: "prod-secret",
            replication_timeout_ms: None,
        }
    }

    #[test]
    fn each_member_is_placed_published_and_given_the_secret_not_its_value() {
        let topology = Topology::new(9000, 4, None).unwrap();
        let text = render(&topology, &options()).unwrap();
        let members = "MEMBERS: \"n1=http://n1:8000,n2=http://n2:8000,n3=http://n3:8000,n4=http://n4:8000,n5=http://n5:8000\"";
        assert_eq!(text.matches(members).count(), 5, "{text}");
        let endpoints = "ETCD_ENDPOINTS: \"http://etcd1:2379,http://etcd2:2379,http://etcd3:2379,http://etcd4:2379,http://etcd5:2379\"";
        assert_eq!(text.matches(endpoints).count(), 5, "{text}");
        for expected in [
            "version: \"3.8\"\n",
            "  n5:\n    image: registry.example/replog:1\n    command: [\"serve\", \"--role\", \"auto\", \"--name\", \"n5\"]\n",
            "        published: 9004\n",
            "constraints: [\"node.labels.replog-n5 == true\"]",
            "  etcd5:\n    image: etcd:local\n",
            "\"--initial-cluster\", \"etcd1=http://etcd1:2380,etcd2=http://etcd2:2380,etcd3=http://etcd3:2380,etcd4=http://etcd4:2380,etcd5=http://etcd5:2380\"",
            "secrets:\n  cluster-secret:\n    external: true\n    name: prod-secret\n",
            "      CLUSTER_SECRET_FILE: \"/run/secrets/cluster-secret\"\n",
            "networks:\n  replog:\n    driver: overlay\n",
            "\"http://127.0.0.1:8000/ready\"",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert_eq!(text.matches("    read_only: true\n    cap_drop: [ALL]\n").count(), 10);
        assert_eq!(text.matches("        mode: 0400\n").count(), 5, "the secret is theirs alone");
        assert_eq!(text.matches("replicas: 1\n").count(), 5, "one task per member");
        assert!(!text.contains("build:"), "a stack runs images by name");
    }

    #[test]
    fn a_stack_needs_three_members_to_fail_over() {
        let two = Topology::new(8000, 1, None).unwrap();
        let error = render(&two, &options()).unwrap_err().to_string();
        assert!(error.contains("at least 3"), "{error}");
    }
}
