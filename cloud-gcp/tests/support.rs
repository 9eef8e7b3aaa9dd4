//! The servers the gcp adapter's tests talk to: the repository's contract
//! server (`infra/local/gcp/contract_server.py`, Python's standard library
//! only, started per test) and, when `.ci/run` or `infra/local/gcp-emulators`
//! started them, the Cloud Storage and BigQuery emulators.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloud_gcp::{Api, CellLocation, Gcp, GcpConfig};

pub const PLATFORM_TOKEN: &str = "platform-test-token";
pub const CELL_PROJECT: &str = "ledgerlake-cell-001";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A contract server of its own for one test, stopped when dropped.
pub struct ContractServer {
    child: Child,
    _dir: tempfile::TempDir,
    pub urls: HashMap<String, String>,
    http: reqwest::Client,
}

impl ContractServer {
    pub fn start(extra: &[&str]) -> ContractServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = dir.path().join("ports.json");
        let root = repo_root();
        let child = Command::new("python3")
            .arg(root.join("infra/local/gcp/contract_server.py"))
            .arg("--discovery")
            .arg(root.join("cloud-gcp/contract"))
            .args(["--host", "127.0.0.1", "--platform-token", PLATFORM_TOKEN])
            .arg("--ports-file")
            .arg(&ports)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                if std::env::var_os("LEDGERLAKE_TEST_SERVER_LOGS").is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                },
            )
            .spawn()
            .expect("python3 runs the contract server");
        let deadline = Instant::now() + Duration::from_secs(30);
        let urls = loop {
            if let Ok(text) = std::fs::read_to_string(&ports) {
                if let Ok(urls) = serde_json::from_str::<HashMap<String, String>>(&text) {
                    break urls;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the contract server did not write {}",
                ports.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        ContractServer {
            child,
            _dir: dir,
            urls,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, api: &str) -> String {
        self.urls
            .get(api)
            .cloned()
            .unwrap_or_else(|| panic!("no {api} in {:?}", self.urls))
    }

    /// The adapter's settings for these servers (and the emulators, if up).
    pub fn config(&self) -> GcpConfig {
        let mut vars: HashMap<String, String> = HashMap::from([
            (
                "LEDGERLAKE_GCP_PLATFORM_PROJECT".into(),
                "ledgerlake-platform".into(),
            ),
            (
                "LEDGERLAKE_GCP_TENANT_JOB_IMAGE".into(),
                "europe-west1-docker.pkg.dev/ledgerlake-platform/ledgerlake/tenant-job:test".into(),
            ),
            ("LEDGERLAKE_GCP_ACCESS_TOKEN".into(), PLATFORM_TOKEN.into()),
        ]);
        let apis = [
            (Api::Iam, "iam"),
            (Api::IamCredentials, "iamcredentials"),
            (Api::SecretManager, "secretmanager"),
            (Api::Run, "run"),
            (Api::ResourceManager, "cloudresourcemanager"),
            (Api::Scheduler, "cloudscheduler"),
            (Api::ServiceUsage, "serviceusage"),
        ];
        for (api, key) in apis {
            vars.insert(api.endpoint_variable().into(), self.url(key));
        }
        for api in [Api::Storage, Api::BigQuery] {
            if let Ok(url) = std::env::var(api.endpoint_variable()) {
                vars.insert(api.endpoint_variable().into(), url);
            }
        }
        GcpConfig::from_lookup(|name| vars.get(name).cloned()).expect("config")
    }

    pub async fn gcp(&self) -> Gcp {
        Gcp::connect(self.config()).await.expect("connect")
    }

    async fn control(&self, api: &str, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}/__contract/{path}", self.url(api)))
            .send()
            .await
            .expect("control endpoint")
            .json()
            .await
            .expect("json")
    }

    /// Every request any API of this server refused as off-contract.
    pub async fn violations(&self) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        for api in self.urls.keys() {
            if let serde_json::Value::Array(v) = self.control(api, "violations").await {
                all.extend(v);
            }
        }
        all
    }

    pub async fn requests(&self, api: &str) -> Vec<serde_json::Value> {
        match self.control(api, "requests").await {
            serde_json::Value::Array(v) => v,
            other => panic!("requests: {other}"),
        }
    }

    pub async fn state(&self, api: &str) -> serde_json::Value {
        self.control(api, "state").await
    }

    pub async fn fault(&self, api: &str, method: &str, status: u16, times: u32, retry_after: u32) {
        let r = self
            .http
            .post(format!("{}/__contract/faults", self.url(api)))
            .json(&serde_json::json!({"method": method, "status": status, "times": times, "retry_after": retry_after}))
            .send()
            .await
            .expect("faults endpoint");
        assert!(r.status().is_success(), "{}", r.status());
    }

    pub async fn assert_on_contract(&self) {
        let v = self.violations().await;
        assert!(v.is_empty(), "requests off Google's contract: {v:#?}");
    }
}

impl Drop for ContractServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn cell() -> CellLocation {
    CellLocation {
        project: CELL_PROJECT.into(),
        region: "europe-west1".into(),
    }
}

/// Whether the Storage and BigQuery emulators are up (`.ci/run` starts them;
/// elsewhere `eval "$(infra/local/gcp-emulators start)"`).
pub fn emulators() -> bool {
    let up = std::env::var_os("LEDGERLAKE_GCP_STORAGE_ENDPOINT").is_some()
        && std::env::var_os("LEDGERLAKE_GCP_BIGQUERY_ENDPOINT").is_some();
    if !up {
        eprintln!(
            "SKIPPED: the Cloud Storage and BigQuery emulators are not running; \
             run `eval \"$(infra/local/gcp-emulators start)\"` first (CI starts them)"
        );
        if std::env::var_os("CI").is_some() {
            panic!("CI must run the emulator tests: .ci/run starts the emulators");
        }
    }
    up
}

/// What each API lists under `labels`: service accounts, secrets, jobs,
/// buckets, datasets.
pub async fn labelled(cloud: &cloud::Cloud, labels: &cloud::naming::Labels) -> [usize; 5] {
    [
        cloud
            .identity
            .list_service_accounts(labels)
            .await
            .expect("accounts")
            .len(),
        cloud
            .secrets
            .list_secrets(labels)
            .await
            .expect("secrets")
            .len(),
        cloud.jobs.list_jobs(labels).await.expect("jobs").len(),
        cloud
            .objects
            .list_buckets(labels)
            .await
            .expect("buckets")
            .len(),
        cloud
            .warehouse
            .list_datasets(labels)
            .await
            .expect("datasets")
            .len(),
    ]
}

/// A tenant's whole set (one account, secret and bucket, two jobs and two
/// datasets), as [`labelled`] counts it.
pub const ONE_TENANT: [usize; 5] = [1, 1, 2, 1, 2];
