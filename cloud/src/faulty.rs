//! A `Cloud` whose mutating calls can fail transiently, fail permanently, or
//! "crash": perform the call and then never return, as a process killed right
//! after the cloud acted and before the store recorded it.
//! For other crates' tests (feature `test-utils`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::error::{CloudError, CloudResult};
use crate::naming::Labels;
use crate::ports::*;
use crate::Cloud;

#[derive(Default)]
pub struct Faults {
    /// Mutating calls seen so far.
    pub mutations: AtomicUsize,
    /// Crash after the n-th mutating call (1-based) has taken effect.
    pub crash_after: Option<usize>,
    /// Fail each kind of mutating call transiently this many times before letting it through.
    pub transient_failures_per_call: usize,
    transient_seen: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Signalled when the crash happens.
    pub crashed: Notify,
    /// Each mutating call waits this long before it acts (a slow cloud).
    pub delay: Option<std::time::Duration>,
    /// Mutating calls of the same kind on the same resource under way now, and
    /// the most ever seen at once: two passes over one tenant show up here.
    in_flight: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// The most calls of one kind on one resource ever under way at once.
    pub max_overlap: AtomicUsize,
    /// Mutating calls made, by kind (`ensure_bucket`, ...).
    calls: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Faults {
    pub fn crash_after(n: usize) -> Arc<Self> {
        Arc::new(Faults {
            crash_after: Some(n),
            ..Faults::default()
        })
    }

    pub fn transient(per_call: usize) -> Arc<Self> {
        Arc::new(Faults {
            transient_failures_per_call: per_call,
            ..Faults::default()
        })
    }

    /// Every mutating call takes `delay` before acting.
    pub fn slow(delay: std::time::Duration) -> Arc<Self> {
        Arc::new(Faults {
            delay: Some(delay),
            ..Faults::default()
        })
    }

    /// The most mutating calls of one kind on one resource seen under way at once.
    pub fn max_overlap(&self) -> usize {
        self.max_overlap.load(Ordering::SeqCst)
    }

    /// Mutating calls of this kind (`ensure_bucket`, `delete_job`, ...) made so far.
    pub fn calls(&self, what: &str) -> usize {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(what).copied().unwrap_or(0)
    }

    fn enter(&self, key: &str) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.to_owned()).or_insert(0);
        *n += 1;
        self.max_overlap.fetch_max(*n, Ordering::SeqCst);
    }

    fn leave(&self, key: &str) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }

    pub fn count(&self) -> usize {
        self.mutations.load(Ordering::SeqCst)
    }

    async fn around<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = CloudResult<T>>,
    ) -> CloudResult<T> {
        self.around_on(what, "", call).await
    }

    /// `around` for a call on one named resource (tracked for overlap).
    async fn around_on<T>(
        &self,
        what: &str,
        resource: &str,
        call: impl std::future::Future<Output = CloudResult<T>>,
    ) -> CloudResult<T> {
        let key = format!("{what} {resource}");
        if self.transient_failures_per_call > 0 {
            let failed_so_far = {
                let mut seen = self
                    .transient_seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let count = seen.entry(what.to_owned()).or_insert(0);
                *count += 1;
                *count - 1
            };
            if failed_so_far < self.transient_failures_per_call {
                return Err(CloudError::transient(what, "injected transient failure"));
            }
        }
        *self
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what.to_owned())
            .or_insert(0) += 1;
        // Overlap is tracked for calls on one named resource only: calls of a
        // kind on different resources may rightly run at once.
        let tracked = !resource.is_empty();
        if tracked {
            self.enter(&key);
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let result = call.await;
        if tracked {
            self.leave(&key);
        }
        let n = self.mutations.fetch_add(1, Ordering::SeqCst) + 1;
        if self.crash_after == Some(n) {
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        result
    }
}

/// Wraps every port of `inner`, injecting `faults` into mutating calls.
pub fn wrap(inner: &Cloud, faults: Arc<Faults>) -> Cloud {
    let f = Arc::new(Faulty {
        inner: inner.clone(),
        faults,
    });
    Cloud {
        objects: f.clone(),
        warehouse: f.clone(),
        identity: f.clone(),
        secrets: f.clone(),
        jobs: f,
    }
}

