//! BigQuery through its JSON API: a tenant's raw and transformed datasets
//! (access entries for its account, labels, no default expiration), NDJSON
//! loads by media upload, statements as query jobs, and questions as a dry
//! run (a single SELECT over the tenant's own dataset, under its byte cap)
//! followed by the run with `maximumBytesBilled`, labels and a timeout; every
//! job as the caller's principal, in the cell's project.

use std::time::Duration;

use async_trait::async_trait;
use cloud::error::{CloudError, CloudResult};
use cloud::naming::Labels;
use cloud::ports::{
    Binding, Column, Credential, Dataset, DatasetSpec, ExpectedObject, LoadedObject, ObjectStore,
    PageDigest, Policy, QueryRequest, QueryResult, TableInfo, Warehouse, WriteMode,
};
use reqwest::Method;
use serde_json::{json, Value};

use crate::limiter::QuotaClass;
use crate::rest::{int64, labels_in, Rest};
use crate::CellAdapter;

/// How long a statement or load may run before it is reported as failed.
const JOB_WAIT: Duration = Duration::from_secs(600);

/// Bytes of lines `load_lines` uploads in one load job.
const LINES_UPLOAD_BYTES: usize = 32 * 1024 * 1024;

fn dataset_of(v: &Value) -> Dataset {
    let reference = v.get("datasetReference");
    Dataset {
        name: reference
            .and_then(|r| r.get("datasetId"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        labels: labels_in(v),
        created_at: int64::<i64>(v.get("creationTime"))
            .and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
            })
            .unwrap_or_else(crate::now),
    }
}

/// Access-entry roles and the IAM roles they are.
const ROLES: [(&str, &str); 3] = [
    ("READER", "roles/bigquery.dataViewer"),
    ("WRITER", "roles/bigquery.dataEditor"),
    ("OWNER", "roles/bigquery.dataOwner"),
];

fn iam_role(access_role: &str) -> String {
    ROLES
        .iter()
        .find(|(legacy, _)| *legacy == access_role)
        .map_or_else(|| access_role.to_owned(), |(_, iam)| (*iam).to_owned())
}

/// The member an access entry names, as an IAM member string.
fn member_of(entry: &Value) -> Option<String> {
    let s = |k: &str| entry.get(k).and_then(Value::as_str);
    if let Some(m) = s("iamMember") {
        return Some(m.to_owned());
    }
    if let Some(email) = s("userByEmail") {
        let kind = if email.ends_with(".gserviceaccount.com") {
            "serviceAccount"
        } else {
            "user"
        };
        return Some(format!("{kind}:{email}"));
    }
    if let Some(g) = s("groupByEmail") {
        return Some(format!("group:{g}"));
    }
    if let Some(d) = s("domain") {
        return Some(format!("domain:{d}"));
    }
    s("specialGroup").map(|g| format!("specialGroup:{g}"))
}

fn entry_for(role: &str, member: &str) -> Value {
    let (kind, who) = member.split_once(':').unwrap_or(("", member));
    match kind {
        "serviceAccount" | "user" => json!({"role": role, "userByEmail": who}),
        "group" => json!({"role": role, "groupByEmail": who}),
        "domain" => json!({"role": role, "domain": who}),
        "specialGroup" => json!({"role": role, "specialGroup": who}),
        _ => json!({"role": role, "iamMember": member}),
    }
}

/// The port's policy from a dataset's access entries (etag: the dataset's).
fn policy_of_dataset(v: &Value) -> Policy {
    let mut policy = Policy {
        bindings: Vec::new(),
        etag: v
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    };
    for entry in v
        .get("access")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let (Some(role), Some(member)) =
            (entry.get("role").and_then(Value::as_str), member_of(entry))
        {
            policy.add(&iam_role(role), &member);
        }
    }
    policy
}

/// The access entries for `policy`, keeping entries that name no member
/// (authorized views, routines, datasets) from `current`.
fn access_for(policy: &Policy, current: &Value) -> Vec<Value> {
    let mut access: Vec<Value> = current
        .get("access")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| member_of(e).is_none())
        .cloned()
        .collect();
    for Binding { role, members } in &policy.bindings {
        for m in members {
            access.push(entry_for(role, m));
        }
    }
    access
}

