//! Attacks on a running service, through the real binary: idle and slow
//! connections, oversized bodies, a data directory others could read or
//! write, and secrets in debug logs. Every test talks to 127.0.0.1 only,
//! bounds every wait and kills what it started.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_control-plane");
/// A 32-byte master key in hex, so no key file is involved unless a test wants one.
const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The binary with a clean environment pointed at `data_dir`.
fn command(data_dir: &Path) -> Command {
    program(BIN, data_dir)
}

fn program(program: &str, data_dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEDGERLAKE_DATA_DIR", data_dir)
        .env("LEDGERLAKE_MASTER_KEY", MASTER_KEY)
        .env("LEDGERLAKE_LOCAL_TICK_SECS", "0")
        .stdin(Stdio::null());
    cmd
}

/// A running `control-plane serve`, killed when dropped; its stderr is kept.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0` with `env` (an empty value removes
    /// the variable); `nofile` runs it under that open-file limit.
    fn start(data_dir: &Path, env: &[(&str, &str)], nofile: Option<u32>) -> Server {
        let mut cmd = match nofile {
            Some(n) => {
                // `sh` lowers its own limit, then becomes the binary.
                let mut sh = program("sh", data_dir);
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(BIN);
                sh
            }
            None => command(data_dir),
        };
        for (name, value) in env {
            match value {
                &"" => cmd.env_remove(name),
                value => cmd.env(name, value),
            };
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start control-plane serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let pipe = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                // Ends when the process closes its stderr.
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_str(&line);
                    line.clear();
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
        };
        match listening(stdout, Duration::from_secs(60)) {
            Some(addr) => server.addr = addr,
            None => panic!("serve did not start listening: {}", server.stderr()),
        }
        server
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process and returns all it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread drains the pipe; give it a moment to finish.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = self.stderr().len();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.stderr().len();
            if now == last {
                break;
            }
            last = now;
        }
        self.stderr()
    }
}

/// The address from "control-plane listening on http://ADDR", within `limit`.
fn listening(stdout: ChildStdout, limit: Duration) -> Option<SocketAddr> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let reader = BufReader::new(stdout);
        for line in reader.lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("control-plane listening on http://") {
                let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
            }
        }
    });
    rx.recv_timeout(limit).ok().flatten()
}

/// Sends `request` on a fresh connection and returns the status and the whole
/// answer; `None` when the connection failed or was closed without one.
fn exchange(addr: SocketAddr, request: &str, limit: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, limit).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    stream.set_write_timeout(Some(limit)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = stream.take(1 << 20).read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, answer))
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(3),
    )
}

/// Retries `GET path` until it answers `status` or `limit` passes; how long it took.
fn wait_for_status(addr: SocketAddr, path: &str, status: u16, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if get(addr, path).is_some_and(|(s, _)| s == status) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// How long until the server closes `stream` (a read returning 0 or a reset),
/// or `None` if it is still open after `limit`. What the server sends first is
/// read and ignored.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        let left = limit
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(10));
        stream.set_read_timeout(Some(left)).ok()?;
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

fn data_dir(root: &tempfile::TempDir) -> PathBuf {
    root.path().join("data")
}

// ---------------------------------------------------------------- connections

