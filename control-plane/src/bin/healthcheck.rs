//! `healthcheck`: the container image's HEALTHCHECK. The runtime image has no
//! shell and no curl, so this asks `GET /healthz` of the service on this
//! machine itself, with the standard library only: exit 0 on a 200, 1 on
//! anything else. The address is `LEDGERLAKE_LISTEN`'s port on loopback (an
//! unspecified listen address such as 0.0.0.0 is reached through loopback).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    let listen = std::env::var("LEDGERLAKE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let mut addr: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("healthcheck: LEDGERLAKE_LISTEN {listen:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    match status(addr) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("healthcheck: GET /healthz answered {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: GET /healthz on {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The status code of `GET /healthz` on `addr`.
fn status(addr: SocketAddr) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut read = 0;
    // "HTTP/1.1 200" is all that is needed.
    while read < 12 {
        match stream.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP/1.1 answer"))
}