pub struct Faulty {
    inner: Cloud,
    faults: Arc<Faults>,
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn ensure_bucket(&self, spec: &BucketSpec) -> CloudResult<Bucket> {
        self.faults
            .around_on(
                "ensure_bucket",
                &spec.name,
                self.inner.objects.ensure_bucket(spec),
            )
            .await
    }
    async fn get_bucket(&self, name: &str) -> CloudResult<Bucket> {
        self.inner.objects.get_bucket(name).await
    }
    async fn list_buckets(&self, labels: &Labels) -> CloudResult<Vec<Bucket>> {
        self.inner.objects.list_buckets(labels).await
    }
    async fn delete_bucket(&self, name: &str) -> CloudResult<()> {
        self.faults
            .around("delete_bucket", self.inner.objects.delete_bucket(name))
            .await
    }
    async fn put_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
    ) -> CloudResult<ObjectInfo> {
        self.inner.objects.put_object(cred, bucket, key, data).await
    }
    async fn put_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        condition: &Precondition,
    ) -> CloudResult<ObjectInfo> {
        self.inner
            .objects
            .put_object_if(cred, bucket, key, data, condition)
            .await
    }
    async fn get_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<Vec<u8>> {
        self.inner.objects.get_object(cred, bucket, key).await
    }
    async fn read_object(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
    ) -> CloudResult<(ObjectInfo, Vec<u8>)> {
        self.inner.objects.read_object(cred, bucket, key).await
    }
    async fn list_objects(
        &self,
        cred: &Credential,
        bucket: &str,
        prefix: &str,
    ) -> CloudResult<Vec<ObjectInfo>> {
        self.inner.objects.list_objects(cred, bucket, prefix).await
    }
    async fn delete_object(&self, cred: &Credential, bucket: &str, key: &str) -> CloudResult<()> {
        self.inner.objects.delete_object(cred, bucket, key).await
    }
    async fn delete_object_if(
        &self,
        cred: &Credential,
        bucket: &str,
        key: &str,
        generation: &str,
    ) -> CloudResult<()> {
        self.inner
            .objects
            .delete_object_if(cred, bucket, key, generation)
            .await
    }
}

#[async_trait]
impl Warehouse for Faulty {
    async fn ensure_dataset(&self, spec: &DatasetSpec) -> CloudResult<Dataset> {
        self.faults
            .around_on(
                "ensure_dataset",
                &spec.name,
                self.inner.warehouse.ensure_dataset(spec),
            )
            .await
    }
    async fn get_dataset(&self, name: &str) -> CloudResult<Dataset> {
        self.inner.warehouse.get_dataset(name).await
    }
    async fn list_datasets(&self, labels: &Labels) -> CloudResult<Vec<Dataset>> {
        self.inner.warehouse.list_datasets(labels).await
    }
    async fn delete_dataset(&self, name: &str) -> CloudResult<()> {
        self.faults
            .around("delete_dataset", self.inner.warehouse.delete_dataset(name))
            .await
    }
    async fn list_tables(&self, cred: &Credential, dataset: &str) -> CloudResult<Vec<TableInfo>> {
        self.inner.warehouse.list_tables(cred, dataset).await
    }
    async fn load_ndjson(
        &self,
        cred: &Credential,
        dataset: &str,
        table: &str,
        ndjson: Vec<u8>,
        mode: WriteMode,
    ) -> CloudResult<u64> {
        self.inner
            .warehouse
            .load_ndjson(cred, dataset, table, ndjson, mode)
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
        self.inner
            .warehouse
            .load_lines(cred, dataset, table, bucket, objects, then)
            .await
    }
    async fn execute(&self, cred: &Credential, dataset: &str, sql: &str) -> CloudResult<()> {
        self.inner.warehouse.execute(cred, dataset, sql).await
    }
    async fn execute_reading(
        &self,
        cred: &Credential,
        dataset: &str,
        sql: &str,
        sources: &[String],
    ) -> CloudResult<()> {
        self.inner
            .warehouse
            .execute_reading(cred, dataset, sql, sources)
            .await
    }
    async fn query(&self, cred: &Credential, req: &QueryRequest) -> CloudResult<QueryResult> {
        self.inner.warehouse.query(cred, req).await
    }
}

