//! The `xero-sandbox` binary: flags, the printed address, and a consent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

#[tokio::test]
async fn binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xero-sandbox"))
        .args([
            "--port",
            "0",
            "--client-id",
            "bin-client",
            "--invoices",
            "60",
            "--seed",
            "5",
            "--auto-approve",
            "--rate-limits",
            "off",
            "--as-of",
            "2026-01-31",
        ])
        .env("XERO_SANDBOX_CLIENT_SECRET", "bin-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .strip_prefix("xero-sandbox listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"));
    let org_line = lines.next().unwrap().unwrap();
    assert!(org_line.starts_with("organisation "), "{org_line}");
    let result = async {
        let http = reqwest::Client::new();
        let info: Value = http
            .get(format!("{url}/sandbox"))
            .send()
            .await?
            .json()
            .await?;
        let books: Value = http
            .get(format!("{url}/sandbox/books?detail=false"))
            .send()
            .await?
            .json()
            .await?;
        Ok::<_, reqwest::Error>((info, books))
    }
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    let (info, books) = result.unwrap();
    assert_eq!(info["client_id"], "bin-client");
    assert_eq!(info["auto_approve"], true);
    assert_eq!(info["limits"]["enabled"], false);
    assert!(org_line.contains(info["organisations"][0]["tenant_id"].as_str().unwrap()));
    assert_eq!(books["counts"]["Invoices"], 60);
}

#[test]
fn bad_flags_exit_with_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_xero-sandbox"))
        .args(["--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_xero-sandbox"))
        .args([
            "--client-id",
            "a",
            "--client-secret",
            "b",
            "--fail-rate",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fail-rate"));
}