/// The load's schema, from the records themselves: each top-level field
/// typed by the JSON values it holds (text STRING, whole numbers INT64, other
/// numbers FLOAT64, booleans BOOL, objects and arrays JSON, only nulls
/// STRING; a field seen with two kinds is STRING unless they are both numbers). BigQuery's autodetect
/// samples rows and guesses from text (a UUID, a date), so the same records
/// could load with other types from one batch to the next.
fn schema_of_ndjson(ndjson: &[u8]) -> Vec<Value> {
    let mut fields: Vec<(String, &'static str)> = Vec::new();
    for line in ndjson.split(|&b| b == b'\n') {
        let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        for (name, value) in record {
            let kind = match value {
                Value::Null => "NULL",
                Value::String(_) => "STRING",
                Value::Bool(_) => "BOOL",
                Value::Number(n) if n.is_i64() || n.is_u64() => "INT64",
                Value::Number(_) => "FLOAT64",
                Value::Object(_) | Value::Array(_) => "JSON",
            };
            match fields.iter_mut().find(|(n, _)| *n == name) {
                None => fields.push((name, kind)),
                Some((_, seen)) if *seen == kind || kind == "NULL" => {}
                Some((_, seen)) if *seen == "NULL" => *seen = kind,
                Some((_, seen)) => {
                    let numbers = ["INT64", "FLOAT64"];
                    *seen = if numbers.contains(seen) && numbers.contains(&kind) {
                        "FLOAT64"
                    } else {
                        "STRING"
                    };
                }
            }
        }
    }
    // A field only ever null still exists: text until a value says otherwise.
    fields
        .into_iter()
        .map(|(name, kind)| (name, if kind == "NULL" { "STRING" } else { kind }))
        .map(|(name, kind)| json!({"name": name, "type": kind, "mode": "NULLABLE"}))
        .collect()
}

/// GoogleSQL's name of a type the REST API names in its legacy way
/// (`INTEGER`, `FLOAT`, `BOOLEAN`, `RECORD`), as the SQL and the models do.
fn googlesql_type(rest: &str) -> &str {
    match rest {
        "INTEGER" => "INT64",
        "FLOAT" => "FLOAT64",
        "BOOLEAN" => "BOOL",
        "RECORD" => "STRUCT",
        other => other,
    }
}

/// A cell of a query result, typed by its column's BigQuery type.
fn typed(value: &Value, data_type: &str) -> Value {
    let Some(s) = value.as_str() else {
        return value.clone();
    };
    match data_type {
        "INTEGER" | "INT64" => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(s)),
        "FLOAT" | "FLOAT64" | "NUMERIC" | "BIGNUMERIC" => s
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(s)),
        "BOOLEAN" | "BOOL" => Value::Bool(s.eq_ignore_ascii_case("true")),
        _ => Value::from(s),
    }
}

impl CellAdapter {
    fn datasets_path(&self) -> String {
        format!(
            "/bigquery/v2/projects/{}/datasets",
            Rest::segment(&self.project)
        )
    }

    fn dataset_path(&self, name: &str) -> String {
        format!("{}/{}", self.datasets_path(), Rest::segment(name))
    }

    fn jobs_path(&self) -> String {
        format!(
            "/bigquery/v2/projects/{}/jobs",
            Rest::segment(&self.project)
        )
    }

    async fn dataset_json(&self, name: &str) -> CloudResult<Value> {
        let resource = format!("dataset {name}");
        self.paced(QuotaClass::BigQuery, || async {
            self.rest()
                .json(
                    &resource,
                    self.rest().bigquery(Method::GET, &self.dataset_path(name)),
                )
                .await
        })
        .await
    }

    pub(crate) async fn dataset_policy(&self, name: &str) -> CloudResult<Policy> {
        Ok(policy_of_dataset(&self.dataset_json(name).await?))
    }

