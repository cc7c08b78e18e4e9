//! The Kubernetes manifests `replog k8s` writes: no cluster can run here, so they are validated
//! against a current Kubernetes version's schemas (`kubernetes-validate`, from PyPI, strict)
//! and read back (YAML parsed by PyYAML, which it brings) to check what the schemas cannot: a
//! volume claim per member, a majority kept by the disruption budget, probes on `/ready` and
//! `/health`, an unprivileged read-only container, and no secret value in any manifest.
//! Skipped where the validator is not installed, saying why (a failure under CI: `.ci/run`
//! installs it).

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::{replog, skip};

/// The Kubernetes version the manifests are checked against.
const KUBERNETES: &str = "1.37.0";

/// `kubernetes-validate` on `file` (strict: no property the schema does not know): whether it
/// passed, and what it said.
fn validate(file: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", KUBERNETES])
        .arg(file)
        .output()
        .expect("running kubernetes-validate");
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// The validator, or `None` (the test skipped, or failed under CI) where it is missing.
fn validator() -> Option<()> {
    let found = Command::new("python3").args(["-m", "kubernetes_validate", "--version"]).output();
    if found.is_ok_and(|out| out.status.success()) {
        return Some(());
    }
    skip(
        "`kubernetes-validate` is not installed for python3 (python3 -m pip install \
         kubernetes-validate==1.37.0; .ci/run installs it)",
    );
    None
}

/// `replog k8s ARGS` written to `file`, with a cluster secret in the environment (which must
/// not reach the manifests); the manifests, parsed.
fn manifests(file: &Path, args: &[&str], secret: &str) -> Vec<Value> {
    let out = replog()
        .arg("k8s")
        .args(args)
        .arg("-o")
        .arg(file)
        .env("CLUSTER_SECRET", secret)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(file).unwrap();
    assert!(!text.contains(secret), "a secret's value in the manifests");
    let script = "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)";
    let parsed = Command::new("python3")
        .args(["-c", script])
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", String::from_utf8_lossy(&parsed.stderr));
    serde_json::from_slice::<Vec<Value>>(&parsed.stdout).unwrap()
}

/// The object of `kind` called `name`.
fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The value of the environment variable `name` of `container`.
fn env<'a>(container: &'a Value, name: &str) -> &'a str {
    let vars = container["env"].as_array().unwrap();
    let var = vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no {name}"));
    var["value"].as_str().unwrap()
}

/// Checks one StatefulSet and what goes with it: its headless Service, its budget, its pods'
/// claim, security and resources; returns its one container.
fn check_set<'a>(objects: &'a [Value], name: &str, replicas: u64, mount: &str) -> &'a Value {
    let set = object(objects, "StatefulSet", name);
    let spec = &set["spec"];
    assert_eq!(spec["replicas"], replicas, "{name}");
    let labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], labels, "{name}: selects its own pods");
    // Stable names: the headless Service the set is named through, published before ready.
    let headless = object(objects, "Service", spec["serviceName"].as_str().unwrap());
    assert_eq!(headless["spec"]["clusterIP"], "None", "{name}");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "{name}");
    assert_eq!(&headless["spec"]["selector"], labels, "{name}");
    // A volume claim per pod, mounted where the data goes.
    let claims = spec["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1, "{name}");
    assert_eq!(claims[0]["spec"]["accessModes"][0], "ReadWriteOnce");
    let pod = &spec["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    let mounted = container["volumeMounts"].as_array().unwrap();
    let claim = claims[0]["metadata"]["name"].as_str().unwrap();
    assert!(mounted.iter().any(|m| m["name"] == claim && m["mountPath"] == mount), "{name}");
    // A majority through voluntary disruptions.
    let budget = object(objects, "PodDisruptionBudget", name);
    assert_eq!(budget["spec"]["minAvailable"], replicas / 2 + 1, "{name}: a majority");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels, "{name}");
    // One pod to a machine.
    let anti =
        &pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(anti["topologyKey"], "kubernetes.io/hostname", "{name}");
    assert_eq!(&anti["labelSelector"]["matchLabels"], labels, "{name}");
    // Unprivileged, read-only, no capabilities, bounded.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert_ne!(pod["securityContext"]["runAsUser"], 0, "{name}");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}");
    let resources = &container["resources"];
    for (kind, what) in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")] {
        assert!(resources[kind][what].is_string(), "{name}: {kind}.{what}");
    }
    assert!(container["readinessProbe"].is_object() && container["livenessProbe"].is_object());
    container
}

