//! `echo-client HOST PORT MESSAGE`: sends MESSAGE to an echo server, prints what comes back,
//! and fails unless it is the same bytes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, message] = args.as_slice() else {
        fail("usage: echo-client HOST PORT MESSAGE");
    };
    let port: u16 = port
        .parse()
        .unwrap_or_else(|e| fail(&format!("PORT must be a number from 0 to 65535: {e}")));
    let mut stream = TcpStream::connect((host.as_str(), port))
        .unwrap_or_else(|e| fail(&format!("cannot connect to {host}:{port}: {e}")));
    stream.write_all(message.as_bytes()).unwrap_or_else(|e| fail(&format!("send failed: {e}")));
    stream.shutdown(Shutdown::Write).unwrap_or_else(|e| fail(&format!("shutdown failed: {e}")));
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap_or_else(|e| fail(&format!("receive failed: {e}")));
    let reply = String::from_utf8_lossy(&reply);
    println!("{reply}");
    if reply != *message {
        fail(&format!("the server sent back {reply:?}, not {message:?}"));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("echo-client: {message}");
    std::process::exit(1)
}
