//! What the running service tells about itself, through the real binary:
//! `/metrics` (behind the scrape or operator token, route templates and never
//! raw paths, tenants by phase from the store), `/openapi.json`, and the JSON
//! log lines in Cloud Logging's shape with the request's trace. Every test
//! talks to 127.0.0.1 only, bounds every wait and kills what it started.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_control-plane");
const HEALTHCHECK: &str = env!("CARGO_BIN_EXE_healthcheck");
const MASTER_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const OPERATOR: &str = "operator-secret-for-tests";
const SCRAPER: &str = "scrape-secret-for-tests";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn command(program: &str, data_dir: &Path) -> Command {
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
    fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = command(BIN, data_dir);
        cmd.envs(env.iter().copied())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start control-plane serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&line);
                line.clear();
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("control-plane listening on http://") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>().ok());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
        };
        match addr {
            Some(addr) => server.addr = addr,
            None => panic!("serve did not start: {}", server.stderr()),
        }
        server
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Kills the process and returns all it wrote to stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    /// `method path` with `headers`: the status and the whole answer.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.addr
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).expect("write");
        let mut answer = Vec::new();
        let _ = stream.take(4 << 20).read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        (status, answer)
    }
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn metrics_need_a_token_and_name_route_templates_and_tenants_by_phase() {
    let root = tempfile::tempdir().expect("tempdir");
    let data = root.path().join("data");
    // A tenant provisioned on the local cloud before the service starts.
    let provision = command(BIN, &data)
        .args(["tenants", "provision", "acme-metrics"])
        .output()
        .expect("provision");
    assert!(
        provision.status.success(),
        "{}",
        String::from_utf8_lossy(&provision.stderr)
    );
    let server = Server::start(
        &data,
        &[
            ("LEDGERLAKE_OPERATOR_TOKEN", OPERATOR),
            ("LEDGERLAKE_METRICS_TOKEN", SCRAPER),
        ],
    );

    // No token, a wrong one, a tenant-looking one: 401 with the shared error.
    for auth in [None, Some(bearer("wrong")), Some(bearer("llt_nope"))] {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let (status, answer) = server.request("GET", "/metrics", &headers);
        assert_eq!(status, 401, "{answer}");
        let error: serde_json::Value = serde_json::from_str(body(&answer)).expect("json error");
        assert_eq!(error["code"], "unauthorized");
    }

    // Traffic to count: a health check, an operator route with an id in its
    // path, a path no route has.
    assert_eq!(server.request("GET", "/healthz", &[]).0, 200);
    let operator = bearer(OPERATOR);
    let (status, _) = server.request(
        "GET",
        "/v1/tenants/secret-tenant",
        &[("Authorization", &operator)],
    );
    assert_eq!(status, 404);
    assert_eq!(server.request("GET", "/no/such/raw-id-123", &[]).0, 404);
    assert_eq!(server.request("BREW", "/healthz", &[]).0, 405);

    let scraper = bearer(SCRAPER);
    let (status, answer) = server.request("GET", "/metrics", &[("Authorization", &scraper)]);
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{answer}"
    );
    let text = body(&answer);
    for expected in [
        r#"ledgerlake_http_requests_total{class="health",route="/healthz",method="GET",status="200"} 1"#,
        r#"ledgerlake_http_requests_total{class="operator",route="/v1/tenants/{id}",method="GET",status="404"} 1"#,
        r#"ledgerlake_http_requests_total{class="none",route="unmatched",method="GET",status="404"} 1"#,
        r#"ledgerlake_http_requests_total{class="health",route="/healthz",method="other",status="405"} 1"#,
        r#"ledgerlake_http_request_duration_seconds_count{class="health",route="/healthz",method="GET"} "#,
        r#"ledgerlake_tenants{phase="Ready"} 1"#,
        r#"ledgerlake_tenants{phase="Failed"} 0"#,
        "ledgerlake_tenants_needing_consent 0",
        "ledgerlake_state_store_up 1",
        "# TYPE ledgerlake_reconcile_passes_total counter",
        "# TYPE ledgerlake_questions_total counter",
        "# TYPE ledgerlake_runs_ended_total counter",
        r#"ledgerlake_token_refreshes_total{outcome="needs_consent"} 0"#,
        r#"ledgerlake_controller_tenants{state="queued"} 0"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    // Raw paths and what is in them never become labels.
    for raw in ["secret-tenant", "raw-id-123", "BREW", OPERATOR, SCRAPER] {
        assert!(!text.contains(raw), "{raw} in the metrics:\n{text}");
    }

    // The operator token may scrape too; the scrape token opens nothing else.
    let (status, _) = server.request("GET", "/metrics", &[("Authorization", &operator)]);
    assert_eq!(status, 200);
    let (status, _) = server.request(
        "GET",
        "/v1/tenants/acme-metrics",
        &[("Authorization", &scraper)],
    );
    assert_eq!(status, 401);

    // The image's healthcheck agrees with the service.
    let probe = command(HEALTHCHECK, &data)
        .env("LEDGERLAKE_LISTEN", server.addr.to_string())
        .output()
        .expect("healthcheck");
    assert!(probe.status.success(), "{probe:?}");
    let stderr = server.stop();
    assert!(!stderr.contains(OPERATOR) && !stderr.contains(SCRAPER));
    let probe = command(HEALTHCHECK, &data)
        .env("LEDGERLAKE_LISTEN", "127.0.0.1:1")
        .output()
        .expect("healthcheck");
    assert!(!probe.status.success(), "nothing listens there");
}

