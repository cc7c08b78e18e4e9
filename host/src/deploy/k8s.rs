//! `replog k8s`: Kubernetes manifests for an elected cluster: a StatefulSet of members (stable
//! names, a volume claim each), a headless Service for the names they reach each other by, a
//! Service for clients, a PodDisruptionBudget that keeps a majority, and etcd as a StatefulSet
//! of its own (or an external etcd, `--etcd-endpoints`).
//!
//! The cluster secret is a Secret the operator makes (`kubectl create secret`); the manifests
//! only name it. Members run as `nobody` with a read-only root filesystem and no capabilities:
//! the image carries the components, the volume holds the log, the Secret is mounted readable
//! by the pod's group.

use std::fmt::Write as _;

use super::{
    DATA_MOUNT, ETCD_BINARY, ETCD_CLIENT_PORT, ETCD_PEER_PORT, MEMBER_PORT, RUN_AS_ID, etcd_args,
    etcd_members, flow_list, members, quoted,
};
use crate::config::{ConfigError, setting};

/// The Secret the members read the cluster secret from, and its key.
pub(crate) const DEFAULT_SECRET_NAME: &str = "replog-cluster-secret";
const SECRET_KEY: &str = "cluster-secret";
/// Where that Secret is mounted in each member.
const SECRET_MOUNT: &str = "/secrets";
/// What each member's volume claim asks for, unless told otherwise.
pub(crate) const DEFAULT_STORAGE: &str = "1Gi";
/// Where an etcd member's volume is mounted in its container, and its data directory in it
/// (made by etcd itself, mode 0700 as it wants, inside the group-writable mount).
const ETCD_VOLUME: &str = "/var/lib/etcd";
const ETCD_DATA: &str = "/var/lib/etcd/data";

/// What the manifests run, beyond the number of members.
#[derive(Debug, Clone)]
pub(crate) struct Options<'a> {
    /// The prefix of every object's name, and the cluster's name in etcd (`CLUSTER_NAME`).
    pub(crate) name: &'a str,
    /// How many members: three or more (an odd number, so that a majority survives as many
    /// losses as one more member would).
    pub(crate) replicas: usize,
    /// The replog image, by a name the cluster's machines can pull.
    pub(crate) image: &'a str,
    /// The etcd image (its binary at `/usr/local/bin/etcd`), when etcd runs in the cluster.
    pub(crate) etcd_image: &'a str,
    /// An etcd outside these manifests: its client URLs; none runs etcd as a StatefulSet.
    pub(crate) etcd_endpoints: Option<&'a str>,
    /// The Secret holding the cluster secret under the key `cluster-secret`.
    pub(crate) secret_name: &'a str,
    /// Each member's (and etcd member's) volume claim size, as Kubernetes writes quantities.
    pub(crate) storage: &'a str,
    /// The volume claims' storage class; none takes the cluster's default.
    pub(crate) storage_class: Option<&'a str>,
    /// The members' `REPLICATION_TIMEOUT_MS`, when not the default.
    pub(crate) replication_timeout_ms: Option<u64>,
}

/// The members' probes, at a container's indentation. Ready: a secondary that follows the
/// current master, or a master that takes writes; only ready members get clients. Alive: it
/// answers at all (reading a large log back at start is given two minutes).
const MEMBER_PROBES: &str =
    "          # Ready: follows the current master, or is one that takes writes. Alive: answers.
          readinessProbe:
            httpGet: {path: /ready, port: http}
            periodSeconds: 2
            failureThreshold: 2
          livenessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 6
          startupProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 2
            failureThreshold: 60
";
/// etcd's probes: alive while it listens, since a member without a leader still is and
/// restarting it would not bring one back.
const ETCD_PROBES: &str = "          readinessProbe:
            httpGet: {path: /health, port: client}
            periodSeconds: 5
          # Alive while it listens: restarting a member without a leader would not bring one.
          livenessProbe:
            tcpSocket: {port: client}
            periodSeconds: 10
            failureThreshold: 6
";