#[test]
fn the_manifests_pass_kubernetes_schemas_and_keep_what_the_cluster_needs() {
    if validator().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("replog-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "a cluster secret that no manifest may hold";

    // The default: three members, etcd beside them.
    let file = dir.join("replog-k8s.yaml");
    let objects = manifests(&file, &["--image", "registry.example/replog:0.8.0"], secret);
    let (valid, said) = validate(&file);
    assert!(valid, "kubernetes-validate {KUBERNETES}:\n{said}");
    assert_eq!(said.matches(" passed for resource ").count(), objects.len(), "{said}");
    assert!(!objects.iter().any(|o| o["kind"] == "Secret"), "the Secret is the user's to make");
    let member = check_set(&objects, "replog", 3, "/data");
    assert_eq!(member["image"], "registry.example/replog:0.8.0");
    let http = &member["ports"][0];
    assert_eq!((&http["name"], &http["containerPort"]), (&"http".into(), &8000.into()));
    assert_eq!(member["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(member["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(member["readinessProbe"]["httpGet"]["port"], "http");
    let members = env(member, "MEMBERS");
    assert_eq!(
        members,
        "replog-0=http://replog-0.replog:8000,replog-1=http://replog-1.replog:8000,replog-2=http://replog-2.replog:8000"
    );
    // The cluster secret from the user's Secret, through a file only the pod's group reads.
    let pod = &object(&objects, "StatefulSet", "replog")["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["secret"].is_object());
    let volume = volume.expect("the secret's volume");
    assert_eq!(volume["secret"]["secretName"], "replog-cluster-secret");
    assert_eq!(volume["secret"]["defaultMode"], 0o440, "{volume}");
    let path = env(member, "CLUSTER_SECRET_FILE");
    let mount =
        member["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume["name"]);
    let mount = mount.expect("the secret mounted");
    assert!(path.starts_with(mount["mountPath"].as_str().unwrap()) && mount["readOnly"] == true);
    let client = object(&objects, "Service", "replog-client");
    assert_eq!(client["spec"]["selector"], pod_labels(&objects, "replog"));
    // etcd: its own set, which the members are pointed at.
    let etcd = check_set(&objects, "replog-etcd", 3, "/var/lib/etcd");
    let endpoints = env(member, "ETCD_ENDPOINTS");
    for i in 0..3 {
        assert!(endpoints.contains(&format!("http://replog-etcd-{i}.replog-etcd:2379")));
    }
    let args: Vec<&str> =
        etcd["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    let args = args.join(" ");
    assert!(
        args.contains("--initial-cluster replog-etcd-0=http://replog-etcd-0.replog-etcd:2380,")
    );
    // Its data in a folder of its own in the volume, which etcd makes with the mode it wants.
    assert!(args.contains("--data-dir /var/lib/etcd/data"), "{args}");

    // Five members on an external etcd, another name and storage class.
    let file = dir.join("five.yaml");
    let args = ["--name", "log", "--replicas", "5", "--etcd-endpoints", "http://etcd.infra:2379"];
    let objects = manifests(
        &file,
        &[&args[..], &["--storage-class", "fast", "--storage", "20Gi"]].concat(),
        secret,
    );
    let (valid, said) = validate(&file);
    assert!(valid, "kubernetes-validate {KUBERNETES}:\n{said}");
    let member = check_set(&objects, "log", 5, "/data");
    assert_eq!(env(member, "ETCD_ENDPOINTS"), "http://etcd.infra:2379");
    assert_eq!(env(member, "CLUSTER_NAME"), "log");
    assert_eq!(objects.iter().filter(|o| o["kind"] == "StatefulSet").count(), 1, "no etcd set");
    let claim = &object(&objects, "StatefulSet", "log")["spec"]["volumeClaimTemplates"][0]["spec"];
    assert_eq!(
        (&claim["storageClassName"], &claim["resources"]["requests"]["storage"]),
        (&"fast".into(), &"20Gi".into())
    );

    // The validation can fail: a property no schema knows is refused.
    let broken = dir.join("broken.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&broken, text.replacen("containerPort", "containerPorts", 1)).unwrap();
    let (valid, said) = validate(&broken);
    assert!(!valid, "an unknown property passed:\n{said}");

    // Settings that cannot make a cluster write nothing.
    let refused = dir.join("refused.yaml");
    let out = replog().args(["k8s", "--replicas", "2", "-o"]).arg(&refused).output().unwrap();
    assert!(!out.status.success() && !refused.exists());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 3"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pod labels of StatefulSet `name`.
fn pod_labels(objects: &[Value], name: &str) -> Value {
    object(objects, "StatefulSet", name)["spec"]["template"]["metadata"]["labels"].clone()
}