    pub(crate) async fn set_dataset_policy(
        &self,
        name: &str,
        policy: &Policy,
    ) -> CloudResult<Policy> {
        let resource = format!("access of dataset {name}");
        let current = self.dataset_json(name).await?;
        if current
            .get("etag")
            .and_then(Value::as_str)
            .unwrap_or_default()
            != policy.etag
        {
            return Err(CloudError::Conflict { resource });
        }
        let body = json!({"access": access_for(policy, &current)});
        let v = self
            .paced(QuotaClass::PolicyWrite, || async {
                let req = self
                    .rest()
                    .bigquery(Method::PATCH, &self.dataset_path(name))
                    // BigQuery refuses the patch (412) if the dataset changed since read.
                    .header(http::header::IF_MATCH, policy.etag.as_str())
                    .json(&body);
                self.rest().json(&resource, req).await
            })
            .await?;
        Ok(policy_of_dataset(&v))
    }

    /// Inserts a job and waits for it to finish; its final resource.
    async fn run_job_to_end(&self, resource: &str, configuration: Value) -> CloudResult<Value> {
        let job_id = format!("ledgerlake_{}", uuid::Uuid::new_v4().simple());
        let body = json!({
            "jobReference": {"projectId": self.project, "jobId": job_id, "location": self.shared.config.location},
            "configuration": configuration,
        });
        let inserted = self
            .paced(QuotaClass::BigQuery, || async {
                self.rest()
                    .json(
                        resource,
                        self.rest()
                            .bigquery(Method::POST, &self.jobs_path())
                            .json(&body),
                    )
                    .await
            })
            .await?;
        self.wait_for_job(resource, inserted, &job_id).await
    }

    async fn wait_for_job(
        &self,
        resource: &str,
        mut job: Value,
        job_id: &str,
    ) -> CloudResult<Value> {
        let start = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            let status = job.get("status");
            if status.and_then(|s| s.get("state")).and_then(Value::as_str) == Some("DONE") {
                if let Some(error) = status.and_then(|s| s.get("errorResult")) {
                    let message = error
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("the job failed");
                    return Err(CloudError::permanent(
                        resource,
                        message.chars().take(300).collect::<String>(),
                    ));
                }
                return Ok(job);
            }
            if start.elapsed() > JOB_WAIT {
                return Err(CloudError::transient(
                    resource,
                    format!("job {job_id} still running after {} s", JOB_WAIT.as_secs()),
                ));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
            job = self
                .paced(QuotaClass::BigQuery, || async {
                    let req = self
                        .rest()
                        .bigquery(
                            Method::GET,
                            &format!("{}/{}", self.jobs_path(), Rest::segment(job_id)),
                        )
                        .query(&[("location", self.shared.config.location.as_str())]);
                    self.rest().json(resource, req).await
                })
                .await?;
        }
    }

