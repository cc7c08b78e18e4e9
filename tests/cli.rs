//! The command line: help, and configuration mistakes caught before anything starts.

mod support;

use support::*;

fn fails_with(args: &[&str], says: &str) {
    let output = replog().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail");
    assert!(stderr.contains(says), "{args:?}: {stderr:?} should mention {says:?}");
}

#[test]
fn help_names_every_command_and_the_original_settings() {
    let output = replog().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for word in ["cluster", "serve", "run"] {
        assert!(help.contains(word), "{help}");
    }
    let output = replog().args(["cluster", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for env in ["MASTER_PORT", "NUM_SECONDARIES", "SECONDARY_DELAYS", "REPLOG_COMPONENTS"] {
        assert!(help.contains(env), "cluster --help mentions {env}:\n{help}");
    }
    let output = replog().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for env in ["PORT", "SECONDARIES", "DELAY_MS", "--role"] {
        assert!(help.contains(env), "serve --help mentions {env}:\n{help}");
    }
}

#[test]
fn bad_configuration_is_refused_before_anything_starts() {
    fails_with(
        &["cluster", "--num-secondaries", "3", "--secondary-delays", "0,1"],
        "SECONDARY_DELAYS has 2 values",
    );
    fails_with(&["cluster", "--secondary-delays", "0,fast"], "\"fast\"");
    fails_with(&["cluster", "--num-secondaries", "0"], "at least 1");
    fails_with(&["cluster", "--master-port", "65535"], "past 65535");
    fails_with(
        &["cluster", "--components", "/nonexistent"],
        "cannot find replog_master.wasm: looked in /nonexistent",
    );
    fails_with(
        &["serve", "--role", "master", "--secondaries", "secondary1:8001"],
        "must start with http://",
    );
    fails_with(&["serve", "--role", "primary"], "invalid value 'primary'");
    fails_with(
        &["serve", "--role", "secondary", "--component", "/nonexistent.wasm"],
        "cannot read component",
    );
    // A budget for bodies that could not hold a client's largest body beside the reserve.
    fails_with(
        &["serve", "--role", "master", "--port", "0", "--body-budget-bytes", "2000000"],
        "BODY_BUDGET_BYTES=2000000 must be at least twice the largest body this node takes \
         (1048576 bytes)",
    );
    // Tails that could take every place clients have among the instances, or none at all.
    fails_with(
        &["cluster", "--max-instances", "100", "--max-tails", "84"],
        "MAX_TAILS=84 must be at least 1 and leave other requests some of the 84 places",
    );
    fails_with(&["cluster", "--max-tails", "0"], "MAX_TAILS=0 must be at least 1");
}

#[test]
fn a_busy_port_is_named_in_the_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    fails_with(
        &["serve", "--role", "secondary", "--bind", "127.0.0.1", "--port", &port.to_string()],
        "port is in use",
    );
}

#[test]
fn the_committed_compose_file_is_the_generators_default_output() {
    let output = replog().args(["compose", "--output", "-"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let committed = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    assert!(
        output.stdout == committed.as_bytes(),
        "docker-compose.yml differs from `replog compose`: regenerate it with `replog compose`"
    );
}

#[test]
fn the_compose_generator_follows_the_original_settings_and_refuses_bad_ones_without_writing() {
    let dir = std::env::temp_dir().join(format!("replog-compose-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("docker-compose.yml");

    let written = replog()
        .args(["compose", "-o"])
        .arg(&file)
        .env("NUM_SECONDARIES", "5")
        .env("SECONDARY_DELAYS", "0,100,500,1000,2000")
        .env("MASTER_PORT", "9000")
        .output()
        .unwrap();
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    for expected in
        ["\"9005:8001\"", "DELAY_MS: \"2000\"", "http://secondary5:8001", "\"9000:8000\""]
    {
        assert!(text.contains(expected), "{expected} in\n{text}");
    }

    for (env, says) in [
        (
            vec![("NUM_SECONDARIES", "3"), ("SECONDARY_DELAYS", "0,1")],
            "SECONDARY_DELAYS has 2 values",
        ),
        (vec![("NUM_SECONDARIES", "two")], "invalid value 'two'"),
        (vec![("NUM_SECONDARIES", "0")], "at least 1"),
        (vec![("NUM_SECONDARIES", "-3")], "got -3"),
        (vec![("SECONDARY_DELAYS", "0,slow")], "\"slow\""),
        (vec![("MASTER_PORT", "70000")], "70000"),
        (vec![("MASTER_PORT", "65534")], "past 65535"),
    ] {
        let mut command = replog();
        command.args(["compose", "-o"]).arg(&file).envs(env.iter().copied());
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{env:?} should be refused");
        assert!(stderr.contains(says), "{env:?}: {stderr:?} should mention {says:?}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "{env:?} left the file as it was"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn probe_exits_zero_only_for_a_200() {
    let port = free_ports(1);
    let output =
        replog().args(["probe", &format!("http://127.0.0.1:{port}/health")]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

/// Waits (bounded) for `process` to exit, and returns whether it succeeded and its output.
fn exit_of(mut process: Process) -> (bool, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = process.try_wait() {
            return (status.success(), process.output());
        }
        assert!(std::time::Instant::now() < deadline, "still running:\n{}", process.output());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_node_of_a_cluster_without_a_secret_refuses_to_start_unless_told_insecure() {
    let port = free_ports(1);
    let serve = |args: &[&str]| {
        let mut command = serve(args[0], port);
        command.env_remove("CLUSTER_SECRET").args(&args[1..]);
        command
    };
    for args in [&["secondary"][..], &["master", "--secondaries", "http://127.0.0.1:1"]] {
        let output = serve(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started without a secret");
        assert!(
            stderr.contains("no cluster secret") && stderr.contains("CLUSTER_SECRET_FILE"),
            "{stderr}"
        );
    }
    let mut insecure = Process::spawn("insecure", serve(&["secondary", "--insecure"]));
    insecure.wait_healthy(&format!("http://127.0.0.1:{port}/health"));
    assert!(insecure.output().contains("INSECURE"), "a warning says so:\n{}", insecure.output());
}

#[test]
fn the_secret_is_checked_and_never_shown() {
    let missing = replog()
        .env_remove("CLUSTER_SECRET")
        .args(["cluster", "--cluster-secret-file", "/nonexistent/secret"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/secret"));
    let short = replog().env("CLUSTER_SECRET", "short").args(["cluster"]).output().unwrap();
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 16"));
    let file = std::env::temp_dir().join(format!("replog-secret-{}", std::process::id()));
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let both = replog().args(["cluster", "--cluster-secret-file"]).arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&both.stderr).contains("give one of them"));
    std::fs::remove_file(file).unwrap();

    for command in [&["serve", "--help"][..], &["cluster", "--help"]] {
        let help = replog().args(command).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("CLUSTER_SECRET_FILE") && help.contains("CLUSTER_SECRET"), "{help}");
        assert!(!help.contains(SECRET), "{command:?} shows the secret:\n{help}");
    }
}

#[test]
fn a_data_directory_in_use_is_refused_with_the_owner_named() {
    let dir = std::env::temp_dir().join(format!("replog-cli-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = free_ports(2);
    let serve = |port: u16| {
        let mut command = serve("secondary", port);
        command.env_remove("IN_MEMORY").arg("--data-dir").arg(&dir);
        command
    };
    let mut first = Process::spawn("first", serve(base));
    first.wait_healthy(&format!("http://127.0.0.1:{base}/health"));
    let (ok, output) = exit_of(Process::spawn("second", serve(base + 1)));
    assert!(!ok, "a second node started on the same data directory:\n{output}");
    let pid = first.id();
    assert!(
        output.contains(&format!("data directory {} is in use by pid {pid}", dir.display())),
        "{output}"
    );
    first.kill();
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn nodes_started_from_one_folder_get_data_directories_of_their_own() {
    let folder =
        std::env::temp_dir().join(format!("replog-cli-default-dirs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let base = free_ports(2);
    let mut nodes = Vec::new();
    for port in [base, base + 1] {
        let mut command = serve("secondary", port);
        command.current_dir(&folder).env_remove("IN_MEMORY");
        command.arg("--components").arg(env!("REPLOG_BUILT_COMPONENTS"));
        let mut node = Process::spawn(&format!("secondary-{port}"), command);
        node.wait_healthy(&format!("http://127.0.0.1:{port}/health"));
        nodes.push(node);
    }
    for port in [base, base + 1] {
        assert!(
            folder.join(format!("data/secondary-{port}/LOCK")).exists(),
            "data/secondary-{port}"
        );
    }
    drop(nodes);
    std::fs::remove_dir_all(folder).unwrap();
}

#[test]
fn a_delay_that_cannot_fit_the_peer_timeout_is_refused() {
    fails_with(
        &["cluster", "--secondary-delays", "0,6000"],
        "secondary2: its DELAY_MS of 6000 does not fit in this master's PEER_TIMEOUT_MS of 5000",
    );
    let cluster = Cluster::start(&[0, 6000], &["--peer-timeout-ms", "6500"]);
    assert_eq!(cluster.secondaries.len(), 2, "accepted once the timeout leaves it room");
}

#[test]
fn boolean_settings_take_1_0_true_false_yes_no() {
    let folder = std::env::temp_dir().join(format!("replog-cli-bools-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    for (value, in_memory) in
        [("1", true), ("yes", true), ("true", true), ("0", false), ("no", false), ("false", false)]
    {
        let port = free_ports(1);
        let mut command = serve("master", port);
        command.current_dir(&folder).env("IN_MEMORY", value).env("FORCE_RECOVERY", value);
        command.arg("--components").arg(env!("REPLOG_BUILT_COMPONENTS"));
        let mut node = Process::spawn(&format!("master-{value}"), command);
        node.wait_healthy(&format!("http://127.0.0.1:{port}/health"));
        let on_disk = folder.join(format!("data/master-{port}")).exists();
        assert_eq!(on_disk, !in_memory, "IN_MEMORY={value}");
        node.kill();
    }
    std::fs::remove_dir_all(folder).unwrap();
    fails_with(&["serve", "--role", "secondary", "--in-memory", "maybe"], "invalid value 'maybe'");
    let mut both = replog();
    both.env("DATA_DIR", "somewhere").args(["serve", "--role", "secondary"]);
    let output = both.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("IN_MEMORY is on and DATA_DIR"),
        "{stderr}"
    );
}