#[test]
fn the_openapi_document_is_served_as_json() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&root.path().join("data"), &[]);
    let (status, answer) = server.request("GET", "/openapi.json", &[]);
    assert_eq!(status, 200, "{answer}");
    assert!(answer
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let doc: serde_json::Value = serde_json::from_str(body(&answer)).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for path in ["/metrics", "/v1/tenants/{id}", "/v1/query", "/openapi.json"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

#[test]
fn json_logs_are_in_cloud_loggings_shape_with_the_requests_trace() {
    let root = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &root.path().join("data"),
        &[
            ("LEDGERLAKE_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,tower_http=debug"),
            ("GOOGLE_CLOUD_PROJECT", "test-project"),
        ],
    );
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    assert_eq!(
        server
            .request("GET", "/healthz", &[("traceparent", &traceparent)])
            .0,
        200
    );
    assert_eq!(
        server
            .request(
                "GET",
                "/readyz",
                &[(
                    "X-Cloud-Trace-Context",
                    "105445aa7843bc8bf206b12000100000/1;o=1"
                )],
            )
            .0,
        200
    );
    // A malformed header is ignored, never echoed.
    assert_eq!(
        server
            .request(
                "GET",
                "/healthz",
                &[("traceparent", "00-\"injected\"-x-01")]
            )
            .0,
        200
    );
    let stderr = server.stop();

    let mut entries = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            matches!(
                entry["severity"].as_str(),
                Some("DEBUG" | "INFO" | "WARNING" | "ERROR")
            ),
            "{line}"
        );
        assert!(entry["message"].is_string(), "{line}");
        let time = entry["time"].as_str().unwrap_or_default();
        assert!(
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{line}"
        );
        entries.push(entry);
    }
    assert!(
        entries
            .iter()
            .any(|e| e["severity"] == "INFO" && e["message"] == "serving"),
        "{stderr}"
    );
    // The request's lines carry its trace, in the project's name, and the
    // request span's fields flattened.
    let traced: Vec<_> = entries
        .iter()
        .filter(|e| {
            e["logging.googleapis.com/trace"]
                == format!("projects/test-project/traces/{TRACE}").as_str()
        })
        .collect();
    assert!(!traced.is_empty(), "no line with the trace:\n{stderr}");
    for e in &traced {
        assert_eq!(
            e["logging.googleapis.com/spanId"], "00f067aa0ba902b7",
            "{e}"
        );
        assert_eq!(e["logging.googleapis.com/trace_sampled"], true, "{e}");
        assert_eq!(e["method"], "GET", "{e}");
        assert_eq!(e["path"], "/healthz", "{e}");
        assert!(e.get("trace_id").is_none(), "{e}");
    }
    assert!(
        entries.iter().any(|e| e["logging.googleapis.com/trace"]
            == "projects/test-project/traces/105445aa7843bc8bf206b12000100000"
            && e["logging.googleapis.com/spanId"] == "0000000000000001"
            && e["path"] == "/readyz"),
        "no line with the Cloud trace context:\n{stderr}"
    );
    assert!(!stderr.contains("injected"), "{stderr}");
}