    /// Loads NDJSON by media upload into `table` with the given schema.
    async fn load_by_upload(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        ndjson: Vec<u8>,
        schema: Vec<Value>,
        mode: WriteMode,
    ) -> CloudResult<u64> {
        let resource = format!("table {table} of dataset {dataset}");
        let job_id = format!("ledgerlake_load_{}", uuid::Uuid::new_v4().simple());
        let metadata = json!({
            "jobReference": {"projectId": self.project, "jobId": job_id, "location": self.shared.config.location},
            "configuration": {"load": {
                "destinationTable": {"projectId": self.project, "datasetId": dataset, "tableId": table},
                "sourceFormat": "NEWLINE_DELIMITED_JSON",
                "schema": {"fields": schema},
                "writeDisposition": match mode { WriteMode::Append => "WRITE_APPEND", WriteMode::Truncate => "WRITE_TRUNCATE" },
                "createDisposition": "CREATE_IF_NEEDED",
            }},
        });
        let boundary = format!("ledgerlake-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(ndjson.len() + 1024);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(&ndjson);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let body = bytes::Bytes::from(body);
        let principal = crate::auth::Principal::from(cred);
        self.shared
            .auth
            .acting_as(principal, async {
                let inserted = self
                    .paced(QuotaClass::BigQuery, || async {
                        let req = self
                            .rest()
                            .bigquery(
                                Method::POST,
                                &format!(
                                    "/upload/bigquery/v2/projects/{}/jobs",
                                    Rest::segment(&self.project)
                                ),
                            )
                            .query(&[("uploadType", "multipart")])
                            .header(
                                http::header::CONTENT_TYPE,
                                format!("multipart/related; boundary={boundary}"),
                            )
                            .body(body.clone());
                        self.rest().json(&resource, req).await
                    })
                    .await?;
                let done = self.wait_for_job(&resource, inserted, &job_id).await?;
                Ok(int64(
                    done.get("statistics")
                        .and_then(|s| s.get("load"))
                        .and_then(|l| l.get("outputRows")),
                )
                .unwrap_or(0)
                .max(0) as u64)
            })
            .await
    }

    fn default_dataset(&self, dataset: &str) -> Value {
        json!({"projectId": self.project, "datasetId": dataset})
    }

    /// The dry run's verdict on a question: one SELECT, reading only
    /// `dataset`, within the byte cap.
    async fn dry_run(&self, cred: &Credential, req: &QueryRequest) -> CloudResult<u64> {
        let resource = format!("query on dataset {}", req.dataset);
        let configuration = json!({
            "dryRun": true,
            "query": {"query": req.sql, "useLegacySql": false, "defaultDataset": self.default_dataset(&req.dataset)},
        });
        let body = json!({"configuration": configuration, "jobReference": {"projectId": self.project, "location": self.shared.config.location}});
        let job = self
            .paced_as(cred, QuotaClass::BigQuery, || async {
                self.rest()
                    .json(
                        &resource,
                        self.rest()
                            .bigquery(Method::POST, &self.jobs_path())
                            .json(&body),
                    )
                    .await
            })
            .await?;
        let stats = job.get("statistics").and_then(|s| s.get("query"));
        let statement = stats
            .and_then(|s| s.get("statementType"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if !statement.eq_ignore_ascii_case("SELECT") {
            return Err(CloudError::PermissionDenied {
                principal: cred.member(),
                action: format!(
                    "run a {} statement as a question on",
                    if statement.is_empty() {
                        "non-SELECT"
                    } else {
                        statement
                    }
                ),
                resource: format!("dataset {}", req.dataset),
            });
        }
        for table in stats
            .and_then(|s| s.get("referencedTables"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let project = table.get("projectId").and_then(Value::as_str).unwrap_or("");
            let dataset = table.get("datasetId").and_then(Value::as_str).unwrap_or("");
            if project != self.project || dataset != req.dataset {
                return Err(CloudError::PermissionDenied {
                    principal: cred.member(),
                    action: "read".into(),
                    resource: format!(
                        "{project}.{dataset} (a question may read only {})",
                        req.dataset
                    ),
                });
            }
        }
        let bytes = int64(
            stats
                .and_then(|s| s.get("totalBytesProcessed"))
                .or_else(|| {
                    job.get("statistics")
                        .and_then(|s| s.get("totalBytesProcessed"))
                }),
        )
        .unwrap_or(0)
        .max(0) as u64;
        if let Some(cap) = req.max_bytes {
            if bytes > cap {
                return Err(CloudError::PermissionDenied {
                    principal: cred.member(),
                    action: format!("scan {bytes} bytes (the cap is {cap}) of"),
                    resource: format!("dataset {}", req.dataset),
                });
            }
        }
        Ok(bytes)
    }
}

#[async_trait]
impl Warehouse for CellAdapter {
    async fn ensure_dataset(&self, spec: &DatasetSpec) -> CloudResult<Dataset> {
        let resource = format!("dataset {}", spec.name);
        let body = json!({
            "datasetReference": {"projectId": self.project, "datasetId": spec.name},
            "labels": spec.labels,
            "location": self.shared.config.location,
        });
        let created = self
            .paced(QuotaClass::BigQuery, || async {
                self.rest()
                    .json(
                        &resource,
                        self.rest()
                            .bigquery(Method::POST, &self.datasets_path())
                            .json(&body),
                    )
                    .await
            })
            .await;
        match created {
            Ok(v) => Ok(dataset_of(&v)),
            Err(CloudError::AlreadyExists { .. }) => {
                let found = self.get_dataset(&spec.name).await?;
                crate::check_owner(resource, &found.labels, &spec.labels)?;
                Ok(found)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_dataset(&self, name: &str) -> CloudResult<Dataset> {
        Ok(dataset_of(&self.dataset_json(name).await?))
    }

    async fn list_datasets(&self, labels: &Labels) -> CloudResult<Vec<Dataset>> {
        let resource = format!("datasets of project {}", self.project);
        let items = crate::rest::all_pages(&resource, "datasets", |token| {
            let resource = &resource;
            self.paced(QuotaClass::BigQuery, move || {
                let mut query = vec![("maxResults", "1000".to_owned())];
                query.extend(token.clone().map(|t| ("pageToken", t)));
                let req = self
                    .rest()
                    .bigquery(Method::GET, &self.datasets_path())
                    .query(&query);
                async move { self.rest().json(resource, req).await }
            })
        })
        .await?;
        Ok(items
            .iter()
            .map(dataset_of)
            .filter(|d| crate::has_labels(&d.labels, labels))
            .collect())
    }

    async fn delete_dataset(&self, name: &str) -> CloudResult<()> {
        let resource = format!("dataset {name}");
        self.paced(QuotaClass::BigQuery, || async {
            let req = self
                .rest()
                .bigquery(Method::DELETE, &self.dataset_path(name))
                .query(&[("deleteContents", "true")]);
            self.rest().bytes(&resource, req).await.map(|_| ())
        })
        .await
    }

    async fn list_tables(&self, cred: &Credential, dataset: &str) -> CloudResult<Vec<TableInfo>> {
        let resource = format!("tables of dataset {dataset}");
        let listing = crate::rest::all_pages(&resource, "tables", |token| {
            let resource = &resource;
            self.paced(QuotaClass::BigQuery, move || {
                let mut query = vec![("maxResults", "1000".to_owned())];
                query.extend(token.clone().map(|t| ("pageToken", t)));
                let req = self
                    .rest()
                    .bigquery(
                        Method::GET,
                        &format!("{}/tables", self.dataset_path(dataset)),
                    )
                    .query(&query);
                async move { self.rest().json(resource, req).await }
            })
        });
        let items = self
            .shared
            .auth
            .acting_as(crate::auth::Principal::from(cred), listing)
            .await?;
        let mut found: Vec<TableInfo> = items
            .iter()
            .map(|t| TableInfo {
                name: t["tableReference"]["tableId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                rows: None,
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    async fn load_ndjson(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        ndjson: Vec<u8>,
        mode: WriteMode,
    ) -> CloudResult<u64> {
        let schema = schema_of_ndjson(&ndjson);
        self.load_by_upload(cred, dataset, table, ndjson, schema, mode)
            .await
    }

    async fn load_lines(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        bucket: &str,
        objects: &[ExpectedObject],
        then: &str,
    ) -> CloudResult<Vec<LoadedObject>> {
        // A load job straight from Cloud Storage cannot say which object and
        // line a row came from, so the objects are read here, checked, and
        // their lines uploaded as NDJSON into a table of the dataset, in parts
        // of about LINES_UPLOAD_BYTES (memory stays bounded whatever the
        // objects hold); `then` runs as one script, and the table is dropped.
        // A failure part-way leaves the table for the next load to replace.
        let schema = vec![
            json!({"name": "object", "type": "STRING", "mode": "REQUIRED"}),
            json!({"name": "line", "type": "INT64", "mode": "REQUIRED"}),
            json!({"name": "text", "type": "STRING", "mode": "REQUIRED"}),
        ];
        let mut mode = WriteMode::Truncate;
        let mut read = Vec::with_capacity(objects.len());
        let mut part: Vec<u8> = Vec::new();
        let mut sent_any = false;
        for expected in objects {
            let key = &expected.key;
            let data = <Self as ObjectStore>::get_object(self, cred, bucket, key).await?;
            let mut digest = PageDigest::new();
            digest.update(&data);
            let object = digest.finish(key.clone());
            let matches = expected.matches(&object);
            read.push(object);
            if !matches {
                if sent_any {
                    let _ = self
                        .execute(cred, dataset, &format!("DROP TABLE IF EXISTS {table}"))
                        .await;
                }
                return Ok(read);
            }
            let text = String::from_utf8_lossy(&data);
            for (i, line) in text.split('\n').enumerate() {
                if line.is_empty() {
                    continue;
                }
                serde_json::to_writer(
                    &mut part,
                    &json!({"object": key, "line": i + 1, "text": line}),
                )
                .map_err(|e| {
                    CloudError::permanent(format!("object {key} in bucket {bucket}"), e.to_string())
                })?;
                part.push(b'\n');
            }
            if part.len() >= LINES_UPLOAD_BYTES {
                let chunk = std::mem::take(&mut part);
                self.load_by_upload(cred, dataset, table, chunk, schema.clone(), mode)
                    .await?;
                mode = WriteMode::Append;
                sent_any = true;
            }
        }
        if !part.is_empty() || !sent_any {
            self.load_by_upload(cred, dataset, table, part, schema, mode)
                .await?;
        }
        self.execute(cred, dataset, then).await?;
        self.execute(cred, dataset, &format!("DROP TABLE IF EXISTS {table}"))
            .await?;
        Ok(read)
    }

    async fn execute(&self, cred: &Credential, dataset: &str, sql: &str) -> CloudResult<()> {
        let resource = format!("statement on dataset {dataset}");
        let configuration = json!({"query": {
            "query": sql,
            "useLegacySql": false,
            "defaultDataset": self.default_dataset(dataset),
        }});
        let principal = crate::auth::Principal::from(cred);
        self.shared
            .auth
            .acting_as(principal, self.run_job_to_end(&resource, configuration))
            .await
            .map(|_| ())
    }

    async fn execute_reading(
        &self,
        cred: &Credential,
        dataset: &str,
        sql: &str,
        _sources: &[String],
    ) -> CloudResult<()> {
        // On BigQuery other datasets are named in the SQL itself and read
        // under the caller's own grants; nothing to attach.
        self.execute(cred, dataset, sql).await
    }

    async fn query(&self, cred: &Credential, req: &QueryRequest) -> CloudResult<QueryResult> {
        self.dry_run(cred, req).await?;
        let resource = format!("query on dataset {}", req.dataset);
        let timeout_ms = req.timeout.as_millis().min(u128::from(u32::MAX)) as u64;
        let mut query = json!({
            "query": req.sql,
            "useLegacySql": false,
            "defaultDataset": self.default_dataset(&req.dataset),
        });
        if let Some(cap) = req.max_bytes {
            // BigQuery refuses to run past it, whatever the dry run estimated.
            query["maximumBytesBilled"] = Value::from(cap.to_string());
        }
        let configuration = json!({
            "query": query,
            "jobTimeoutMs": timeout_ms.to_string(),
            "labels": {"managed-by": "ledgerlake", "dataset": req.dataset.replace('.', "_")},
        });
        let principal = crate::auth::Principal::from(cred);
        let answer = self
            .shared
            .auth
            .acting_as(principal, async {
                let job = self.run_job_to_end(&resource, configuration).await?;
                let job_id = job
                    .get("jobReference")
                    .and_then(|r| r.get("jobId"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| CloudError::permanent(&resource, "the query job has no id"))?
                    .to_owned();
                self.paced(QuotaClass::BigQuery, || async {
                    let get = self
                        .rest()
                        .bigquery(
                            Method::GET,
                            &format!(
                                "/bigquery/v2/projects/{}/queries/{}",
                                Rest::segment(&self.project),
                                Rest::segment(&job_id)
                            ),
                        )
                        .query(&[
                            ("maxResults", (req.max_rows + 1).to_string()),
                            ("timeoutMs", timeout_ms.to_string()),
                            ("location", self.shared.config.location.clone()),
                        ]);
                    self.rest().json(&resource, get).await
                })
                .await
            })
            .await?;
        if let Some(error) = answer
            .get("errors")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the query failed");
            return Err(CloudError::permanent(
                resource,
                message.chars().take(300).collect::<String>(),
            ));
        }
        if answer.get("jobComplete").and_then(Value::as_bool) == Some(false) {
            return Err(CloudError::transient(
                resource,
                format!("the query did not finish within {} ms", timeout_ms),
            ));
        }
        let fields: Vec<(String, String)> = answer
            .get("schema")
            .and_then(|s| s.get("fields"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|f| {
                (
                    f.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    f.get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("STRING")
                        .to_owned(),
                )
            })
            .collect();
        let mut rows: Vec<Vec<Value>> = answer
            .get("rows")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|row| {
                let cells = row
                    .get("f")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                fields
                    .iter()
                    .zip(cells.iter())
                    .map(|((_, t), cell)| typed(cell.get("v").unwrap_or(&Value::Null), t))
                    .collect()
            })
            .collect();
        let truncated = rows.len() > req.max_rows;
        rows.truncate(req.max_rows);
        Ok(QueryResult {
            columns: fields
                .into_iter()
                .map(|(name, data_type)| Column {
                    name,
                    data_type: googlesql_type(&data_type).to_owned(),
                })
                .collect(),
            rows,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_entries_are_the_datasets_policy_and_back() {
        let dataset = json!({
            "etag": "abc",
            "access": [
                {"role": "OWNER", "specialGroup": "projectOwners"},
                {"role": "WRITER", "userByEmail": "client-a-sa@p.iam.gserviceaccount.com"},
                {"view": {"projectId": "p", "datasetId": "d", "tableId": "v"}},
            ],
        });
        let mut policy = policy_of_dataset(&dataset);
        assert_eq!(policy.etag, "abc");
        assert!(policy.has(
            "roles/bigquery.dataEditor",
            "serviceAccount:client-a-sa@p.iam.gserviceaccount.com"
        ));
        assert!(policy.has("roles/bigquery.dataOwner", "specialGroup:projectOwners"));
        policy.add(
            "roles/bigquery.dataViewer",
            "serviceAccount:reader@p.iam.gserviceaccount.com",
        );
        let access = access_for(&policy, &dataset);
        assert_eq!(access.len(), 4, "{access:?}");
        assert!(
            access.iter().any(|e| e.get("view").is_some()),
            "the authorized view stays"
        );
        assert!(access.contains(&json!({"role": "roles/bigquery.dataViewer", "userByEmail": "reader@p.iam.gserviceaccount.com"})));
    }

    #[test]
    fn a_loads_schema_comes_from_its_records_not_from_guesses() {
        let ndjson = b"{\"id\":\"6f1c0e1e-8a5c-4c1e-9e41-3b1a2f0c9d11\",\"seq\":1,\"total\":2,\"ok\":true,\"raw\":{\"a\":1}}\n\
{\"id\":\"x\",\"seq\":2,\"total\":2.5,\"ok\":null,\"extra\":\"e\",\"never\":null}\n";
        let schema = schema_of_ndjson(ndjson);
        let types: Vec<(String, String)> = schema
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    f["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        // A record's fields in name order, then fields first seen later.
        let expected = [
            ("id", "STRING"),
            ("ok", "BOOL"),
            ("raw", "JSON"),
            ("seq", "INT64"),
            ("total", "FLOAT64"),
            ("extra", "STRING"),
            ("never", "STRING"),
        ];
        assert_eq!(types, expected.map(|(n, t)| (n.to_owned(), t.to_owned())));
    }

    #[test]
    fn column_types_are_named_as_googlesql_names_them() {
        assert_eq!(googlesql_type("INTEGER"), "INT64");
        assert_eq!(googlesql_type("BOOLEAN"), "BOOL");
        assert_eq!(googlesql_type("NUMERIC"), "NUMERIC");
    }

    #[test]
    fn cells_are_typed_by_their_column() {
        assert_eq!(typed(&json!("42"), "INTEGER"), json!(42));
        assert_eq!(typed(&json!("1.5"), "NUMERIC"), json!(1.5));
        assert_eq!(typed(&json!("true"), "BOOLEAN"), json!(true));
        assert_eq!(typed(&json!("Acme"), "STRING"), json!("Acme"));
        assert_eq!(typed(&Value::Null, "INTEGER"), Value::Null);
    }
}
