//! Helpers of the transformation's tests: a local cloud on a temporary
//! folder, tenants provisioned through the ports from the reconciler's own
//! plan (see `support`), and raw pages written from an in-process Xero
//! sandbox exactly as `job_contract::raw` lays them out.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use time::OffsetDateTime;

use cloud::naming::{self, TenantId};
use cloud::ports::{Credential, QueryRequest};
use cloud::Cloud;
use cloud_local::{LocalAdapters, LocalConfig};

#[path = "../support/mod.rs"]
mod support;
use job_contract::raw::{self, Cursor, Manifest, PageEntry};
use tenant_job::transform::{Dialect, TransformContext};
use xero::client::XeroClient;
use xero::limits::{LimitConfig, RateLimits};
use xero::pager::{ListRequest, PageCursor};
use xero::resources::{Paging, Resource};
use xero_sandbox::{Sandbox, SandboxConfig, SandboxLimits};

/// A local cloud on a temporary folder (kept alive by the `TempDir`).
/// `RUST_LOG=tenant_job=debug` shows what the transformation does.
pub fn open_cloud() -> (TempDir, LocalAdapters) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = TempDir::new().expect("tempdir");
    let adapters =
        LocalAdapters::open(&LocalConfig::new(dir.path())).expect("open the local cloud");
    (dir, adapters)
}

/// One tenant's resources and identity.
#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    pub cloud: Cloud,
    pub cred: Credential,
    pub bucket: String,
    pub raw: String,
    pub transformed: String,
}

/// Provisions tenant `id` as the reconciler does (through the shared test
/// support: bucket, datasets, secret, and the account's grants on exactly those).
pub async fn provision(adapters: &LocalAdapters, id: &str) -> Tenant {
    let tenant = TenantId::parse(id).expect("tenant id");
    let cred = support::provision(adapters, &tenant).await;
    Tenant {
        id: id.to_owned(),
        cloud: adapters.clone().into_cloud(),
        cred,
        bucket: naming::bucket_name(None, &tenant),
        raw: naming::raw_dataset(&tenant),
        transformed: naming::transformed_dataset(&tenant),
    }
}

impl Tenant {
    /// Every manifest in the tenant's bucket.
    pub async fn manifests(&self) -> BTreeSet<String> {
        support::manifests(&*self.cloud.objects, &self.cred, &self.bucket).await
    }

    pub fn context(&self, run_id: &str) -> TransformContext {
        TransformContext {
            cloud: self.cloud.clone(),
            cred: self.cred.clone(),
            bucket: self.bucket.clone(),
            raw_dataset: self.raw.clone(),
            transformed_dataset: self.transformed.clone(),
            run_id: run_id.to_owned(),
            dialect: Dialect::DuckDb,
        }
    }

    /// Every row of a query on `dataset`, as the tenant.
    pub async fn rows(&self, dataset: &str, sql: &str) -> Vec<Vec<Value>> {
        let result = self
            .cloud
            .warehouse
            .query(
                &self.cred,
                &QueryRequest {
                    dataset: dataset.to_owned(),
                    sql: sql.to_owned(),
                    max_rows: 10_000_000,
                    timeout: Duration::from_secs(300),
                    max_bytes: None,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!result.truncated);
        result.rows
    }

    /// The transformed dataset's rows.
    pub async fn t(&self, sql: &str) -> Vec<Vec<Value>> {
        self.rows(&self.transformed.clone(), sql).await
    }

    /// One number from the transformed dataset.
    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.t(sql).await;
        rows[0][0]
            .as_i64()
            .unwrap_or_else(|| panic!("{sql}: {rows:?}"))
    }

