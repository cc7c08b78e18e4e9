//! Iteration 0: a TCP echo server and client, both WASI command components using
//! `wasi:sockets`, run by the host. Proves the toolchain, the runtime and the network.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::*;

fn component(name: &str) -> PathBuf {
    PathBuf::from(env!("REPLOG_BUILT_COMPONENTS")).join(name)
}

#[test]
fn the_echo_client_gets_its_message_back_from_the_echo_server() {
    let port = free_ports(1);
    let mut server = replog();
    server.arg("run").arg(component("echo-server.wasm")).args(["--", &port.to_string()]);
    let mut server = Process::spawn("echo-server", server);
    server.wait_listening(port);

    let output = replog()
        .arg("run")
        .arg(component("echo-client.wasm"))
        .args(["--", "127.0.0.1", &port.to_string(), "hello world"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim_end(), "hello world");

    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.output().contains("echoed 11 bytes") {
        assert!(Instant::now() < deadline, "server did not report the echo:\n{}", server.output());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_echo_client_fails_clearly_when_no_server_listens() {
    let port = free_ports(1);
    let output = replog()
        .arg("run")
        .arg(component("echo-client.wasm"))
        .args(["--", "127.0.0.1", &port.to_string(), "anyone?"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot connect") && stderr.contains("refused"), "{stderr}");
}