#[async_trait]
impl Identity for Faulty {
    fn email_for(&self, account_id: &str) -> String {
        self.inner.identity.email_for(account_id)
    }
    async fn ensure_service_account(
        &self,
        spec: &ServiceAccountSpec,
    ) -> CloudResult<ServiceAccount> {
        self.faults
            .around(
                "ensure_service_account",
                self.inner.identity.ensure_service_account(spec),
            )
            .await
    }
    async fn get_service_account(&self, email: &str) -> CloudResult<ServiceAccount> {
        self.inner.identity.get_service_account(email).await
    }
    async fn list_service_accounts(&self, labels: &Labels) -> CloudResult<Vec<ServiceAccount>> {
        self.inner.identity.list_service_accounts(labels).await
    }
    async fn delete_service_account(&self, email: &str) -> CloudResult<()> {
        self.faults
            .around(
                "delete_service_account",
                self.inner.identity.delete_service_account(email),
            )
            .await
    }
    async fn get_iam_policy(&self, resource: &ResourceRef) -> CloudResult<Policy> {
        self.inner.identity.get_iam_policy(resource).await
    }
    async fn set_iam_policy(&self, resource: &ResourceRef, policy: &Policy) -> CloudResult<Policy> {
        self.faults
            .around(
                "set_iam_policy",
                self.inner.identity.set_iam_policy(resource, policy),
            )
            .await
    }
    async fn credential_for(&self, email: &str) -> CloudResult<Credential> {
        self.inner.identity.credential_for(email).await
    }
}

#[async_trait]
impl SecretStore for Faulty {
    async fn ensure_secret(&self, spec: &SecretSpec) -> CloudResult<SecretInfo> {
        self.faults
            .around_on(
                "ensure_secret",
                &spec.name,
                self.inner.secrets.ensure_secret(spec),
            )
            .await
    }
    async fn get_secret(&self, name: &str) -> CloudResult<SecretInfo> {
        self.inner.secrets.get_secret(name).await
    }
    async fn list_secrets(&self, labels: &Labels) -> CloudResult<Vec<SecretInfo>> {
        self.inner.secrets.list_secrets(labels).await
    }
    async fn delete_secret(&self, name: &str) -> CloudResult<()> {
        self.faults
            .around("delete_secret", self.inner.secrets.delete_secret(name))
            .await
    }
    async fn add_version(
        &self,
        cred: &Credential,
        name: &str,
        payload: &SecretPayload,
    ) -> CloudResult<u64> {
        self.inner.secrets.add_version(cred, name, payload).await
    }
    async fn access_latest(
        &self,
        cred: &Credential,
        name: &str,
    ) -> CloudResult<(u64, SecretPayload)> {
        self.inner.secrets.access_latest(cred, name).await
    }
    async fn destroy_old_versions(
        &self,
        name: &str,
        keep: usize,
        before: time::OffsetDateTime,
    ) -> CloudResult<usize> {
        self.faults
            .around(
                "destroy_old_versions",
                self.inner.secrets.destroy_old_versions(name, keep, before),
            )
            .await
    }
}

#[async_trait]
impl JobRunner for Faulty {
    async fn ensure_job(&self, spec: &JobSpec) -> CloudResult<Job> {
        self.faults
            .around_on("ensure_job", &spec.name, self.inner.jobs.ensure_job(spec))
            .await
    }
    async fn get_job(&self, name: &str) -> CloudResult<Job> {
        self.inner.jobs.get_job(name).await
    }
    async fn list_jobs(&self, labels: &Labels) -> CloudResult<Vec<Job>> {
        self.inner.jobs.list_jobs(labels).await
    }
    async fn delete_job(&self, name: &str) -> CloudResult<()> {
        self.faults
            .around("delete_job", self.inner.jobs.delete_job(name))
            .await
    }
    async fn run_job(&self, name: &str, overrides: &ExecutionOverrides) -> CloudResult<Execution> {
        self.inner.jobs.run_job(name, overrides).await
    }
    fn definition_env(&self, spec: &JobSpec) -> std::collections::BTreeMap<String, String> {
        self.inner.jobs.definition_env(spec)
    }
    async fn get_execution(&self, job: &str, id: &str) -> CloudResult<Execution> {
        self.inner.jobs.get_execution(job, id).await
    }
    async fn cancel_execution(&self, job: &str, id: &str) -> CloudResult<Execution> {
        self.inner.jobs.cancel_execution(job, id).await
    }
}