#[test]
fn an_idle_socket_flood_leaves_healthz_answering_under_a_low_descriptor_limit() {
    let root = tempfile::tempdir().expect("tmp");
    let mut server = Server::start(
        &data_dir(&root),
        &[
            ("LEDGERLAKE_HEADER_READ_TIMEOUT_SECS", "2"),
            ("LEDGERLAKE_KEEP_ALIVE_SECS", "2"),
        ],
        Some(256),
    );
    assert_eq!(get(server.addr, "/healthz").map(|a| a.0), Some(200));

    // 300 idle sockets: more than the process may open.
    let mut flood = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) {
            Ok(s) => flood.push(s),
            // The listen backlog may be full: the flood is big enough anyway.
            Err(_) => break,
        }
    }
    assert!(
        flood.len() >= 260,
        "only {} connections opened",
        flood.len()
    );

    let took = wait_for_status(server.addr, "/healthz", 200, Duration::from_secs(10));
    assert!(
        took.is_some(),
        "/healthz did not answer 200 under the flood; stderr:\n{}",
        server.stderr()
    );
    // The state store still opens its files.
    assert!(
        wait_for_status(server.addr, "/readyz", 200, Duration::from_secs(10)).is_some(),
        "/readyz did not answer 200 after the flood; stderr:\n{}",
        server.stderr()
    );
    assert!(server.is_running(), "the service died");
    assert!(
        !server.stderr().contains("Too many open files"),
        "{}",
        server.stderr()
    );
    // The server closed the idle sockets it held (or refused them).
    let mut still_open = 0;
    for s in flood.iter_mut().take(50) {
        if closed_within(s, Duration::from_secs(6)).is_none() {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "idle sockets the server never closed");
    drop(flood);
}

#[test]
fn an_idle_or_slow_connection_is_closed_after_the_header_read_timeout() {
    let root = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        &data_dir(&root),
        &[
            ("LEDGERLAKE_HEADER_READ_TIMEOUT_SECS", "1"),
            ("LEDGERLAKE_KEEP_ALIVE_SECS", "30"),
        ],
        None,
    );
    // Silent from the start.
    let mut idle = TcpStream::connect(server.addr).expect("connect");
    let took = closed_within(&mut idle, Duration::from_secs(6));
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(700)),
        "an idle connection was not closed after the header-read timeout: {took:?}"
    );

    // A head trickled a byte at a time: activity does not extend the timeout.
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").expect("write");
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(6) {
        if slow.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        slow.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut buf = [0u8; 1024];
        match slow.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            // Hyper may answer 408 before closing.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed && started.elapsed() < Duration::from_secs(4),
        "a slowly sent head kept its connection for {:?}",
        started.elapsed()
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let root = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        &data_dir(&root),
        &[
            ("LEDGERLAKE_HEADER_READ_TIMEOUT_SECS", "30"),
            ("LEDGERLAKE_KEEP_ALIVE_SECS", "1"),
        ],
        None,
    );
    let mut conn = TcpStream::connect(server.addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    conn.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr).as_bytes())
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).expect("the answer");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let took = closed_within(&mut conn, Duration::from_secs(6));
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(4)),
        "an idle kept-alive connection stayed open: {took:?}"
    );
}

#[test]
fn connections_beyond_the_cap_are_refused_and_the_service_recovers() {
    let root = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        &data_dir(&root),
        &[
            ("LEDGERLAKE_HEADER_READ_TIMEOUT_SECS", "30"),
            ("LEDGERLAKE_KEEP_ALIVE_SECS", "30"),
            ("LEDGERLAKE_MAX_CONNECTIONS", "20"),
        ],
        None,
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(server.addr).expect("connect"));
    }
    // Let the server accept them all.
    std::thread::sleep(Duration::from_millis(500));
    let answer = get(server.addr, "/healthz");
    assert!(
        answer.as_ref().is_none_or(|(status, _)| *status == 503),
        "a connection beyond the cap was served: {answer:?}"
    );
    drop(held);
    assert!(
        wait_for_status(server.addr, "/healthz", 200, Duration::from_secs(10)).is_some(),
        "the service did not recover once the held connections closed"
    );
}

/// A connection to `addr` whose receive buffer is as small as the kernel
/// allows, so that what the server sends soon fills it.
fn connect_with_tiny_receive_buffer(addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        // Set before connecting, so the advertised window is small from the start.
        socket.set_recv_buffer_size(1024).expect("SO_RCVBUF");
        socket.connect(addr).await.expect("connect")
    });
    let stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
}

