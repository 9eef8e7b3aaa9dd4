//! Pacing of every call per (project, quota): Google's default quotas are per
//! project, so each cell gets its own buckets of tokens, sized from the
//! quotas, and a call waits for its token instead of being refused. A 429 or
//! 503 that still comes back is retried after the server's Retry-After (or a
//! jittered backoff), a bounded number of times.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloud::error::{CloudError, CloudResult};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota as Rate, RateLimiter};
use rand::Rng;

/// A quota the adapter paces itself by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaClass {
    /// Bucket creation: about one every 2 seconds per project.
    BucketCreate,
    /// Other Cloud Storage JSON API calls (metadata, objects).
    Storage,
    /// BigQuery dataset and job calls.
    BigQuery,
    /// IAM service-account administration.
    IamAdmin,
    /// `setIamPolicy` of any API: 600 writes per minute per project.
    PolicyWrite,
    /// `generateAccessToken`.
    TokenMint,
    /// Secret Manager administration and version writes.
    SecretAdmin,
    /// Secret Manager access: 90,000 per minute per project.
    SecretAccess,
    /// Cloud Run Admin API calls.
    RunAdmin,
    /// Resource Manager and Service Usage calls.
    ProjectAdmin,
}

impl QuotaClass {
    /// The quota's name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaClass::BucketCreate => "bucket_create",
            QuotaClass::Storage => "storage",
            QuotaClass::BigQuery => "bigquery",
            QuotaClass::IamAdmin => "iam_admin",
            QuotaClass::PolicyWrite => "policy_write",
            QuotaClass::TokenMint => "token_mint",
            QuotaClass::SecretAdmin => "secret_admin",
            QuotaClass::SecretAccess => "secret_access",
            QuotaClass::RunAdmin => "run_admin",
            QuotaClass::ProjectAdmin => "project_admin",
        }
    }
}

/// Calls per minute allowed per project, by quota.
#[derive(Debug, Clone, PartialEq)]
pub struct Quotas {
    per_minute: BTreeMap<QuotaClass, f64>,
}

impl Quotas {
    /// Google's published defaults (see `cloud-gcp/contract/README.md`); where
    /// Google publishes none, a rate well under the API's documented ceiling.
    pub fn google_defaults() -> Self {
        use QuotaClass::*;
        Quotas {
            per_minute: BTreeMap::from([
                (BucketCreate, 30.0),
                (Storage, 6_000.0),
                (BigQuery, 6_000.0),
                (IamAdmin, 600.0),
                (PolicyWrite, 600.0),
                (TokenMint, 6_000.0),
                (SecretAdmin, 6_000.0),
                (SecretAccess, 90_000.0),
                (RunAdmin, 600.0),
                (ProjectAdmin, 600.0),
            ]),
        }
    }

    /// Every rate multiplied by `factor` (a raised quota, or a fast test).
    pub fn scaled(mut self, factor: f64) -> Self {
        for rate in self.per_minute.values_mut() {
            *rate *= factor;
        }
        self
    }

    pub fn per_minute(&self, class: QuotaClass) -> f64 {
        self.per_minute.get(&class).copied().unwrap_or(600.0)
    }

    /// Sets one quota (a project with a raised limit).
    pub fn with(mut self, class: QuotaClass, per_minute: f64) -> Self {
        self.per_minute.insert(class, per_minute);
        self
    }

