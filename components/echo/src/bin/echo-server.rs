//! `echo-server [PORT]`: accepts TCP connections and sends every byte back, one connection at
//! a time, until the process is stopped. Port 9009 by default, as in the original project.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 9009,
        Some(Ok(port)) => port,
        Some(Err(e)) => fail(&format!("PORT must be a number from 0 to 65535: {e}")),
    };
    let listener = TcpListener::bind(("0.0.0.0", port))
        .unwrap_or_else(|e| fail(&format!("cannot listen on port {port}: {e}")));
    let addr = listener.local_addr().unwrap_or_else(|e| fail(&e.to_string()));
    println!("echo server listening on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = echo(stream) {
                    eprintln!("connection ended with an error: {e}");
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let peer = stream.peer_addr()?;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            println!("echoed {total} bytes to {peer}");
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
        total += n;
    }
}

fn fail(message: &str) -> ! {
    eprintln!("echo-server: {message}");
    std::process::exit(2)
}