#[test]
fn a_client_that_never_reads_loses_its_connection_slot() {
    let root = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        &data_dir(&root),
        &[
            ("LEDGERLAKE_HEADER_READ_TIMEOUT_SECS", "30"),
            // Idle soon: closing must not wait for ever on the stuck write.
            ("LEDGERLAKE_KEEP_ALIVE_SECS", "1"),
            ("LEDGERLAKE_STALLED_WRITE_SECS", "2"),
            ("LEDGERLAKE_MAX_CONNECTIONS", "1"),
        ],
        None,
    );
    let stalled = connect_with_tiny_receive_buffer(server.addr);
    // Let the server accept it: the one slot is now taken.
    std::thread::sleep(Duration::from_millis(500));
    let answer = get(server.addr, "/healthz");
    assert!(
        answer.as_ref().is_none_or(|(status, _)| *status == 503),
        "a connection beyond the cap was served: {answer:?}"
    );
    // Pipelined requests for a large document, far more than the socket
    // buffers hold; the answers are never read.
    let request = format!(
        "GET /openapi.json HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    let mut writer = stalled.try_clone().expect("clone");
    writer
        .set_write_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let sender = std::thread::spawn(move || {
        for _ in 0..2000 {
            // Blocks once the server stops reading; that is expected.
            if writer.write_all(request.as_bytes()).is_err() {
                break;
            }
        }
    });
    // Served once the stalled write's deadline frees the slot, while the
    // stalled client still holds its end open.
    let took = wait_for_status(server.addr, "/healthz", 200, Duration::from_secs(30));
    assert!(
        took.is_some(),
        "a client that never reads kept the only connection slot: {}",
        server.stderr()
    );
    let _ = sender.join();
    drop(stalled);
}

#[test]
fn oversized_request_bodies_are_refused_on_every_route() {
    let root = tempfile::tempdir().expect("tmp");
    let server = Server::start(
        &data_dir(&root),
        &[
            ("LEDGERLAKE_MAX_BODY_BYTES", "65536"),
            ("LEDGERLAKE_OPERATOR_TOKEN", "operator-token"),
        ],
        None,
    );
    for (method, path) in [
        ("POST", "/v1/scheduler/tick"),
        ("POST", "/v1/tenants/acme/runs"),
        ("POST", "/webhooks/xero"),
        ("GET", "/healthz"),
        ("GET", "/connect/xero?tenant=acme"),
    ] {
        // Only the head is sent: the declared length alone must be refused.
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer operator-token\r\n\
             Content-Type: application/json\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n",
            server.addr
        );
        let answer = exchange(server.addr, &request, Duration::from_secs(5));
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(413),
            "{method} {path}: {answer:?}"
        );
    }
    // A small body still passes.
    let answer = exchange(
        server.addr,
        &format!(
            "POST /v1/scheduler/tick HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer operator-token\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            server.addr
        ),
        Duration::from_secs(10),
    );
    assert_eq!(answer.as_ref().map(|a| a.0), Some(200), "{answer:?}");
}

// ---------------------------------------------------------------- file modes

/// Every directory 0700, every file 0600, under `dir`; what is not.
fn loose_modes(dir: &Path) -> Vec<String> {
    let mut loose = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        seen += 1;
        assert!(seen < 100_000, "walked too far");
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if mode != 0o700 {
                loose.push(format!(
                    "{} is a directory of mode {mode:o}",
                    path.display()
                ));
            }
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else if mode != 0o600 {
            loose.push(format!("{} has mode {mode:o}", path.display()));
        }
    }
    loose
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("entry").path());
            }
        } else {
            out.push(path);
        }
        assert!(out.len() < 100_000, "walked too far");
    }
    out
}