    /// Every table of a dataset with every row, sorted: what "unchanged" compares.
    pub async fn snapshot(&self, dataset: &str) -> BTreeMap<String, Vec<Vec<Value>>> {
        let tables = self
            .cloud
            .warehouse
            .list_tables(&self.cred, dataset)
            .await
            .expect("tables");
        let mut out = BTreeMap::new();
        for t in tables {
            let rows = self
                .rows(dataset, &format!("SELECT * FROM {} ORDER BY ALL", t.name))
                .await;
            out.insert(t.name, rows);
        }
        out
    }

    /// The published table names of the transformed dataset.
    pub async fn tables(&self) -> Vec<String> {
        self.table_names(&self.transformed).await
    }

    /// The table names of `dataset`.
    pub async fn table_names(&self, dataset: &str) -> Vec<String> {
        self.cloud
            .warehouse
            .list_tables(&self.cred, dataset)
            .await
            .expect("tables")
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    /// Fails when a load left its table (`_…`) in the raw dataset.
    pub async fn assert_no_load_table_left(&self, when: &str) {
        let raw = self.table_names(&self.raw).await;
        assert!(
            raw.iter().all(|n| !n.starts_with('_')),
            "{when}: load table left behind: {raw:?}"
        );
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.cloud
            .objects
            .put_object(&self.cred, &self.bucket, key, bytes)
            .await
            .expect("put");
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        self.cloud
            .objects
            .get_object(&self.cred, &self.bucket, key)
            .await
            .expect("get")
    }
}

/// A sandbox organisation with a client reading it, and the cursors of the
/// ingests so far.
pub struct Books {
    pub sandbox: Sandbox,
    pub client: XeroClient,
    pub cursors: BTreeMap<Resource, Cursor>,
}

impl Books {
    pub async fn start(invoices: usize, seed: u64) -> Books {
        let sandbox = Sandbox::start(
            SandboxConfig::new("transform-tests", "secret")
                .invoices(invoices)
                .seed(seed)
                // These tests are about the data, not Xero's call limits.
                // (The client paces itself by the limit headers, so the
                // limits are raised, not just unenforced.)
                .limits(SandboxLimits {
                    enabled: false,
                    per_minute: 1_000_000,
                    per_day: 10_000_000,
                    app_per_minute: 10_000_000,
                    ..SandboxLimits::default()
                }),
        )
        .await
        .expect("sandbox");
        let tokens = sandbox.issue_tokens(None);
        let tenant = sandbox.tenant_ids()[0].clone();
        let client = XeroClient::builder(
            tenant,
            Arc::new(xero::token::StaticToken(tokens.access_token)),
        )
        .api_base(sandbox.api_base())
        .limits(RateLimits::new(LimitConfig {
            per_minute: 100_000,
            per_day: 1_000_000,
            app_per_minute: 1_000_000,
            ..LimitConfig::default()
        }))
        .build()
        .expect("client");
        Books {
            sandbox,
            client,
            cursors: BTreeMap::new(),
        }
    }

    /// The ground truth, with the per contact and month breakdown.
    pub fn truth(&self) -> Value {
        let books = self.sandbox.books(None, true).expect("books");
        assert_eq!(
            books["problems"],
            serde_json::json!([]),
            "the sandbox's books are unsound"
        );
        books
    }

