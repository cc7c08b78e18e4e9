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
        "replog_master.wasm is not in /nonexistent",
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