#[test]
fn the_data_directory_and_every_file_in_it_are_private() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = data_dir(&root);
    let out = command(&dir)
        // The master key file too: no LEDGERLAKE_MASTER_KEY.
        .env_remove("LEDGERLAKE_MASTER_KEY")
        .args(["tenants", "provision", "acme"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = files_under(&dir);
    let has = |suffix: &str| {
        files
            .iter()
            .any(|f| f.display().to_string().ends_with(suffix))
    };
    for expected in [
        "state.db",
        ".duckdb",
        ".key",
        ".keycheck",
        "master.key",
        ".lock",
    ] {
        assert!(has(expected), "no {expected} file in {files:?}");
    }
    let loose = loose_modes(&dir);
    assert!(loose.is_empty(), "{}", loose.join("\n"));

    // While the service runs: SQLite's -wal and -shm too, and an object.
    let server = Server::start(&dir, &[("LEDGERLAKE_MASTER_KEY", "")], None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("state.db-wal").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = get(server.addr, "/readyz");
    let loose = loose_modes(&dir);
    let files = files_under(&dir);
    drop(server);
    assert!(loose.is_empty(), "{}\nfiles: {files:?}", loose.join("\n"));
}

#[test]
fn commands_refuse_a_data_directory_others_can_write() {
    let root = tempfile::tempdir().expect("tmp");
    let dir = data_dir(&root);
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let mut child = command(&dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        if status.is_some() {
            let _ = pipe.read_to_string(&mut stderr);
        }
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "serve on a 0777 data directory: {stderr}"
    );
    assert!(
        stderr.contains("777") && stderr.contains(&dir.display().to_string()),
        "the error names neither the mode nor the directory: {stderr}"
    );
    // Nothing was created or changed.
    let entries: Vec<_> = std::fs::read_dir(&dir).expect("ls").collect();
    assert!(entries.is_empty(), "{entries:?}");
    let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o777);

    // Every other command that opens it refuses the same way.
    let out = command(&dir)
        .args(["tenants", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("777"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 0);

    // Group-writable is refused too; readable-only is tightened and accepted.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    let out = command(&dir)
        .args(["tenants", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = command(&dir)
        .args(["tenants", "list"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&dir).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

// ---------------------------------------------------------------- logs

#[test]
fn debug_logs_carry_no_oauth_code_state_or_unbounded_error() {
    let root = tempfile::tempdir().expect("tmp");
    let long_error = "e".repeat(5000);
    let other_error = "f".repeat(5000);
    // An operator's connect link, so that consent can start for real.
    let out = command(&data_dir(&root))
        .args(["tenants", "connect-link", "acme", "--output", "json"])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let minted: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let url = minted["url"].as_str().expect("url");
    let link = url
        .split_once("?link=")
        .map(|(_, link)| link.to_owned())
        .expect("a link token");
    let server = Server::start(
        &data_dir(&root),
        &[
            ("RUST_LOG", "debug"),
            ("LEDGERLAKE_XERO_CLIENT_ID", "client-id"),
            ("LEDGERLAKE_XERO_CLIENT_SECRET", "client-secret"),
        ],
        None,
    );
    let answer = get(
        server.addr,
        &format!("/oauth/xero/callback?code=SECRETCODE&state=SECRETSTATE&error={long_error}"),
    );
    assert!(answer.is_some(), "no answer");

    // A real state, so that the consent-denied path logs the error value.
    let (status, redirect) =
        get(server.addr, &format!("/connect/xero?link={link}")).expect("connect");
    assert!((300..400).contains(&status), "{redirect}");
    let state = redirect
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .and_then(|l| l.split(['?', '&']).find_map(|p| p.strip_prefix("state=")))
        .map(|s| s.trim().to_owned())
        .expect("a state in the redirect");
    assert!(state.len() >= 16, "{state}");
    let answer = get(
        server.addr,
        &format!("/oauth/xero/callback?code=SECRETCODE&state={state}&error={other_error}"),
    );
    assert!(answer.as_ref().is_some_and(|a| a.0 == 400), "{answer:?}");

    let logs = server.stop();
    assert!(
        logs.contains("/oauth/xero/callback"),
        "no request logged:\n{logs}"
    );
    for secret in ["SECRETCODE", "SECRETSTATE", state.as_str(), link.as_str()] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
    for value in [&long_error, &other_error] {
        assert!(
            !logs.contains(&value[..300]),
            "an untrusted value was logged unbounded"
        );
    }
}