/// The labels that select one StatefulSet's pods.
fn labels(name: &str, component: &str) -> [(&'static str, String); 2] {
    [
        ("app.kubernetes.io/name", name.to_owned()),
        ("app.kubernetes.io/component", component.to_owned()),
    ]
}

/// `labels` as YAML mapping lines, each indented by `indent` spaces.
fn label_lines(labels: &[(&str, String)], indent: usize) -> String {
    labels.iter().map(|(key, value)| format!("{:indent$}{key}: {value}\n", "")).collect()
}

/// The manifests, as one multi-document YAML file for `kubectl apply -f`.
pub(crate) fn render(options: &Options) -> Result<String, ConfigError> {
    let Options { name, replicas, image, secret_name, .. } = *options;
    check_name(name)?;
    let pods: Vec<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
    let counted_by = format!("--replicas {replicas}");
    let (member_list, members) = members(&pods, |pod| format!("{pod}.{name}"), &counted_by)?;
    let majority = members.majority();
    let etcd = format!("{name}-etcd");
    let endpoints = match options.etcd_endpoints {
        Some(endpoints) => endpoints.to_owned(),
        None => (0..etcd_members(replicas))
            .map(|i| format!("http://{etcd}-{i}.{etcd}:{ETCD_CLIENT_PORT}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    if endpoints.trim().is_empty() {
        return Err(ConfigError::Invalid("--etcd-endpoints: give etcd's client URLs".into()));
    }
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# Written by `replog k8s` ({replicas} members{etcd_note}).
# Change those settings and run it again rather than editing this file.
#
# An elected cluster: etcd elects the master among the pods of StatefulSet {name}, and another
# takes over when it dies or is cut off; every member takes writes (the others forward them to
# the master), so clients use Service {name}-client. Before applying, in the namespace:
#   kubectl create secret generic {secret_name} --from-literal={SECRET_KEY}=\"$(openssl rand -hex 32)\"
# Then: kubectl apply -f FILE
",
        etcd_note = if options.etcd_endpoints.is_some() { ", external etcd" } else { "" },
    );
    let member_labels = labels(name, "log");
    write_services(&mut out, name, &member_labels, &[("http", MEMBER_PORT)]);
    write_budget(&mut out, name, &member_labels, majority);
    let mut env = vec![
        ("PORT", MEMBER_PORT.to_string()),
        (setting::MEMBERS, member_list),
        (setting::ETCD_ENDPOINTS, endpoints),
        (setting::CLUSTER_NAME, name.to_owned()),
        ("DATA_DIR", DATA_MOUNT.to_owned()),
        ("CLUSTER_SECRET_FILE", format!("{SECRET_MOUNT}/{SECRET_KEY}")),
    ];
    if let Some(ms) = options.replication_timeout_ms {
        env.push(("REPLICATION_TIMEOUT_MS", ms.to_string()));
    }
    let container = Container {
        name: "replog",
        image,
        command: None,
        args: flow_list(&["serve", "--role", "auto", "--name", "$(POD_NAME)"]),
        ports: &[("http", MEMBER_PORT)],
        env,
        probes: MEMBER_PROBES,
        resources: ("250m", "256Mi", "1Gi"),
        mounts: vec![("data", DATA_MOUNT, false), ("cluster-secret", SECRET_MOUNT, true)],
    };
    let secret_volume = format!(
        "        - name: cluster-secret
          secret:
            secretName: {secret_name}
            # Readable by the pod's group (fsGroup) only.
            defaultMode: 0440
            items:
              - {{key: {SECRET_KEY}, path: {SECRET_KEY}}}
"
    );
    let set = StatefulSet { name, labels: &member_labels, replicas, grace_s: 20, container };
    set.write(&mut out, &secret_volume, options);
    if options.etcd_endpoints.is_none() {
        let etcd_labels = labels(&etcd, "etcd");
        let ports = [("client", ETCD_CLIENT_PORT), ("peer", ETCD_PEER_PORT)];
        write_headless(&mut out, &etcd, &etcd_labels, &ports);
        let count = etcd_members(replicas);
        write_budget(&mut out, &etcd, &etcd_labels, count / 2 + 1);
        let names: Vec<String> = (0..count).map(|i| format!("{etcd}-{i}")).collect();
        let host = |pod: &str| format!("{pod}.{etcd}");
        let args = etcd_args("$(POD_NAME)", &names, host, ETCD_DATA);
        let container = Container {
            name: "etcd",
            image: options.etcd_image,
            command: Some(flow_list(&[ETCD_BINARY])),
            args: flow_list(&args),
            ports: &ports,
            env: Vec::new(),
            probes: ETCD_PROBES,
            resources: ("100m", "128Mi", "512Mi"),
            mounts: vec![("data", ETCD_VOLUME, false)],
        };
        let set = StatefulSet {
            name: &etcd,
            labels: &etcd_labels,
            replicas: count,
            grace_s: 30,
            container,
        };
        set.write(&mut out, "", options);
    }
    Ok(out)
}

/// Longest `--name`: `NAME-etcd` must stay a StatefulSet name whose pods' labels fit (52).
const LONGEST_NAME: usize = 40;

/// `name` as every object's prefix: a DNS label (lower-case letters, digits and `-`, starting
/// with a letter), short enough for the names made from it.
fn check_name(name: &str) -> Result<(), ConfigError> {
    let label = name.len() <= LONGEST_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if label {
        return Ok(());
    }
    Err(ConfigError::Invalid(format!(
        "--name {name:?}: give lower-case letters, digits and '-', starting with a letter, at \
         most {LONGEST_NAME} characters (it names the StatefulSet, its pods and Services)"
    )))
}

/// The headless Service a StatefulSet's pods are named through (`POD.SERVICE`), and, for the
/// members, the Service clients use.
fn write_services(out: &mut String, name: &str, labels: &[(&str, String)], ports: &[(&str, u16)]) {
    write_headless(out, name, labels, ports);
    let client = format!("{name}-client");
    let comment = "# What clients use: any ready member (each forwards writes to the master).\n";
    write_service(out, comment, &client, labels, ports, "  type: ClusterIP\n");
}

/// A headless Service: a DNS name for each pod, published before the pod is ready (members and
/// etcd members must find each other to become ready at all).
fn write_headless(out: &mut String, name: &str, labels: &[(&str, String)], ports: &[(&str, u16)]) {
    let headless = "  clusterIP: None\n  publishNotReadyAddresses: true\n";
    write_service(out, "", name, labels, ports, headless);
}

/// A Service `name` selecting the pods labelled `labels`, its `kind` lines first in its spec.
fn write_service(
    out: &mut String,
    comment: &str,
    name: &str,
    labels: &[(&str, String)],
    ports: &[(&str, u16)],
    kind: &str,
) {
    let _ = write!(
        out,
        "---
{comment}apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels:
{meta}spec:
{kind}  selector:
{selector}  ports:
{ports}",
        meta = label_lines(labels, 4),
        selector = label_lines(labels, 4),
        ports = port_lines(ports),
    );
}

fn port_lines(ports: &[(&str, u16)]) -> String {
    ports
        .iter()
        .map(|(name, port)| format!("    - {{name: {name}, port: {port}, targetPort: {name}}}\n"))
        .collect()
}

/// A PodDisruptionBudget that keeps `keep` pods (a majority) through voluntary disruptions:
/// draining machines one at a time never takes the cluster below what elects and commits.
fn write_budget(out: &mut String, name: &str, labels: &[(&str, String)], keep: usize) {
    let _ = write!(
        out,
        "---
# Drains and upgrades keep a majority up.
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {name}
spec:
  minAvailable: {keep}
  selector:
    matchLabels:
{selector}",
        selector = label_lines(labels, 6),
    );
}

/// The one container of a StatefulSet's pods.
struct Container<'a> {
    name: &'a str,
    image: &'a str,
    /// Its command, as a flow list, where not the image's entrypoint.
    command: Option<String>,
    args: String,
    ports: &'a [(&'a str, u16)],
    env: Vec<(&'static str, String)>,
    /// Its probes, as YAML lines at the container's indentation.
    probes: &'a str,
    /// CPU request, memory request, memory limit.
    resources: (&'a str, &'a str, &'a str),
    /// Volume name, where, read-only.
    mounts: Vec<(&'a str, &'a str, bool)>,
}

/// A StatefulSet whose pods run `container` as `nobody`, one to a machine, each with a volume
/// claim `data`.
struct StatefulSet<'a> {
    name: &'a str,
    labels: &'a [(&'a str, String)],
    replicas: usize,
    grace_s: u32,
    container: Container<'a>,
}