    /// Fetches every resource from the cursors on and writes its pages
    /// (`page_size` records each) and manifest under `run_id`, as ingestion
    /// does; returns the records written per resource.
    pub async fn ingest(
        &mut self,
        tenant: &Tenant,
        run_id: &str,
        page_size: usize,
    ) -> BTreeMap<Resource, usize> {
        let mut written = BTreeMap::new();
        for resource in Resource::ALL {
            let cursor = self.cursors.get(&resource).cloned().unwrap_or_default();
            let mut request = ListRequest::new(resource);
            let in_full = resource.listed_in_full();
            if let (true, Some(since)) = (
                resource.supports_if_modified_since() && !in_full,
                cursor.modified_since,
            ) {
                request = request.modified_since(since);
            }
            if let (Paging::Offset, Some(offset)) = (resource.paging(), cursor.journal_offset) {
                request = request.start_at(PageCursor::Offset(offset));
            }
            let started = std::time::Instant::now();
            let records = self
                .client
                .fetch_all(request)
                .await
                .unwrap_or_else(|e| panic!("fetching {resource}: {e}"));
            tracing::debug!(%resource, records = records.len(), ms = started.elapsed().as_millis(), "fetched");
            // An empty complete listing still leaves its manifest.
            if records.is_empty() && !in_full {
                continue;
            }
            let mut next = cursor.clone();
            let mut lines = Vec::with_capacity(records.len());
            for record in &records {
                lines.push(serde_json::to_string(record.as_value()).expect("encode"));
                if let (false, Some(t)) = (in_full, record.updated_at().expect("stamp")) {
                    if next.modified_since.is_none_or(|c| t > c) {
                        next.modified_since = Some(t);
                    }
                }
                if let Some(n) = record.journal_number() {
                    if next.journal_offset.is_none_or(|c| n > c) {
                        next.journal_offset = Some(n);
                    }
                }
            }
            write_run(
                tenant,
                resource,
                run_id,
                &lines,
                page_size,
                cursor.modified_since.filter(|_| !in_full),
                OffsetDateTime::now_utc(),
            )
            .await;
            self.cursors.insert(resource, next);
            written.insert(resource, records.len());
        }
        written
    }
}

/// Writes `lines` (one record each) as the pages and manifest of
/// `resource` in `run_id`, exactly as `job_contract::raw` lays them out.
pub async fn write_run(
    tenant: &Tenant,
    resource: Resource,
    run_id: &str,
    lines: &[String],
    page_size: usize,
    modified_since: Option<OffsetDateTime>,
    completed_at: OffsetDateTime,
) {
    let mut pages = Vec::new();
    for (i, chunk) in lines.chunks(page_size.max(1)).enumerate() {
        let mut body = Vec::new();
        for line in chunk {
            body.extend_from_slice(line.as_bytes());
            body.push(b'\n');
        }
        let key = raw::page_key(resource, run_id, i as u32 + 1);
        pages.push(PageEntry {
            key: key.clone(),
            records: chunk.len() as u64,
            sha256: hex::encode(Sha256::digest(&body)),
        });
        tenant.put(&key, body).await;
    }
    let manifest = Manifest {
        resource: resource.name().to_owned(),
        run_id: run_id.to_owned(),
        pages,
        records: lines.len() as u64,
        modified_since,
        completed_at,
    };
    tenant
        .put(
            &raw::manifest_key(resource, run_id),
            serde_json::to_vec_pretty(&manifest).expect("manifest"),
        )
        .await;
}

/// Cents of a money value: a decimal string from the warehouse, or a float
/// from the books.
pub fn cents(v: &Value) -> i64 {
    match v {
        Value::Null => 0,
        Value::Number(n) => {
            let f = n.as_f64().expect("number");
            (f * 100.0).round() as i64
        }
        Value::String(s) => {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            let negative = whole.starts_with('-');
            let whole: i64 = whole
                .trim_start_matches('-')
                .parse()
                .unwrap_or_else(|_| panic!("{s}"));
            let mut frac = frac.to_owned();
            assert!(
                frac.len() <= 2 || frac[2..].chars().all(|c| c == '0'),
                "{s}"
            );
            frac.truncate(2);
            while frac.len() < 2 {
                frac.push('0');
            }
            let frac: i64 = frac.parse().unwrap_or_else(|_| panic!("{s}"));
            let c = whole * 100 + frac;
            if negative {
                -c
            } else {
                c
            }
        }
        other => panic!("not money: {other}"),
    }
}

/// `record` with `field` set to `value`, as JSON text.
pub fn with_field(record: &str, field: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(record).expect("record");
    v[field] = value;
    v.to_string()
}

pub fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().expect("integer"),
        Value::String(s) => s.parse().expect("integer"),
        other => panic!("not an integer: {other}"),
    }
}

pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