    fn rate(&self, class: QuotaClass) -> Rate {
        let per_minute = self.per_minute(class).max(0.001);
        // One token every `period`, with a burst of a second's worth (at least
        // one), so an idle project may start a little quicker than the mean.
        let period = Duration::from_secs_f64(60.0 / per_minute);
        let burst = (per_minute / 60.0).floor().clamp(1.0, 1_000.0) as u32;
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Rate::with_period(period)
            .unwrap_or_else(|| Rate::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

/// The pacing of one process: a keyed limiter per quota, keyed by project.
#[derive(Clone)]
pub struct Limiter {
    by_class: Arc<BTreeMap<QuotaClass, Keyed>>,
    /// Calls made (every attempt), by quota: what a tenant costs.
    calls: Arc<BTreeMap<QuotaClass, AtomicU64>>,
    /// Attempts repeated after a 429 or 503, by quota.
    retried: Arc<BTreeMap<QuotaClass, AtomicU64>>,
    retries: usize,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("classes", &self.by_class.len())
            .field("retries", &self.retries)
            .finish()
    }
}

/// How many times a rate-limited or unavailable call is tried again.
const RATE_LIMIT_RETRIES: usize = 8;

impl Limiter {
    pub fn new(quotas: &Quotas) -> Self {
        let by_class = quotas
            .per_minute
            .keys()
            .map(|&class| (class, RateLimiter::keyed(quotas.rate(class))))
            .collect();
        let counters = || -> BTreeMap<QuotaClass, AtomicU64> {
            quotas
                .per_minute
                .keys()
                .map(|&class| (class, AtomicU64::new(0)))
                .collect()
        };
        Limiter {
            by_class: Arc::new(by_class),
            calls: Arc::new(counters()),
            retried: Arc::new(counters()),
            retries: RATE_LIMIT_RETRIES,
        }
    }

    /// The calls made so far (every attempt, throttled ones too), by quota.
    pub fn calls(&self) -> BTreeMap<QuotaClass, u64> {
        self.calls
            .iter()
            .map(|(class, n)| (*class, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Calls and retries so far, by quota.
    pub fn usage(&self) -> Vec<cloud::ApiUsage> {
        self.calls
            .iter()
            .map(|(class, n)| cloud::ApiUsage {
                quota: class.as_str(),
                calls: n.load(Ordering::Relaxed),
                retries: self
                    .retried
                    .get(class)
                    .map_or(0, |r| r.load(Ordering::Relaxed)),
            })
            .collect()
    }

    /// Waits for `project`'s token of `class`.
    pub async fn ready(&self, project: &str, class: QuotaClass) {
        if let Some(limiter) = self.by_class.get(&class) {
            limiter.until_key_ready(&project.to_owned()).await;
        }
    }

    /// Runs `op` paced by `project`'s `class` quota, retrying it while the
    /// server answers 429 (after its Retry-After) or 503.
    pub async fn paced<T, F, Fut>(
        &self,
        project: &str,
        class: QuotaClass,
        mut op: F,
    ) -> CloudResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = CloudResult<T>>,
    {
        let mut attempt = 0;
        loop {
            self.ready(project, class).await;
            if let Some(count) = self.calls.get(&class) {
                count.fetch_add(1, Ordering::Relaxed);
            }
            match op().await {
                Err(e) if attempt < self.retries && is_throttled(&e) => {
                    let wait = e.retry_after().unwrap_or_else(|| backoff(attempt));
                    tracing::debug!(project, ?class, attempt, wait_ms = wait.as_millis() as u64, error = %e, "throttled; waiting");
                    if let Some(count) = self.retried.get(&class) {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn is_throttled(e: &CloudError) -> bool {
    match e {
        CloudError::RateLimited { .. } => true,
        CloudError::Transient { message, .. } => message.starts_with("503"),
        _ => false,
    }
}

/// Exponential from 250 ms, capped at 16 s, with full jitter.
fn backoff(attempt: usize) -> Duration {
    let cap = 250u64.saturating_mul(1 << attempt.min(6)).min(16_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn defaults_follow_googles_quotas() {
        let q = Quotas::google_defaults();
        assert_eq!(q.per_minute(QuotaClass::PolicyWrite), 600.0);
        assert_eq!(q.per_minute(QuotaClass::BucketCreate), 30.0);
        assert_eq!(q.per_minute(QuotaClass::SecretAccess), 90_000.0);
        assert_eq!(q.scaled(10.0).per_minute(QuotaClass::BucketCreate), 300.0);
    }

    // governor keeps real time, so this test waits a real second.
    #[tokio::test]
    async fn a_project_waits_for_its_own_tokens_only() {
        let quotas = Quotas::google_defaults().with(QuotaClass::BucketCreate, 60.0);
        let limiter = Limiter::new(&quotas);
        let start = std::time::Instant::now();
        limiter.ready("cell-a", QuotaClass::BucketCreate).await;
        limiter.ready("cell-b", QuotaClass::BucketCreate).await;
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "two projects, no wait"
        );
        limiter.ready("cell-a", QuotaClass::BucketCreate).await;
        assert!(
            start.elapsed() >= Duration::from_millis(900),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_calls_are_retried_after_retry_after() {
        let limiter = Limiter::new(&Quotas::google_defaults());
        let calls = AtomicUsize::new(0);
        let start = tokio::time::Instant::now();
        let got = limiter
            .paced("cell-a", QuotaClass::Storage, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(CloudError::RateLimited {
                        resource: "bucket b".into(),
                        retry_after: Some(Duration::from_secs(3)),
                    })
                } else {
                    Ok(5)
                }
            })
            .await;
        assert_eq!(got.expect("third call succeeds"), 5);
        assert!(start.elapsed() >= Duration::from_secs(6));
        let refused = limiter
            .paced("cell-a", QuotaClass::Storage, || async {
                Err::<(), _>(CloudError::permanent("bucket b", "400 bad request"))
            })
            .await;
        assert!(refused.is_err());
        assert_eq!(
            limiter.calls().get(&QuotaClass::Storage),
            Some(&4),
            "every attempt is counted"
        );
        let storage = limiter
            .usage()
            .into_iter()
            .find(|u| u.quota == "storage")
            .expect("storage");
        assert_eq!((storage.calls, storage.retries), (4, 2), "two 429s retried");
    }
}