impl StatefulSet<'_> {
    /// Writes it, with `volumes` (YAML list items) beside its claim.
    fn write(&self, out: &mut String, volumes: &str, options: &Options) {
        let Self { name, labels, replicas, grace_s, ref container } = *self;
        let Container { name: container_name, image, args, probes, .. } = container;
        let (cpu, memory, memory_limit) = container.resources;
        let _ = write!(
            out,
            "---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
  labels:
{meta}spec:
  serviceName: {name}
  replicas: {replicas}
  # All at once: a member waits for a majority of its peers before it can do anything.
  podManagementPolicy: Parallel
  selector:
    matchLabels:
{selector}  template:
    metadata:
      labels:
{pod_labels}    spec:
      terminationGracePeriodSeconds: {grace_s}
      securityContext:
        runAsNonRoot: true
        runAsUser: {RUN_AS_ID}
        runAsGroup: {RUN_AS_ID}
        fsGroup: {RUN_AS_ID}
        seccompProfile: {{type: RuntimeDefault}}
      # One to a machine: losing a machine loses one member, and a majority remains.
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector:
                matchLabels:
{anti}      containers:
        - name: {container_name}
          image: {image}
          imagePullPolicy: IfNotPresent
",
            meta = label_lines(labels, 4),
            selector = label_lines(labels, 6),
            pod_labels = label_lines(labels, 8),
            anti = label_lines(labels, 18),
        );
        if let Some(command) = &container.command {
            let _ = writeln!(out, "          command: {command}");
        }
        let _ = writeln!(out, "          args: {args}\n          ports:");
        for (port_name, port) in container.ports {
            let _ = writeln!(out, "            - {{name: {port_name}, containerPort: {port}}}");
        }
        out.push_str(
            "          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
",
        );
        for (key, value) in &container.env {
            let _ = writeln!(out, "            - {{name: {key}, value: {}}}", quoted(value));
        }
        let _ = write!(
            out,
            "{probes}          resources:
            requests: {{cpu: {cpu}, memory: {memory}}}
            limits: {{memory: {memory_limit}}}
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {{drop: [ALL]}}
          volumeMounts:
"
        );
        for (volume, path, read_only) in &container.mounts {
            let _ = writeln!(
                out,
                "            - {{name: {volume}, mountPath: {path}, readOnly: {read_only}}}"
            );
        }
        if !volumes.is_empty() {
            let _ = write!(out, "      volumes:\n{volumes}");
        }
        let class = options
            .storage_class
            .map(|class| format!("        storageClassName: {}\n", quoted(class)))
            .unwrap_or_default();
        let _ = write!(
            out,
            "  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
{class}        resources:
          requests: {{storage: {storage}}}
",
            storage = options.storage,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options<'static> {
        Options {
            name: "replog",
            replicas: 3,
            image: "registry.example/replog:1",
            etcd_image: "etcd:3.5",
            etcd_endpoints: None,
            secret_name: "replog-cluster-secret",
            storage: "1Gi",
            storage_class: None,
            replication_timeout_ms: None,
        }
    }

    #[test]
    fn members_know_each_other_by_their_stable_names_and_etcd_runs_beside_them() {
        let text = render(&options()).unwrap();
        let members = "{name: MEMBERS, value: \"replog-0=http://replog-0.replog:8000,replog-1=http://replog-1.replog:8000,replog-2=http://replog-2.replog:8000\"}";
        assert!(text.contains(members), "{text}");
        let endpoints = "{name: ETCD_ENDPOINTS, value: \"http://replog-etcd-0.replog-etcd:2379,http://replog-etcd-1.replog-etcd:2379,http://replog-etcd-2.replog-etcd:2379\"}";
        assert!(text.contains(endpoints), "{text}");
        assert!(
            text.contains("\"--advertise-client-urls\", \"http://$(POD_NAME).replog-etcd:2379\"")
        );
        assert_eq!(text.matches("kind: StatefulSet\n").count(), 2);
        assert_eq!(text.matches("  minAvailable: 2\n").count(), 2, "a majority of each");
        assert!(!text.contains("storageClassName"), "the cluster's default class");
    }

    #[test]
    fn an_external_etcd_replaces_the_etcd_set() {
        let endpoints = "http://etcd.infra:2379";
        let five = Options {
            replicas: 5,
            etcd_endpoints: Some(endpoints),
            storage_class: Some("fast"),
            ..options()
        };
        let text = render(&five).unwrap();
        assert_eq!(text.matches("kind: StatefulSet\n").count(), 1, "{text}");
        assert!(text.contains("{name: ETCD_ENDPOINTS, value: \"http://etcd.infra:2379\"}"));
        assert!(text.contains("  minAvailable: 3\n"), "three of five");
        assert!(text.contains("storageClassName: \"fast\""));
        let none = Options { etcd_endpoints: Some(" "), ..options() };
        assert!(render(&none).is_err());
        for bad in ["Replog", "9log", "log-", "a_b", &"x".repeat(41)] {
            let error = render(&Options { name: bad, ..options() }).unwrap_err().to_string();
            assert!(error.contains("--name"), "{bad}: {error}");
        }
        let two = Options { replicas: 2, ..options() };
        assert!(render(&two).unwrap_err().to_string().contains("at least 3"));
    }
}
